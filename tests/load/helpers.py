"""Helpers for the load tests: recordings made of chosen calls and faults (so that signals and
messages can be checked to the last digit), and a real HTTP call for loads that go through
the engine."""

from __future__ import annotations

import http.client
from collections.abc import Sequence
from typing import Any

from pytest_chaos.apply import AppliedFault
from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.events import Event, parse_events
from pytest_chaos.faults import Fault
from pytest_chaos.load import CallRecord, Recording
from pytest_chaos.load.recording import FaultWindow

# Synthetic times start here (any monotonic value would do).
T0 = 1000.0


def applied(fault: Fault, start: float, end: float | None) -> AppliedFault:
    """A fault that was applied `start` seconds after T0 and reverted at `end` (None: still
    active)."""
    return AppliedFault(fault, applied_at=T0 + start, reverted_at=None if end is None else T0 + end)


def recording(
    calls: Sequence[tuple[float, float, str | None]],
    faults: Sequence[AppliedFault] = (),
    *,
    stop: float,
    events: Sequence[Event] | None = None,
) -> Recording:
    """A recording of `calls` ((start after T0, latency, error) each), run from T0 to T0 +
    `stop`, with the `faults` and engine `events`."""
    windows = tuple(FaultWindow(f, f.applied_at, f.reverted_at) for f in faults)
    records = tuple(
        CallRecord(
            T0 + start,
            latency,
            error,
            tuple(
                w.name
                for w in windows
                if w.start <= T0 + start + latency and (w.end is None or w.end >= T0 + start)
            ),
        )
        for start, latency, error in sorted(calls)
    )
    return Recording(
        calls=records,
        faults=windows,
        events=None if events is None else tuple(events),
        started_at=T0,
        stopped_at=T0 + stop,
    )


def steady_calls(
    start: float, stop: float, every: float, latency: float, error: str | None = None
) -> list[tuple[float, float, str | None]]:
    """One call every `every` seconds from `start` (included) to `stop` (excluded)."""
    calls = []
    while (at := round(start + len(calls) * every, 6)) < stop:
        calls.append((at, latency, error))
    return calls


def engine_events(*specs: tuple[float, str, str, int, dict[str, Any]]) -> list[Event]:
    """Engine events from (time after T0, kind, proxy, connection, extra fields) tuples."""
    return parse_events(
        {"seq": seq, "time": T0 + at, "kind": kind, "proxy": proxy, "connection": conn, **extra}
        for seq, (at, kind, proxy, conn, extra) in enumerate(specs, 1)
    )


def http_get(proxy: ProxyInfo, path: str = "/", *, timeout: float = 2.0) -> bytes:
    """GET `path` through `proxy` on a new connection; an HTTP error status raises."""
    connection = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return body
    finally:
        connection.close()
