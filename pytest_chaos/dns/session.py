"""A session's DNS: its names and faults (`rules`), what the layers saw (`log`), the
in-process layer (registered while there is anything to say) and the DNS server (started
on first use). One per pytest session (and so per xdist worker), kept in the config's stash.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_chaos.dns import inprocess
from pytest_chaos.dns.lookups import DnsLog, Lookup, NameChange
from pytest_chaos.dns.rules import (
    ActiveFault,
    DnsRules,
    HostEntry,
    Outcome,
    UnresolvedName,
    no_proxy_server,
)
from pytest_chaos.faults import DnsFailure, FaultError, dns_name_problem

if TYPE_CHECKING:
    import pytest

    from pytest_chaos.backends.server import ToxiproxyServer
    from pytest_chaos.dns.server import DnsServer


@dataclass(frozen=True)
class DnsServerInfo:
    """Where the plugin's DNS server listens: give `host` and `port` to a client that takes a
    nameserver (`nameserver` is "host:port", as aiodns takes it)."""

    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        """(host, port), as a socket address."""
        return (self.host, self.port)

    @property
    def nameserver(self) -> str:
        """The address as "host:port", the form aiodns takes."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.nameserver


class NameHandle:
    """A name made to resolve (`chaos.resolve`): `.revert()` or the end of a `with` block (or
    of the test, or of the service's fixture) removes it."""

    def __init__(self, session: DnsSession, entry: HostEntry, addresses: tuple[str, ...]) -> None:
        self.session = session
        self.entry = entry
        self.name = entry.name
        self.addresses = addresses
        self.active = True

    def revert(self) -> None:
        """Remove the name (an earlier entry of it, if any, answers again); a second call
        does nothing."""
        if self.active:
            self.active = False
            self.session.remove_name(self)

    def __enter__(self) -> NameHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.revert()

    def __repr__(self) -> str:
        return f"<resolve {self.name} -> {', '.join(self.addresses)} ({self.entry.source})>"


