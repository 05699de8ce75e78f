"""What the proxy saw, read from the engine's events: connection attempts, who closed a
connection and when, and traffic during a window. The other half of every resilience claim:
the client library says it retried; the dependency's side of the wire says when."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_chaos.events import Accepted, Closed, Data, Event, HalfClosed, UpstreamFailed


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


@dataclass
class _Seen:
    accepted: Accepted
    failed: bool = False
    client_closed_at: float | None = None
    closed: Closed | None = None


def connections(events: Iterable[Event], proxy: str | None = None) -> list[WireConnection]:
    """Every connection accepted by `proxy` (all proxies when None), oldest first."""
    # Keyed by proxy and id: the engine numbers connections across all its proxies, but
    # nothing in an event promises that.
    found: dict[tuple[str | None, int], _Seen] = {}
    for event in events:
        if proxy is not None and event.proxy != proxy:
            continue
        if isinstance(event, Accepted):
            found[(event.proxy, event.connection)] = _Seen(event)
            continue
        seen = found.get((event.proxy, getattr(event, "connection", -1)))
        if seen is None:
            continue
        if isinstance(event, UpstreamFailed):
            seen.failed = True
        elif isinstance(event, HalfClosed) and event.side == "client":
            seen.client_closed_at = seen.client_closed_at or event.time
        elif isinstance(event, Closed):
            seen.closed = event
            if event.by == "client":
                seen.client_closed_at = seen.client_closed_at or event.time
    wired = [
        WireConnection(
            id=seen.accepted.connection,
            proxy=str(seen.accepted.proxy),
            accepted_at=seen.accepted.time,
            closed_at=None if seen.closed is None else seen.closed.time,
            closed_by=None if seen.closed is None else seen.closed.by,
            reset=seen.closed is not None and seen.closed.reset,
            upstream_failed=seen.failed,
            client_closed_at=seen.client_closed_at,
        )
        for seen in found.values()
    ]
    return sorted(wired, key=lambda c: (c.accepted_at, c.id))


def attempt_times(events: Iterable[Event], proxy: str) -> list[float]:
    """When the client connected to `proxy`: one entry per connection attempt that reached it."""
    return [c.accepted_at for c in connections(events, proxy)]


def traffic_during(
    events: Iterable[Event], proxy: str, start: float, end: float | None
) -> list[Accepted | Data]:
    """Connections accepted and data carried by `proxy` between `start` and `end`: a data
    event counts when any of its bytes arrived inside the window."""
    found: list[Accepted | Data] = []
    for event in events:
        if event.proxy != proxy:
            continue
        if isinstance(event, Accepted):
            first, last = event.time, event.time
        elif isinstance(event, Data):
            first, last = event.time, event.until
        else:
            continue
        if last >= start and (end is None or first <= end):
            found.append(event)
    return found


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
