"""What the engine saw, as typed objects: the one model of events, and its one parser.

The engine's `GET /events` answers JSON (its HTTP API keeps that form); `parse_event` turns
each into one of the classes below. `chaos.events()`, the timeline, the JSON report and the
wire-side assertions all read these objects.

Every event has `seq` (dense, increasing), `time` (`time.monotonic()` of the engine, the same
clock as the test process's on Linux), `kind` and `proxy`. Connection events add
`connection` (an id unique across the engine's proxies). An example, as `str()` prints it and
as `to_json()` gives it::

    redis#7 accepted from 127.0.0.1:53122
    {"seq": 41, "time": 8312.004, "kind": "accepted", "proxy": "redis", "connection": 7,
     "client": "127.0.0.1:53122"}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Something the engine saw or did."""

    seq: int
    time: float
    kind: str
    proxy: str | None
    kind_name: ClassVar[str] = ""

    def __str__(self) -> str:
        return f"{self.kind}{f' on {self.proxy}' if self.proxy else ''}"

    def to_json(self) -> dict[str, Any]:
        """The engine's JSON form of this event."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ConnectionEvent(Event):
    """An event of one client connection through a proxy."""

    connection: int

    @property
    def label(self) -> str:
        """`proxy#connection`, as the timeline names a connection."""
        return f"{self.proxy}#{self.connection}"


@dataclass(frozen=True)
class Accepted(ConnectionEvent):
    """The proxy accepted a client connection (from `client`, `host:port`)."""

    client: str | None = None
    kind_name = "accepted"

    def __str__(self) -> str:
        return f"{self.label} accepted from {self.client}"


@dataclass(frozen=True)
class UpstreamConnected(ConnectionEvent):
    """The proxy's dial to the upstream succeeded, after `dial_ms` milliseconds."""

    upstream: str = ""
    dial_ms: float | None = None
    kind_name = "upstream_connected"

    def __str__(self) -> str:
        return f"{self.label} upstream {self.upstream} connected"


@dataclass(frozen=True)
class UpstreamFailed(ConnectionEvent):
    """The proxy's dial to the upstream failed (`error`: the reason, e.g. connection
    refused); the client's connection is then closed."""

    upstream: str = ""
    error: str = ""
    kind_name = "upstream_failed"

    def __str__(self) -> str:
        return f"{self.label} upstream {self.upstream} failed: {self.error}"


@dataclass(frozen=True)
class ToxicsActive(ConnectionEvent):
    """The toxics acting on this connection, by direction (those whose toxicity roll hit)."""

    toxics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    kind_name = "toxics_active"

    def __str__(self) -> str:
        active = ", ".join(f"{d}: {', '.join(n)}" for d, n in self.toxics.items() if n)
        return f"{self.label} toxics active ({active})"


@dataclass(frozen=True)
class Data(ConnectionEvent):
    """`bytes` bytes read by the proxy in one `direction` (`upstream`: client to server),
    the first at `time`, the last at `until`."""

    direction: str = ""
    bytes: int = 0
    until: float = 0.0
    kind_name = "data"

    def __post_init__(self) -> None:
        if not self.until:
            object.__setattr__(self, "until", self.time)

    def __str__(self) -> str:
        return f"{self.label} {self.bytes} B {self.direction}"


@dataclass(frozen=True)
class HalfClosed(ConnectionEvent):
    """One `side` (client or server) sent a FIN; the other direction may go on."""

    side: str = ""
    kind_name = "half_closed"

    def __str__(self) -> str:
        return f"{self.label} {self.side} sent FIN"


@dataclass(frozen=True)
class Closed(ConnectionEvent):
    """The connection ended: closed (or reset) `by` the client, the server or the proxy,
    after `duration_ms`, with `bytes` in and out per direction."""

    by: str = ""
    reset: bool = False
    duration_ms: float = 0.0
    bytes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    error: str | None = None
    kind_name = "closed"

    def bytes_in(self, direction: str) -> int:
        """Bytes the proxy read in `direction` (`upstream`: from the client) on this connection."""
        return int(self.bytes.get(direction, {}).get("in", 0))

    def __str__(self) -> str:
        how = "reset" if self.reset else "closed"
        return (
            f"{self.label} {how} by {self.by}"
            f" ({self.bytes_in('upstream')} B up, {self.bytes_in('downstream')} B down)"
        )


@dataclass(frozen=True)
class Retransmitted(ConnectionEvent):
    """A segment a `packet_loss` toxic lost `losses` times in `direction`: the stream stalled
    `stalled_ms` from its first transmission (`time`) to the one that got through (`until`),
    or until the connection was reset (`gave_up`). `fin`: the segment was the end of stream."""

    direction: str = ""
    toxic: str = ""
    bytes: int = 0
    fin: bool = False
    losses: int = 0
    rto_ms: float = 0.0
    stalled_ms: float = 0.0
    gave_up: bool = False
    until: float = 0.0
    kind_name = "retransmitted"

    def __str__(self) -> str:
        what = "FIN" if self.fin else f"{self.bytes} B"
        outcome = "gave up (reset)" if self.gave_up else f"stalled {self.stalled_ms:.0f} ms"
        return f"{self.label} {self.direction} {what} lost {self.losses}x, {outcome}"


