"""What the proxy saw, read from the engine's events: connection attempts, who closed a
connection and when, and traffic during a window. The other half of every resilience claim:
the client library says it retried; the dependency's side of the wire says when."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]


@dataclass(frozen=True)
class WireConnection:
    """One client connection through a proxy, as the engine saw it."""

    id: int
    proxy: str
    accepted_at: float
    closed_at: float | None
    closed_by: str | None
    reset: bool
    upstream_failed: bool
    # When the client gave the connection up: its FIN (a half-close) or its close/reset. The
    # proxy may close the connection later, and say so in `closed_by` (e.g. a stall toxic that
    # swallowed the server's answering FIN), but the client let go first.
    client_closed_at: float | None = None

    def __str__(self) -> str:
        if self.closed_at is None:
            state = "half-closed by client" if self.client_closed_at is not None else "still open"
        else:
            state = f"{'reset' if self.reset else 'closed'} by {self.closed_by}"
            if self.closed_by != "client" and self.client_closed_at is not None:
                state += ", after the client's FIN"
        return f"{self.proxy}#{self.id} ({state})"


def connections(events: Iterable[Event], proxy: str | None = None) -> list[WireConnection]:
    """Every connection accepted by `proxy` (all proxies when None), oldest first."""
    # Keyed by proxy and id: the engine numbers connections across all its proxies, but
    # nothing in an event promises that.
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for event in events:
        if proxy is not None and event.get("proxy") != proxy:
            continue
        conn = event.get("connection")
        if conn is None:
            continue
        key = (event["proxy"], conn)
        kind = event["kind"]
        if kind == "accepted":
            found[key] = {"accepted_at": event["time"], "failed": False}
        elif key in found:
            data = found[key]
            if kind == "upstream_failed":
                data["failed"] = True
            elif kind == "half_closed" and event.get("side") == "client":
                data.setdefault("client_closed_at", event["time"])
            elif kind == "closed":
                data.update(closed_at=event["time"], by=event["by"], reset=event["reset"])
                if event["by"] == "client":
                    data.setdefault("client_closed_at", event["time"])
    seen = [
        WireConnection(
            id=conn,
            proxy=name,
            accepted_at=data["accepted_at"],
            closed_at=data.get("closed_at"),
            closed_by=data.get("by"),
            reset=bool(data.get("reset", False)),
            upstream_failed=data["failed"],
            client_closed_at=data.get("client_closed_at"),
        )
        for (name, conn), data in found.items()
    ]
    return sorted(seen, key=lambda c: (c.accepted_at, c.id))


def attempt_times(events: Iterable[Event], proxy: str) -> list[float]:
    """When the client connected to `proxy`: one entry per connection attempt that reached it."""
    return [c.accepted_at for c in connections(events, proxy)]


def traffic_during(
    events: Iterable[Event], proxy: str, start: float, end: float | None
) -> list[Event]:
    """Connections accepted and data carried by `proxy` between `start` and `end`."""
    return [
        event
        for event in events
        if event.get("proxy") == proxy
        and event["kind"] in ("accepted", "data")
        and start <= event["time"]
        and (end is None or event["time"] <= end)
    ]


def busiest_second(times: Sequence[float]) -> tuple[int, float]:
    """The most attempts in any one-second window, and when that window started."""
    ordered = sorted(times)
    best, best_start, first = 0, ordered[0] if ordered else 0.0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] > 1.0:
            first += 1
        if last - first + 1 > best:
            best, best_start = last - first + 1, ordered[first]
    return best, best_start
