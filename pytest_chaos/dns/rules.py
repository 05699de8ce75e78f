"""The configuration both DNS layers read: which names resolve to what, which faults are
active, and, per lookup, what happens (`decide`).

A name may be given several times (chaos_hosts for the session, `chaos.resolve` in a test):
the newest entry answers, and removing it uncovers the one below. Likewise the newest active
fault that matches a name decides its lookups. Reads take a snapshot, so lookups on other
threads (asyncio's executor, the DNS server) never see a half-made change.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_chaos.faults import DnsErrorKind, DnsFailure, normalize_dns_name


class UnresolvedName(Exception):
    """A name maps to a proxy whose address cannot be found now; the message says why."""


@dataclass(eq=False)
class HostEntry:
    """`name` resolves to `addresses`, or to the address of proxy `proxy` (looked up on
    first use, through `proxy_address`)."""

    name: str
    source: str
    addresses: tuple[str, ...] = ()
    proxy: str | None = None

    def resolved(self, proxy_address: Callable[[str], str]) -> tuple[str, ...]:
        """The entry's addresses; for a proxy, its address, asked of `proxy_address` until
        found and then kept (UnresolvedName while it cannot be found)."""
        if not self.addresses and self.proxy is not None:
            self.addresses = (proxy_address(self.proxy),)
        return self.addresses


@dataclass(eq=False)
class ActiveFault:
    """A DnsFailure in force: its rolls come from its own seeded generator, and `released`
    is set when it is reverted (lookups it holds back then end at once)."""

    fault: DnsFailure
    seed: str
    released: threading.Event = field(default_factory=threading.Event)
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def roll(self) -> bool:
        """Does this lookup fail? (one draw per lookup, in lookup order)"""
        if self.fault.probability >= 1:
            return True
        with self._lock:
            return self._random.random() < self.fault.probability


@dataclass(frozen=True)
class Outcome:
    """What one lookup of `name` does: wait `delay` seconds, then fail with `error` (after
    `timeout` seconds more for a timeout), or answer `addresses` (None: the real resolver, or
    the DNS server's upstream, answers)."""

    name: str
    error: DnsErrorKind | None = None
    addresses: tuple[str, ...] | None = None
    delay: float = 0.0
    timeout: float = 0.0
    fault: ActiveFault | None = None
    note: str = ""

    def wait(self, seconds: float) -> None:
        """Hold the lookup `seconds`, or until its fault is reverted."""
        if seconds <= 0:
            return
        if self.fault is None:
            time.sleep(seconds)
        else:
            self.fault.released.wait(seconds)

    @property
    def fault_text(self) -> str | None:
        """The text of the fault that decided the lookup; None when no fault did."""
        return str(self.fault.fault) if self.fault is not None else None


class DnsRules:
    """Names and faults; `on_change(empty)` is told when the rules become empty or not."""

    def __init__(self, on_change: Callable[[bool], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, tuple[HostEntry, ...]] = {}
        self._faults: tuple[ActiveFault, ...] = ()
        self._on_change = on_change
        self.proxy_address: Callable[[str], str] = no_proxy_server

    # -- changes
    def add_name(self, entry: HostEntry) -> None:
        """Make `entry` answer for its name, above any earlier entry of that name."""
        key = normalize_dns_name(entry.name)
        with self._lock:
            was_empty = self._empty()
            self._names = {**self._names, key: (*self._names.get(key, ()), entry)}
            self._changed(was_empty)

    def remove_name(self, entry: HostEntry) -> None:
        """Take `entry` out; the entry of its name below it, if any, answers again."""
        key = normalize_dns_name(entry.name)
        with self._lock:
            was_empty = self._empty()
            left = tuple(e for e in self._names.get(key, ()) if e is not entry)
            names = dict(self._names)
            if left:
                names[key] = left
            else:
                names.pop(key, None)
            self._names = names
            self._changed(was_empty)

    def add_fault(self, active: ActiveFault) -> None:
        """Put `active` in force; for the names it matches, it decides over earlier faults."""
        with self._lock:
            was_empty = self._empty()
            self._faults = (*self._faults, active)
            self._changed(was_empty)

    def remove_fault(self, active: ActiveFault) -> None:
        """Take `active` out of force, releasing the lookups it is holding back."""
        active.released.set()
        with self._lock:
            was_empty = self._empty()
            self._faults = tuple(f for f in self._faults if f is not active)
            self._changed(was_empty)

    def _empty(self) -> bool:
        return not self._names and not self._faults

    def _changed(self, was_empty: bool) -> None:
        if self._on_change is not None and was_empty != self._empty():
            self._on_change(self._empty())

    @property
    def empty(self) -> bool:
        """True when there are neither names nor faults."""
        return self._empty()

    def entry(self, name: str) -> HostEntry | None:
        """The entry that answers for `name` now (the newest); None when it has none."""
        entries = self._names.get(normalize_dns_name(name))
        return entries[-1] if entries else None

    # -- lookups
    def decide(self, name: str) -> Outcome | None:
        """What a lookup of `name` (normalized) does; None when the plugin has no say in it."""
        entries = self._names.get(name)
        faults = self._faults
        active = next((f for f in reversed(faults) if f.fault.matches(name)), None)
        if not entries and active is None:
            return None
        addresses: tuple[str, ...] | None = None
        note = ""
        error: DnsErrorKind | None = None
        if entries:
            try:
                addresses = entries[-1].resolved(self.proxy_address)
            except UnresolvedName as problem:
                # Say it in the timeline, and fail the lookup as a name nobody knows.
                error, note = "nxdomain", str(problem)
        if active is None:
            return Outcome(name, error=error, addresses=addresses, note=note)
        fault = active.fault
        if active.roll():
            error = fault.error
        return Outcome(
            name,
            error=error,
            addresses=addresses,
            delay=fault.delay / 1000,
            timeout=fault.timeout / 1000,
            fault=active,
            note=note,
        )


def no_proxy_server(name: str) -> str:
    """How proxy names resolve while the session has no proxy server: they do not."""
    raise UnresolvedName(
        f"{name!r} names a proxy, and no proxy server is open yet (request the chaos or"
        " toxiproxy fixture)"
    )
