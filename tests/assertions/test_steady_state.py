"""assert_steady_state and assert_recovers: whole messages on recordings whose every call is
chosen, then real loads (redis-py against a real redis-server, httpx against a real HTTP
server) through real faults of the session's engine, with the accuracy of the latency they
report against the configured toxic."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import redis

from pytest_chaos.assertions import ChaosAssertionError, assert_recovers, assert_steady_state
from pytest_chaos.chaos import Chaos
from pytest_chaos.faults import Down
from pytest_chaos.load import LoadError
from tests.assertions.helpers import BODY_SIZE, assert_message
from tests.load.helpers import engine_events
from tests.load.test_windows import DOWN, LATENCY, scenario

LATENCY_HINT = (
    "Hint: the fault's delay reached the callers: does each call have a timeout shorter than"
    " the SLO, and a fallback (a cache, a default) when it expires?"
)
RECOVERY_HINT = (
    "Hint: after a fault the client must come back on its own: does its pool drop broken"
    " connections, and is a circuit breaker's reset timeout shorter than `within`?"
)


# ------------------------------------------------------------------------ steady state
def test_a_slow_window_breaks_a_latency_slo() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(scenario(), p99=0.1, error_rate=0.01, during=LATENCY)
    assert str(raised.value) == "\n".join(
        [
            "The steady state did not hold during latency('api', ms=200).",
            "- p99 200 ms (at most 100 ms)  <-- over",
            "- error rate 0.0% (at most 1.0%)",
            "- 10 calls in 1.00s (10.0/s): p50 200 ms, p90 200 ms, p99 200 ms, max 200 ms",
            "- no errors",
            LATENCY_HINT,
        ]
    )


def test_an_outage_breaks_an_error_rate_slo_and_names_the_errors() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(scenario(), error_rate=0.01, during="dependency_down")
    assert str(raised.value) == "\n".join(
        [
            "The steady state did not hold during dependency_down('api').",
            "- error rate 100.0% (at most 1.0%)  <-- over",
            "- 5 calls in 0.50s (10.0/s): p50 1.0 ms, p90 1.0 ms, p99 1.0 ms, max 1.0 ms",
            "- ConnectionRefusedError in 5 calls (100.0%)",
            "Hint: failures reached the callers: are failed calls retried with backoff, or"
            " answered from a fallback, while the dependency is impaired?",
        ]
    )


def test_several_windows_are_checked_together_and_the_failing_ones_named() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(scenario(), p99=0.01, error_rate=0.0, during=["before", "after"])
    assert str(raised.value) == "\n".join(
        [
            "The steady state did not hold during after faults.",
            "- before faults: p99 2.0 ms (at most 10 ms)",
            "- before faults: error rate 0.0% (at most 0.0%)",
            "- before faults: 10 calls in 1.00s (10.0/s): p50 2.0 ms, p90 2.0 ms, p99 2.0 ms,"
            " max 2.0 ms",
            "- before faults: no errors",
            "- after faults: p99 50 ms (at most 10 ms)  <-- over",
            "- after faults: error rate 10.0% (at most 0.0%)  <-- over",
            "- after faults: 10 calls in 1.00s (10.0/s): p50 2.0 ms, p90 2.0 ms, p99 50 ms,"
            " max 50 ms",
            "- after faults: ConnectionRefusedError in 1 call (10.0%)",
            "Hint: the load did not come back after the faults: does the client reconnect (a"
            " pool that drops broken connections, a breaker that closes again)?",
        ]
    )


def test_a_baseline_that_already_breaks_the_slo_says_so() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(scenario(), p50=0.001, during="before")
    message = str(raised.value)
    assert message.startswith("The steady state did not hold during before faults.\n")
    assert message.endswith(
        "Hint: the SLO failed before any fault: is the limit realistic on this machine, or was"
        " the service still warming up (first connections, empty caches)?"
    )


def test_too_few_calls_break_a_throughput_slo() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(scenario(), throughput=20, during=DOWN)
    lines = str(raised.value).splitlines()
    assert lines[1] == "- throughput 10.0/s (at least 20.0/s)  <-- under"
    assert lines[-1] == (
        "Hint: fewer calls got through: are calls queued behind slow ones (too few workers, a"
        " lock or a pool held across a slow call)?"
    )


def test_a_window_without_calls_cannot_pass() -> None:
    from tests.load.helpers import applied, recording

    rec = recording([(0.05, 0.001, None)], [applied(LATENCY, 0.5, 1.0)], stop=1.0)
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(rec, p99=1.0, during=LATENCY)
    assert str(raised.value) == "\n".join(
        [
            "The steady state did not hold during latency('api', ms=200).",
            "- the load made no call in this window  <-- nothing to judge",
            "- 0 calls in 0.50s (0.0/s)",
            "- no errors",
            "Hint: the window is shorter than a call: make it longer, or raise the load's rate"
            " or concurrency.",
        ]
    )


def test_the_proxies_view_is_shown_beside_the_calls() -> None:
    events = engine_events(
        (2.55, "accepted", "api", 2, {"client": "127.0.0.1:5001"}),
        (2.56, "closed", "api", 2, {"by": "proxy", "reset": True}),
    )
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(scenario(events), error_rate=0.5, during=DOWN)
    assert "\n- proxy api: 1 connection, 0 B up, 0 B down, 1 reset, 0 refused upstream\n" in str(
        raised.value
    )


def test_a_steady_state_that_holds_returns_its_signals() -> None:
    stats = assert_steady_state(scenario(), p99=0.25, during=LATENCY)
    assert not isinstance(stats, list)
    assert stats.window == "latency('api', ms=200)"
    both = assert_steady_state(scenario(), error_rate=0.0, during=["before", LATENCY])
    assert isinstance(both, list)
    assert [s.window for s in both] == [
        "before faults",
        "latency('api', ms=200)",
    ]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            {},
            "assert_steady_state needs at least one limit: p50, p90, p99 (seconds), error_rate"
            " (0..1) or throughput (calls per second)",
        ),
        ({"p99": -1}, "p99 must be a number >= 0, got -1"),
        ({"p99": "300ms"}, "p99 must be a number >= 0, got '300ms'"),
        ({"error_rate": 5}, "error_rate is a fraction of the calls from 0 to 1 (0.01 = 1%), got 5"),
        ({"p99": 1, "during": []}, "during must name a window, or be a non-empty list of windows"),
    ],
    ids=["no-limit", "negative", "text", "percent-not-fraction", "no-window"],
)
def test_limits_that_make_no_sense_are_refused(limits: dict[str, object], message: str) -> None:
    with pytest.raises(LoadError) as raised:
        assert_steady_state(scenario(), **limits)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_something_that_is_no_load_is_refused() -> None:
    with pytest.raises(LoadError) as raised:
        assert_steady_state([1, 2, 3], p99=1)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "load must be a load (`chaos.load(...)`) or its recording, got [1, 2, 3]"
    )


# ----------------------------------------------------------------------------- recovery
def test_a_recovery_slower_than_promised_is_reported_with_its_baseline() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_recovers(scenario(), within=0.2)
    assert str(raised.value) == "\n".join(
        [
            "The load did not recover within 0.20s of the last revert (dependency_down('api')).",
            "- back 0.25s after the revert  <-- too late",
            "- baseline (10 calls before the first fault): p99 2.0 ms, no errors",
            "- back means: every call succeeds, p90 at most 8.0 ms",
            "- after the revert: 10 calls in 1.00s (10.0/s): p50 2.0 ms, p90 2.0 ms, p99 50 ms,"
            " max 50 ms; 1 error (10.0%): ConnectionRefusedError 1",
            "- last slow or failed call started 0.15s after the revert: slow, 50 ms",
            RECOVERY_HINT,
        ]
    )
    assert assert_recovers(scenario(), within=0.3).time == pytest.approx(0.25)


def test_a_load_that_never_came_back_is_reported() -> None:
    from tests.load.helpers import applied, recording, steady_calls

    calls = steady_calls(0.05, 1.0, 0.1, 0.002) + steady_calls(1.05, 3.0, 0.1, 0.001, "OSError")
    rec = recording(calls, [applied(Down("api"), 1.0, 2.0)], stop=3.0)
    with pytest.raises(ChaosAssertionError) as raised:
        assert_recovers(rec, within=5)
    assert str(raised.value).splitlines()[:2] == [
        "The load did not recover within 5.00s of the last revert (dependency_down('api')).",
        "- still not back when the load stopped, 1.00s after the revert  <-- not recovered",
    ]
    assert str(raised.value).splitlines()[-2] == (
        "- last slow or failed call started 0.95s after the revert: OSError, 1.0 ms"
    )


def test_within_must_be_seconds() -> None:
    with pytest.raises(LoadError) as raised:
        assert_recovers(scenario(), within=-1)
    assert str(raised.value) == "within must be a number of seconds >= 0, got -1"


# --------------------------------------------------------------- real clients, real faults
def test_a_redis_load_through_a_latency_fault_and_an_outage(
    chaos: Chaos, cache: redis.Redis
) -> None:
    """redis-py against a real redis-server: the latency window shows the toxic's delay, the
    outage window the client's own error type, and the load comes back after it."""
    with chaos.load(cache.ping, concurrency=2) as load:
        time.sleep(0.3)
        with chaos.latency("redis", 50) as slow:
            time.sleep(0.5)
        time.sleep(0.3)
        with chaos.dependency_down("redis") as outage:
            time.sleep(0.3)
        time.sleep(0.5)
    before, during, down = load.stats("before"), load.stats(slow), load.stats(outage)
    assert before.count > 20
    assert before.errors == {}
    assert before.p50 is not None
    assert before.p50 < 0.02
    assert during.p50 is not None
    assert 0.045 <= during.p50 <= 0.1
    assert down.count > 0
    assert set(down.errors) == {"ConnectionError"}
    assert down.error_rate > 0.5
    assert all("dependency_down('redis')" in c.faults for c in load.calls if c.error)
    assert_steady_state(load, p99=0.5, error_rate=0.0, during=["before", slow, "after"])
    recovery = assert_recovers(load, within=1.0)
    assert recovery.time is not None
    assert recovery.time < 1.0
    # Through its pooled connections the proxy saw few connections and the bytes of the calls
    # (the engine reports bytes every 50 ms: those at a window's edges may fall in the next).
    view = load.stats("before").proxies["redis"]
    assert view.connections <= 2
    assert view.bytes_up >= 14 * before.count // 2  # "*1\r\n$4\r\nPING\r\n"
    assert view.bytes_down >= 7 * before.count // 2  # "+PONG\r\n"


