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

    def __str__(self) -> str:
        state = (
            "still open"
            if self.closed_at is None
            else f"{'reset' if self.reset else 'closed'} by {self.closed_by}"
        )
        return f"{self.proxy}#{self.id} ({state})"


def connections(events: Iterable[Event], proxy: str | None = None) -> list[WireConnection]:
    """Every connection accepted by `proxy` (all proxies when None), oldest first."""
    found: dict[int, dict[str, Any]] = {}
    for event in events:
        if proxy is not None and event.get("proxy") != proxy:
            continue
        conn = event.get("connection")
        if conn is None:
            continue
        kind = event["kind"]
        if kind == "accepted":
            found[conn] = {"proxy": event["proxy"], "accepted_at": event["time"], "failed": False}
        elif conn in found:
            if kind == "upstream_failed":
                found[conn]["failed"] = True
            elif kind == "closed":
                found[conn].update(closed_at=event["time"], by=event["by"], reset=event["reset"])
    return [
        WireConnection(
            id=conn,
            proxy=data["proxy"],
            accepted_at=data["accepted_at"],
            closed_at=data.get("closed_at"),
            closed_by=data.get("by"),
            reset=bool(data.get("reset", False)),
            upstream_failed=data["failed"],
        )
        for conn, data in sorted(found.items())
    ]


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