@dataclass(frozen=True)
class SynLost(ConnectionEvent):
    """The connection's handshake lost `losses` SYNs (or SYN-ACKs): it was held back
    `delay_ms`, or reset when it `gave_up`."""

    losses: int = 0
    delay_ms: float = 0.0
    gave_up: bool = False
    toxics: tuple[str, ...] = ()
    kind_name = "syn_lost"

    def __str__(self) -> str:
        outcome = "gave up (reset)" if self.gave_up else f"held {self.delay_ms:.0f} ms"
        return f"{self.label} SYN lost {self.losses}x, {outcome}"


@dataclass(frozen=True)
class SessionEvent(Event):
    """An event of one client (address) of a UDP proxy."""

    session: int

    @property
    def label(self) -> str:
        """`proxy#session`, as the timeline names a session."""
        return f"{self.proxy}#{self.session}"


@dataclass(frozen=True)
class SessionOpened(SessionEvent):
    """A datagram came from a new `client` address: a session, with its own socket to the
    upstream, and the toxics acting on it by direction."""

    client: str | None = None
    upstream: str = ""
    toxics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    kind_name = "session_opened"

    def __str__(self) -> str:
        return f"{self.label} UDP session from {self.client}"


@dataclass(frozen=True)
class Datagrams(SessionEvent):
    """What happened in one `direction` of a session between `time` and `until` (under 50 ms):
    datagrams `received` and `sent`, and the numbers (0: the session's first in that
    direction) of those `dropped`, `duplicated`, `corrupted` and `reordered`."""

    direction: str = ""
    received: int = 0
    received_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0
    dropped: tuple[int, ...] = ()
    duplicated: tuple[int, ...] = ()
    corrupted: tuple[int, ...] = ()
    reordered: tuple[int, ...] = ()
    until: float = 0.0
    kind_name = "datagrams"

    def __post_init__(self) -> None:
        if not self.until:
            object.__setattr__(self, "until", self.time)

    def __str__(self) -> str:
        line = f"{self.label} {self.direction} {self.received} datagrams in, {self.sent} out"
        for what in ("dropped", "duplicated", "corrupted", "reordered"):
            numbers = getattr(self, what)
            if numbers:
                line += f", {what} " + " ".join(f"#{n}" for n in numbers)
        return line


@dataclass(frozen=True)
class SessionError(SessionEvent):
    """The session's upstream socket got `error` (e.g. connection refused: nothing listens)."""

    upstream: str = ""
    error: str = ""
    kind_name = "session_error"

    def __str__(self) -> str:
        return f"{self.label} upstream {self.upstream} error: {self.error}"


@dataclass(frozen=True)
class SessionClosed(SessionEvent):
    """The session ended `by` idling, the proxy or a toxic, after `duration_ms`, with
    `datagrams` totals per direction (`in`, `out`, `dropped`, `duplicated`, ...)."""

    by: str = ""
    duration_ms: float = 0.0
    datagrams: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    kind_name = "session_closed"

    def count(self, direction: str, what: str) -> int:
        """A total of one direction: `in`, `out`, `dropped`, `duplicated`, ..."""
        return int(self.datagrams.get(direction, {}).get(what, 0))

    def __str__(self) -> str:
        return (
            f"{self.label} UDP session closed by {self.by}"
            f" ({self.count('upstream', 'in')} datagrams up, {self.count('downstream', 'in')}"
            " down)"
        )


@dataclass(frozen=True)
class HttpRequest(ConnectionEvent):
    """One HTTP request and what became of it, recorded once it is over: by the engine on a
    proxy with HTTP toxics (`layer` "engine"), or by the in-process middleware (`layer`
    "asgi" or "wsgi", `proxy` the app's name, `connection` 0).

    `time` is when its first byte arrived, `until` when its answer was over. `path` is the
    target as sent (path and query). `status` is the answer's (the server's, or the one an
    `http_error` made; None when none came). `reached_upstream`: the request went on to the
    server (the app). `fault`: the type of the fault that decided its fate (`http_error`,
    `http_abort`, else `http_delay` when it was only delayed; None when none acted), `toxics`
    the names of those that acted, `delay_ms` how long it was held. `retry_after`: the
    answer's Retry-After in seconds. `outcome`: `answered` (a whole answer), `aborted` (cut by
    `http_abort`), `unanswered` (the connection ended first) or `untracked` (the engine
    stopped parsing the connection, see `HttpPassthrough`)."""

    method: str = ""
    path: str = ""
    status: int | None = None
    reached_upstream: bool = False
    fault: str | None = None
    toxics: tuple[str, ...] = ()
    delay_ms: float = 0.0
    retry_after: float | None = None
    outcome: str = "answered"
    until: float = 0.0
    layer: str = "engine"
    kind_name = "http_request"

    def __post_init__(self) -> None:
        object.__setattr__(self, "toxics", tuple(self.toxics))
        if not self.until:
            object.__setattr__(self, "until", self.time)

    @property
    def label(self) -> str:
        """`proxy#connection` at the engine, `app (asgi)` in-process."""
        return super().label if self.layer == "engine" else f"{self.proxy} ({self.layer})"

    @property
    def answer(self) -> str:
        """What the client got: the status, `200, cut` (an answer cut short), `aborted`
        (nothing of the answer), or `no answer`."""
        if self.outcome == "aborted":
            return "aborted" if self.status is None else f"{self.status}, cut"
        if self.status is None or self.outcome == "unanswered":
            return "no answer"
        return str(self.status)

    def __str__(self) -> str:
        notes = []
        if self.fault is not None:
            notes.append(f"by {self.fault}")
        if self.delay_ms:
            notes.append(f"held {self.delay_ms:.0f} ms")
        if not self.reached_upstream:
            notes.append("not sent upstream")
        shown = f" ({', '.join(notes)})" if notes else ""
        return f"{self.label} {self.method} {self.path} -> {self.answer}{shown}"


