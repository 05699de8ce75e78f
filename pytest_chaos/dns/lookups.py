"""What the DNS layers saw: one record per lookup of a name the plugin knows (or per query to
its DNS server), and the names mapped and unmapped, for the timeline and the report."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Enough for any sane test; a runaway loop of lookups must not eat the memory.
MAX_EVENTS = 20_000


@dataclass(frozen=True)
class Lookup:
    """One lookup: by which layer (`getaddrinfo`, `gethostbyname`, `gethostbyname_ex`, or
    `server`: the DNS server), of which name, answered with `answer` (addresses) or failed
    with `error` (`nxdomain`, `servfail`, `refused`, `timeout`, `empty`, or the real
    resolver's `EAI_...`), which fault decided it, and how long it took (seconds)."""

    time: float
    layer: str
    name: str
    answer: tuple[str, ...] = ()
    error: str | None = None
    fault: str | None = None
    duration: float = 0.0
    detail: str = ""  # the server's query type, client and transport
    seq: int = field(default=0, compare=False)

    @property
    def failed(self) -> bool:
        """True when the lookup failed (it has an `error`)."""
        return self.error is not None

    @property
    def result(self) -> str:
        """The error, else the addresses answered (comma-separated), else `no address`."""
        return self.error if self.error is not None else (", ".join(self.answer) or "no address")

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        by = f" by {self.fault}" if self.fault else ""
        took = f" in {self.duration * 1000:.0f} ms" if self.duration >= 0.001 else ""
        return f"dns {self.layer} {self.name}{detail} -> {self.result}{took}{by}"

    def to_json(self) -> dict[str, Any]:
        """The lookup for the JSON report (`kind` "dns_lookup", `duration_ms` in ms)."""
        return {
            "kind": "dns_lookup",
            "time": self.time,
            "layer": self.layer,
            "name": self.name,
            "answer": list(self.answer),
            "error": self.error,
            "fault": self.fault,
            "duration_ms": round(self.duration * 1000, 3),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class NameChange:
    """A name made to resolve to `addresses` (from `source`: a proxy, an address, a service,
    chaos_hosts), or no longer (`removed`)."""

    time: float
    name: str
    addresses: tuple[str, ...]
    source: str
    removed: bool = False
    seq: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.removed:
            return f"dns {self.name} no longer resolves to {', '.join(self.addresses)}"
        return f"dns {self.name} resolves to {', '.join(self.addresses)} ({self.source})"

    def to_json(self) -> dict[str, Any]:
        """The change for the JSON report (`kind` "dns_name", or "dns_name_removed")."""
        return {
            "kind": "dns_name_removed" if self.removed else "dns_name",
            "time": self.time,
            "name": self.name,
            "addresses": list(self.addresses),
            "source": self.source,
        }


DnsEvent = Lookup | NameChange


class DnsLog:
    """The DNS events of a session, oldest first, safe to append to from any thread."""

    def __init__(self, limit: int = MAX_EVENTS) -> None:
        self._events: deque[DnsEvent] = deque(maxlen=limit)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def add(self, event: DnsEvent) -> None:
        """Append `event`, numbered (`seq`) in order of arrival; past the log's limit the
        oldest event is dropped."""
        with self._lock:
            object.__setattr__(event, "seq", next(self._seq))
            self._events.append(event)

    def since(self, started_at: float) -> list[DnsEvent]:
        """Events from `started_at` (time.monotonic()) on."""
        with self._lock:
            return [event for event in self._events if event.time >= started_at]


@dataclass
class DnsTimeline:
    """The DNS events of one test, as lines for its timeline (a timeline source)."""

    log: DnsLog
    started_at: float
    name: str = "dns"

    def lookups(self) -> list[Lookup]:
        """The lookups since the test started, oldest first."""
        return [e for e in self.log.since(self.started_at) if isinstance(e, Lookup)]

    def timeline_rows(self) -> list[tuple[float, str]]:
        """(time.monotonic(), one line) per DNS event since the test started."""
        return [(event.time, str(event)) for event in self.log.since(self.started_at)]

    def timeline_json(self) -> list[dict[str, Any]]:
        """Each DNS event since the test started as JSON, with its `offset`: seconds from the
        test's start."""
        return [
            {**event.to_json(), "offset": round(event.time - self.started_at, 6)}
            for event in self.log.since(self.started_at)
        ]
