"""The wire-side views read the engine's events: who opened and closed what, and when."""

from __future__ import annotations

import pytest

from pytest_chaos.events import parse_event
from pytest_chaos.wire import (
    WireConnection,
    attempt_times,
    busiest_second,
    connections,
    traffic_during,
)
from tests.assertions.helpers import event_stream


def test_connections_follow_each_connection_to_its_close() -> None:
    events = event_stream(
        "redis",
        (10.0, "accepted", 1, {}),
        (10.1, "data", 1, {"direction": "upstream", "bytes": 14}),
        (10.2, "half_closed", 1, {"side": "client"}),
        (10.3, "closed", 1, {"by": "toxic chaos_timeout_downstream_1 (timeout)", "reset": False}),
        (11.0, "accepted", 2, {}),
        (11.0, "upstream_failed", 2, {"error": "refused"}),
        (11.0, "closed", 2, {"by": "proxy: upstream dial failed", "reset": True}),
        (12.0, "accepted", 3, {}),
        (12.5, "closed", 3, {"by": "client", "reset": False}),
        (13.0, "accepted", 4, {}),
        (13.1, "half_closed", 4, {"side": "server"}),
        (14.0, "accepted", 5, {}),
        (14.1, "half_closed", 5, {"side": "client"}),
    )
    seen = connections(events)
    assert [str(c) for c in seen] == [
        "redis#1 (closed by toxic chaos_timeout_downstream_1 (timeout), after the client's FIN)",
        "redis#2 (reset by proxy: upstream dial failed)",
        "redis#3 (closed by client)",
        "redis#4 (still open)",
        "redis#5 (half-closed by client)",
    ]
    assert seen[0] == WireConnection(
        id=1,
        proxy="redis",
        accepted_at=10.0,
        closed_at=10.3,
        closed_by="toxic chaos_timeout_downstream_1 (timeout)",
        reset=False,
        upstream_failed=False,
        client_closed_at=10.2,
    )
    assert seen[1].upstream_failed
    assert seen[2].client_closed_at == 12.5
    assert seen[3].client_closed_at is None


def test_connections_and_attempts_of_one_proxy() -> None:
    events = [
        *event_stream("redis", (1.0, "accepted", 1, {}), (3.0, "accepted", 2, {})),
        *event_stream("web", (2.0, "accepted", 1, {})),
        parse_event({"seq": 9, "time": 2.5, "kind": "toxic_added", "proxy": "redis", "toxic": {}}),
    ]
    # Ids repeat across proxies here (the engine happens to number them globally).
    assert [str(c) for c in connections(events)] == [
        "redis#1 (still open)",
        "web#1 (still open)",
        "redis#2 (still open)",
    ]
    assert attempt_times(events, "redis") == [1.0, 3.0]
    assert attempt_times(events, "web") == [2.0]


def test_traffic_during_counts_accepts_and_data_only() -> None:
    events = event_stream(
        "redis",
        (1.0, "accepted", 1, {}),
        (1.5, "data", 1, {"direction": "upstream", "bytes": 14}),
        (2.5, "data", 1, {"direction": "downstream", "bytes": 7}),
        (2.6, "closed", 1, {"by": "client", "reset": False}),
        (4.0, "accepted", 2, {}),
    )
    assert [e.time for e in traffic_during(events, "redis", 1.2, 3.0)] == [1.5, 2.5]
    assert [e.time for e in traffic_during(events, "redis", 3.0, None)] == [4.0]
    assert traffic_during(events, "web", 0.0, None) == []


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([], (0, 0.0)),
        ([5.0], (1, 5.0)),
        ([0.0, 0.5, 1.0, 1.01, 1.02], (4, 0.5)),
        ([0.0, 2.0, 2.1, 2.2, 9.0], (3, 2.0)),
        ([3.0, 1.0, 2.0], (2, 1.0)),
    ],
)
def test_busiest_second(times: list[float], expected: tuple[int, float]) -> None:
    assert busiest_second(times) == expected