@dataclass(frozen=True)
class HttpPassthrough(ConnectionEvent):
    """The engine stopped parsing this connection's HTTP and passes its bytes through as they
    are: the `side` (client or server) sent something that is not HTTP/1.x (`reason`: another
    protocol, TLS, a request h11 rejected, a protocol switch)."""

    side: str = ""
    reason: str = ""
    kind_name = "http_passthrough"

    def __str__(self) -> str:
        return f"{self.label} passed through unparsed from here ({self.side}: {self.reason})"


@dataclass(frozen=True)
class ProxyChanged(Event):
    """A proxy was created, updated or deleted (`kind` says which)."""

    listen: str | None = None
    upstream: str | None = None
    enabled: bool | None = None

    def __str__(self) -> str:
        verb = self.kind.removeprefix("proxy_")
        return f"proxy {self.proxy} {verb}"


@dataclass(frozen=True)
class ToxicChanged(Event):
    """A toxic was added, updated or removed (`kind` says which); `toxic` is its JSON."""

    toxic: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        verb = self.kind.removeprefix("toxic_")
        return f"toxic {self.toxic.get('name')} {verb} on {self.proxy}"


@dataclass(frozen=True)
class Other(Event):
    """An event this version of the plugin has no class for (newer engine, or `reset`);
    its fields are kept in `fields`."""

    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "proxy": self.proxy,
            **self.fields,
        }


CONNECTION_EVENTS: dict[str, type[ConnectionEvent]] = {
    cls.kind_name: cls
    for cls in (
        Accepted,
        UpstreamConnected,
        UpstreamFailed,
        ToxicsActive,
        Data,
        HalfClosed,
        Closed,
        Retransmitted,
        SynLost,
        HttpRequest,
        HttpPassthrough,
    )
}
SESSION_EVENTS: dict[str, type[SessionEvent]] = {
    cls.kind_name: cls for cls in (SessionOpened, Datagrams, SessionError, SessionClosed)
}
PROXY_KINDS = ("proxy_created", "proxy_updated", "proxy_deleted")
TOXIC_KINDS = ("toxic_added", "toxic_updated", "toxic_removed")
# Events that describe a connection and belong in a test's timeline; data is left out there.
TIMELINE_KINDS = frozenset(CONNECTION_EVENTS) - {"data"} | frozenset(SESSION_EVENTS)


def parse_event(raw: Mapping[str, Any]) -> Event:
    """One event of the engine's JSON as its typed object; unknown fields are ignored, unknown
    kinds become `Other`."""
    kind = str(raw["kind"])
    common: dict[str, Any] = {
        "seq": int(raw["seq"]),
        "time": float(raw["time"]),
        "kind": kind,
        "proxy": raw.get("proxy"),
    }
    cls: type[Event] | None = CONNECTION_EVENTS.get(kind) or SESSION_EVENTS.get(kind)
    if cls is None and kind in PROXY_KINDS:
        cls = ProxyChanged
    elif cls is None and kind in TOXIC_KINDS:
        cls = ToxicChanged
    if (
        cls is None
        or (issubclass(cls, ConnectionEvent) and raw.get("connection") is None)
        or (issubclass(cls, SessionEvent) and raw.get("session") is None)
    ):
        extra = {k: v for k, v in raw.items() if k not in common}
        return Other(**common, fields=extra)
    names = {f.name for f in dataclasses.fields(cls)} - set(common)
    values = {name: raw[name] for name in names if name in raw}
    if cls in (ToxicsActive, SessionOpened):
        values["toxics"] = {d: tuple(n) for d, n in (raw.get("toxics") or {}).items()}
    # Lists in the JSON are tuples here, so that events stay immutable.
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
    return cls(**common, **values)


def parse_events(raw: Iterable[Mapping[str, Any]]) -> list[Event]:
    """Every event of the engine's JSON as its typed object (see `parse_event`)."""
    return [parse_event(event) for event in raw]


def for_proxy(events: Iterable[Event], proxy: str | None) -> list[Event]:
    """The events of `proxy` (all of them when None)."""
    return [e for e in events if proxy is None or e.proxy == proxy]