def test_the_message_of_a_real_slow_window(chaos: Chaos, cache: redis.Redis) -> None:
    with chaos.load(cache.ping) as load:
        time.sleep(0.1)
        with chaos.latency("redis", 100) as slow:
            time.sleep(0.4)
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(load, p99=0.05, during=slow)
    assert_message(
        raised.value,
        "\n".join(
            [
                "The steady state did not hold during latency('redis', ms=100).",
                "- p99 <ms> (at most 50 ms)  <-- over",
                "- <n> calls in <s> (<rate>): p50 <ms>, p90 <ms>, p99 <ms>, max <ms>",
                "- no errors",
                "- proxy redis: <n> connections, <text> up, <text> down, 0 resets, 0 refused"
                " upstream",
                LATENCY_HINT,
            ]
        ),
    )


def test_load_stats_match_a_configured_latency_toxic(chaos: Chaos, cache: redis.Redis) -> None:
    """Accuracy: the p50 the load reports moves by the toxic's latency (the benchmark makes the
    precise claim, within 1 ms; this bound is generous for a shared machine)."""
    with chaos.load(cache.ping) as load:
        time.sleep(0.3)
        with chaos.latency("redis", 40) as slow:
            time.sleep(0.6)
    before, during = load.stats("before"), load.stats(slow)
    assert before.p50 is not None
    assert during.p50 is not None
    assert during.p50 - before.p50 == pytest.approx(0.040, abs=0.010)


def test_an_http_load_and_what_the_proxy_saw_of_it(chaos: Chaos, web_url: str) -> None:
    """httpx against a real HTTP server, a new connection per call: the proxy accepted one
    connection per call and carried each response's body."""
    lock = threading.Lock()
    bodies: list[int] = []

    def get() -> None:
        response = httpx.get(web_url, timeout=2)
        with lock:
            bodies.append(len(response.content))

    with chaos.load(get, concurrency=2, rate=40) as load:
        time.sleep(0.5)
        with chaos.reset_peer("web") as resets:
            time.sleep(0.3)
        time.sleep(0.3)
    before = load.stats("before")
    view = before.proxies["web"]
    assert abs(view.connections - before.count) <= 2
    assert view.bytes_down >= BODY_SIZE * (before.count - 2)
    assert set(bodies) == {BODY_SIZE}
    broken = load.stats(resets)
    assert broken.failed > 0
    assert broken.proxies["web"].resets > 0
    assert set(broken.errors) <= {"ReadError", "RemoteProtocolError", "ConnectError"}
    assert load.stats("after").errors == {}