def is_address(text: str) -> bool:
    """True if `text` is an IPv4 or IPv6 address rather than a host name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_name(what: str, name: object) -> str:
    """`name` if it is a host name to resolve, else FaultError saying why (after `what`)."""
    problem = dns_name_problem(name, pattern=False)
    if problem is not None:
        raise FaultError(
            f"{what}: name must be a host name (e.g. 'db.internal'), got {name!r}: {problem}"
        )
    assert isinstance(name, str)
    return name


class DnsSession:
    """Names, faults, lookups and the DNS server of one pytest session."""

    def __init__(self, *, forward: tuple[str, int] | None = None) -> None:
        self.forward = forward
        self.log = DnsLog()
        self.rules = DnsRules(on_change=self._rules_changed)
        self._server: DnsServer | None = None
        self._lock = threading.Lock()
        self.closed = False
        self.has_proxies = False

    # -- names
    def add_name(
        self,
        name: str,
        *,
        addresses: tuple[str, ...] = (),
        proxy: str | None = None,
        source: str,
    ) -> NameHandle:
        """`name` resolves to `addresses` (or to proxy `proxy`'s address) until the handle is
        reverted; a newer entry of the same name hides this one meanwhile."""
        entry = HostEntry(name, source, addresses=addresses, proxy=proxy)
        self.rules.add_name(entry)
        shown = addresses or ((f"proxy {proxy!r}",) if proxy else ())
        self.log.add(NameChange(time.monotonic(), name, shown, source))
        return NameHandle(self, entry, addresses)

    def remove_name(self, handle: NameHandle) -> None:
        """Take the handle's name out of the rules, and log that it no longer resolves."""
        self.rules.remove_name(handle.entry)
        shown = handle.entry.addresses or (f"proxy {handle.entry.proxy!r}",)
        self.log.add(
            NameChange(time.monotonic(), handle.name, shown, handle.entry.source, removed=True)
        )

    def use_proxies(self, proxy_address: Callable[[str], str] | None) -> None:
        """How names given as proxy names find their proxy's address (None: no server)."""
        self.rules.proxy_address = proxy_address or no_proxy_server
        self.has_proxies = proxy_address is not None

    # -- faults
    def add_fault(self, fault: DnsFailure, *, seed: int, ordinal: int) -> ActiveFault:
        """Put `fault` in force; its rolls are drawn from the test's seed, the fault and its
        place among the test's faults (`ordinal`), so a replay draws the same."""
        digest = hashlib.sha256(f"{seed}\0{fault}\0{ordinal}".encode()).hexdigest()
        active = ActiveFault(fault, digest)
        self.rules.add_fault(active)
        return active

    def remove_fault(self, active: ActiveFault) -> None:
        """Take `active` out of force, releasing the lookups it is holding back."""
        self.rules.remove_fault(active)

    # -- the layers
    def decide(self, name: str) -> Outcome | None:
        """What a lookup of `name` (normalized) does; None when the plugin has no say in it."""
        return self.rules.decide(name)

    def record(self, lookup: Lookup) -> None:
        """Add `lookup` to the session's DNS log."""
        self.log.add(lookup)

    def _rules_changed(self, empty: bool) -> None:
        if self.closed:
            return
        if empty:
            inprocess.unregister(self)
        else:
            inprocess.register(self)

    def server(self) -> DnsServerInfo:
        """The DNS server, started on first use (for the rest of the session)."""
        with self._lock:
            if self.closed:
                raise FaultError("the DNS server is not available: the session has ended")
            if self._server is None:
                from pytest_chaos.dns.server import DnsServer

                self._server = DnsServer(self.decide, self.record, forward=self.forward).start()
            return DnsServerInfo(self._server.host, self._server.port)

    @property
    def server_running(self) -> bool:
        """True once the DNS server has been started, until the session is closed."""
        return self._server is not None

    def close(self) -> None:
        """Stop the server and give the socket module its own functions back."""
        with self._lock:
            self.closed = True
            server, self._server = self._server, None
        inprocess.unregister(self)
        if server is not None:
            server.stop()


# ------------------------------------------------------------------------ per pytest session
def session_of(config: pytest.Config, *, create: bool = True) -> DnsSession | None:
    """The DNS session of `config`'s run (made on first use when `create`)."""
    from pytest_chaos._keys import config_key, dns_key

    session = config.stash.get(dns_key, None)
    if session is None and create:
        settings = config.stash.get(config_key, None)
        forward = settings.dns_forward if settings is not None else None
        session = config.stash[dns_key] = DnsSession(forward=forward)
    return session


def close_session(config: pytest.Config) -> None:
    """Close the DNS session of `config`'s run, if it has one, and forget it."""
    from pytest_chaos._keys import dns_key

    session = config.stash.get(dns_key, None)
    if session is not None:
        session.close()
        del config.stash[dns_key]


def proxy_lookup(server: ToxiproxyServer) -> Callable[[str], str]:
    """The address of a proxy of `server` by name (UnresolvedName naming the known ones)."""

    def address(name: str) -> str:
        try:
            proxies = server.proxies()
        except Exception as error:  # inside a resolver: say it as a lookup failure
            raise UnresolvedName(f"cannot ask the proxy server for {name!r}: {error}") from None
        if name not in proxies:
            known = ", ".join(sorted(proxies)) or "none"
            raise UnresolvedName(f"no proxy named {name!r} (known proxies: {known})")
        return proxies[name].host

    return address


def load_hosts(session: DnsSession, hosts: dict[str, str]) -> None:
    """The names of `chaos_hosts` (name -> IP address or proxy name), for the whole session."""
    for name, target in hosts.items():
        if is_address(target):
            session.add_name(name, addresses=(target,), source="chaos_hosts")
        else:
            session.add_name(name, proxy=target, source="chaos_hosts")
