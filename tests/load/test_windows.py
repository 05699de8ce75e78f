"""Signals per window and the recovery time, on recordings whose every call is chosen, so
that each figure can be checked exactly: which calls a window holds, percentiles, error rates
by type, throughput, the proxies' view, the recovery point, the report's JSON, and the errors
for windows that name nothing."""

from __future__ import annotations

import pytest

from pytest_chaos.faults import Down, Latency
from pytest_chaos.load import LoadError, Recording
from pytest_chaos.load.recording import fault_window, sample_calls
from pytest_chaos.load.signals import CallRecord, format_bytes, format_latency, percentile
from tests.load.helpers import T0, applied, engine_events, recording, steady_calls

LATENCY = Latency("api", 200)
DOWN = Down("api")
REFUSED = "ConnectionRefusedError"


def scenario(events: list | None = None) -> Recording:  # type: ignore[type-arg]
    """Four seconds, a call every 0.1 s: fast; 200 ms slower under the latency fault
    (1.0-2.0 s); refused under the outage (2.5-3.0 s); after it, one more refusal and one
    slow call before the calls are fast again."""
    calls = steady_calls(0.05, 1.0, 0.1, 0.002)
    calls += steady_calls(1.05, 2.0, 0.1, 0.2)
    calls += steady_calls(2.05, 2.5, 0.1, 0.002)
    calls += steady_calls(2.55, 3.0, 0.1, 0.001, REFUSED)
    calls += [(3.05, 0.001, REFUSED), (3.15, 0.05, None)]
    calls += steady_calls(3.25, 4.0, 0.1, 0.002)
    faults = [applied(LATENCY, 1.0, 2.0), applied(DOWN, 2.5, 3.0)]
    return recording(calls, faults, stop=4.0, events=events)


def starts(recording: Recording, during: object) -> list[float]:
    window = recording.window(during)
    return [round(call.start - T0, 2) for call in recording.calls_in(window)]


# ---------------------------------------------------------------------------------- windows
def test_the_whole_run_holds_every_call() -> None:
    stats = scenario().stats()
    assert stats.window == "whole run"
    assert (stats.count, stats.duration, stats.throughput) == (40, 4.0, 10.0)
    assert stats.errors == {REFUSED: 6}
    assert stats.error_rate == pytest.approx(0.15)
    assert stats.error_rates == {REFUSED: pytest.approx(0.15)}
    assert (stats.p50, stats.p90, stats.p99, stats.max) == (0.002, 0.2, 0.2, 0.2)


def test_before_holds_the_calls_that_ended_before_the_first_fault() -> None:
    rec = scenario()
    assert starts(rec, "before") == [round(0.05 + 0.1 * i, 2) for i in range(10)]
    stats = rec.stats("before")
    assert (stats.window, stats.count, stats.duration, stats.p99) == (
        "before faults",
        10,
        1.0,
        0.002,
    )


def test_a_call_running_when_a_fault_was_applied_is_in_the_fault_s_window_not_before() -> None:
    rec = recording([(0.9, 0.2, None), (0.5, 0.01, None)], [applied(LATENCY, 1.0, 2.0)], stop=2.5)
    assert starts(rec, "before") == [0.5]
    assert starts(rec, LATENCY) == [0.9]
    assert rec.calls[1].faults == ("latency('api', ms=200)",)
    assert rec.calls[0].faults == ()


def test_a_fault_s_window_holds_the_calls_running_while_it_was_active() -> None:
    rec = scenario()
    slow = [round(1.05 + 0.1 * i, 2) for i in range(10)]
    assert starts(rec, LATENCY) == slow
    stats = rec.stats(LATENCY)
    assert (stats.window, stats.count, stats.duration, stats.p50) == (
        "latency('api', ms=200)",
        10,
        1.0,
        0.2,
    )
    down = rec.stats(DOWN)
    assert (down.count, down.errors, down.error_rate) == (5, {REFUSED: 5}, 1.0)


def test_a_fault_is_named_by_its_handle_value_text_or_kind() -> None:
    rec = scenario()
    handle = rec.faults[0].applied
    expected = starts(rec, LATENCY)
    assert starts(rec, handle) == expected
    assert starts(rec, "latency('api', ms=200)") == expected
    assert starts(rec, "latency") == expected
    assert starts(rec, "dependency_down") == starts(rec, DOWN)


def test_during_holds_the_calls_of_every_fault_window() -> None:
    rec = scenario()
    assert starts(rec, "during") == starts(rec, LATENCY) + starts(rec, DOWN)
    assert rec.stats("during").duration == pytest.approx(1.5)


def test_after_holds_the_calls_started_after_the_last_revert() -> None:
    rec = scenario()
    assert starts(rec, "after") == [3.05, 3.15] + [round(3.25 + 0.1 * i, 2) for i in range(8)]
    stats = rec.stats("after")
    assert (stats.window, stats.count, stats.errors, stats.duration) == (
        "after faults",
        10,
        {REFUSED: 1},
        1.0,
    )


def test_a_pair_of_monotonic_times_is_a_window_too() -> None:
    rec = scenario()
    assert starts(rec, (T0 + 2.52, T0 + 2.76)) == [2.55, 2.65, 2.75]
    assert rec.stats((T0 + 2.52, T0 + 2.76)).window == "+2.52s..+2.76s"
    assert starts(rec, (T0 + 3.9, None)) == [3.95]


def test_the_same_fault_applied_twice_is_one_window_of_two_spans() -> None:
    calls = steady_calls(0.05, 3.0, 0.1, 0.001)
    rec = recording(calls, [applied(LATENCY, 0.5, 1.0), applied(LATENCY, 2.0, 2.5)], stop=3.0)
    stats = rec.stats(LATENCY)
    assert stats.count == 10
    assert stats.duration == pytest.approx(1.0)
    assert [w.name for w in rec.fault_windows()] == ["latency('api', ms=200)"] * 2


@pytest.mark.parametrize(
    ("during", "message"),
    [
        (
            "latancy",
            "window 'latancy' names no fault applied while the load ran; a window is None (the"
            " whole run), 'before', 'during', 'after', a fault applied while the load ran (its"
            " handle, the fault, its text or its kind; applied: latency('api', ms=200),"
            " dependency_down('api')), or a (start, end) pair of time.monotonic() times",
        ),
        (
            Latency("cache", 200),
            "window latency('cache', ms=200) names no fault applied while the load ran; a"
            " window is None (the whole run),"
            " 'before', 'during', 'after', a fault applied while the load ran (its handle, the"
            " fault, its text or its kind; applied: latency('api', ms=200),"
            " dependency_down('api')), or a (start, end) pair of time.monotonic() times",
        ),
        (
            42,
            "window 42 is not a window; a window is None (the whole run), 'before', 'during',"
            " 'after', a fault applied while the load ran (its handle, the fault, its text or"
            " its kind; applied: latency('api', ms=200), dependency_down('api')), or a (start,"
            " end) pair of time.monotonic() times",
        ),
        (
            ("start", "end"),
            "a window given as a pair must be (start, end) times from time.monotonic(), got"
            " ('start', 'end')",
        ),
        ((T0 + 2, T0 + 1), "window (1002.0, 1001.0) ends before it starts"),
    ],
    ids=["misspelt", "fault-not-applied", "not-a-window", "pair-of-text", "reversed-pair"],
)
def test_a_window_that_names_nothing_is_refused_with_what_is_allowed(
    during: object, message: str
) -> None:
    with pytest.raises(LoadError) as raised:
        scenario().stats(during)
    assert str(raised.value) == message


def test_a_kind_matching_two_different_faults_is_ambiguous() -> None:
    faults = [applied(LATENCY, 0.5, 1.0), applied(Latency("api", 50), 2.0, 2.5)]
    rec = recording(steady_calls(0.05, 3.0, 0.1, 0.001), faults, stop=3.0)
    with pytest.raises(LoadError) as raised:
        rec.stats("latency")
    assert str(raised.value) == (
        "window 'latency' is ambiguous: it matches latency('api', ms=200), latency('api',"
        " ms=50); name one by its text or pass its handle (`with chaos.latency(...) as fault:`)"
    )


def test_before_during_and_after_need_a_fault() -> None:
    rec = recording(steady_calls(0.05, 1.0, 0.1, 0.001), stop=1.0)
    with pytest.raises(LoadError) as raised:
        rec.stats("before")
    assert str(raised.value) == (
        "window 'before' needs a fault, and none was applied while the load ran; apply one"
        " inside the load's block (`with chaos.latency(...):`)"
    )


def test_after_needs_every_fault_reverted() -> None:
    rec = recording(steady_calls(0.05, 1.0, 0.1, 0.001), [applied(DOWN, 0.5, None)], stop=1.0)
    with pytest.raises(LoadError) as raised:
        rec.stats("after")
    assert str(raised.value) == (
        "window 'after' starts at the last revert, but dependency_down('api') was still active"
        " when the load stopped; end its block before the load's"
    )
    # A fault still active at the end runs to the end of the load.
    assert rec.stats(DOWN).duration == pytest.approx(0.5)


def test_without_a_fault_there_is_only_the_whole_run() -> None:
    rec = recording(steady_calls(0.05, 1.0, 0.1, 0.001), stop=1.0)
    assert [w.name for w in rec.windows()] == ["whole run"]


def test_windows_lists_the_whole_run_before_each_fault_and_after() -> None:
    assert [w.name for w in scenario().windows()] == [
        "whole run",
        "before faults",
        "latency('api', ms=200)",
        "dependency_down('api')",
        "after faults",
    ]


# ------------------------------------------------------------------------------- signals
def test_percentiles_are_nearest_rank() -> None:
    values = [float(i) for i in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99)) == (
        50.0,
        90.0,
        99.0,
    )
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_a_window_without_calls_has_no_latency() -> None:
    rec = recording([(0.05, 0.001, None)], [applied(LATENCY, 0.5, 1.0)], stop=1.0)
    stats = rec.stats(LATENCY)
    assert (stats.count, stats.p50, stats.p99, stats.max, stats.error_rate) == (
        0,
        None,
        None,
        None,
        0.0,
    )
    assert stats.describe_calls() == "0 calls in 0.50s (0.0/s)"


def test_the_proxies_view_counts_what_the_engine_saw_in_each_window() -> None:
    events = engine_events(
        (0.10, "accepted", "api", 1, {"client": "127.0.0.1:5000"}),
        (0.10, "data", "api", 1, {"direction": "upstream", "bytes": 100}),
        (0.12, "data", "api", 1, {"direction": "downstream", "bytes": 250}),
        (0.13, "closed", "api", 1, {"by": "client"}),
        (2.55, "accepted", "api", 2, {"client": "127.0.0.1:5001"}),
        (2.56, "closed", "api", 2, {"by": "proxy", "reset": True}),
        (2.65, "accepted", "api", 3, {"client": "127.0.0.1:5002"}),
        (2.66, "upstream_failed", "api", 3, {"upstream": "127.0.0.1:1", "error": "refused"}),
        (9.00, "accepted", "elsewhere", 4, {"client": "127.0.0.1:5003"}),
    )
    rec = scenario(events)
    before = rec.stats("before").proxies
    assert list(before) == ["api"]  # a proxy that saw nothing while the load ran is left out
    assert str(before["api"]) == (
        "proxy api: 1 connection, 100 B up, 250 B down, 0 resets, 0 refused upstream"
    )
    down = rec.stats(DOWN).proxies["api"]
    assert (down.connections, down.resets, down.refused, down.bytes_up) == (2, 1, 1, 0)
    assert rec.stats(DOWN).to_json()["proxies"] == {
        "api": {"connections": 2, "bytes_up": 0, "bytes_down": 0, "resets": 1, "refused": 1}
    }


def test_stats_print_as_one_line() -> None:
    assert str(scenario().stats(DOWN)) == (
        "dependency_down('api'): 5 calls in 0.50s (10.0/s): p50 1.0 ms, p90 1.0 ms, p99 1.0 ms,"
        " max 1.0 ms; 5 errors (100.0%): ConnectionRefusedError 5"
    )


def test_formats() -> None:
    assert [format_latency(s) for s in (None, 0.00042, 0.0051, 0.412, 2.345)] == [
        "-",
        "0.42 ms",
        "5.1 ms",
        "412 ms",
        "2.35 s",
    ]
    assert [format_bytes(n) for n in (512, 12_300, 4_500_000)] == ["512 B", "12.3 KB", "4.5 MB"]


# ------------------------------------------------------------------------------ recovery
def test_recovery_is_the_first_call_from_which_the_load_stays_at_its_baseline() -> None:
    recovery = scenario().recovery()
    assert recovery.time == pytest.approx(0.25)
    assert recovery.latency_limit == pytest.approx(0.002 * 1.5 + 0.005)
    assert recovery.error_rate_limit == 0.0
    assert recovery.last_fault == "dependency_down('api')"
    assert recovery.last_unhealthy is not None
    assert round(recovery.last_unhealthy.start - T0, 2) == 3.15
    assert recovery.describe_limits() == "every call succeeds, p90 at most 8.0 ms"


def test_a_few_slow_calls_after_recovery_do_not_move_it() -> None:
    calls = steady_calls(0.005, 1.0, 0.01, 0.002)
    calls += steady_calls(1.005, 2.0, 0.01, 0.001, REFUSED)
    calls += steady_calls(2.005, 4.0, 0.01, 0.002)
    for index in range(-150, -50, 10):  # ten hiccups in 200 calls, long after the recovery
        calls[index] = (calls[index][0], 0.02, None)
    rec = recording(calls, [applied(DOWN, 1.0, 2.0)], stop=4.0)
    assert rec.recovery().time == pytest.approx(0.005)


def test_recovery_starts_at_a_healthy_call() -> None:
    # The first call after the revert is slow, the next 200 fast: one slow call in 201 keeps
    # the p90 within the limit, but the recovery starts at the first call that was back.
    calls = steady_calls(0.005, 1.0, 0.01, 0.002) + steady_calls(1.005, 2.0, 0.01, 0.001, REFUSED)
    calls += [(2.005, 0.05, None), *steady_calls(2.015, 4.0, 0.01, 0.002)]
    rec = recording(calls, [applied(DOWN, 1.0, 2.0)], stop=4.0)
    assert rec.recovery().time == pytest.approx(0.015)


def test_slow_calls_after_a_fast_one_are_not_a_recovery_yet() -> None:
    # Fast, then 30 slow calls (more than 10% of what follows), then fast for good.
    calls = steady_calls(0.005, 1.0, 0.01, 0.002) + steady_calls(1.005, 2.0, 0.01, 0.001, REFUSED)
    calls += [(2.005, 0.002, None), *steady_calls(2.015, 2.3, 0.01, 0.05)]
    calls += steady_calls(2.305, 3.0, 0.01, 0.002)
    rec = recording(calls, [applied(DOWN, 1.0, 2.0)], stop=3.0)
    assert rec.recovery().time == pytest.approx(0.305)


def test_a_load_that_never_came_back_has_no_recovery_time() -> None:
    calls = steady_calls(0.05, 1.0, 0.1, 0.002) + steady_calls(1.05, 3.0, 0.1, 0.001, REFUSED)
    rec = recording(calls, [applied(DOWN, 1.0, 2.0)], stop=3.0)
    assert rec.recovery().time is None


def test_recovery_limits_can_be_given() -> None:
    # The slow call after the outage is within a 100 ms limit.
    assert scenario().recovery(latency=0.1).time == pytest.approx(0.15)
    # One refusal in ten calls long after the outage: back only after it, unless the limit
    # allows that error rate.
    calls = steady_calls(0.05, 1.0, 0.1, 0.002) + steady_calls(1.05, 3.0, 0.1, 0.002)
    calls[15] = (calls[15][0], 0.001, REFUSED)
    rec = recording(calls, [applied(DOWN, 1.0, 1.01)], stop=3.0)
    assert rec.recovery().time == pytest.approx(0.64)
    assert rec.recovery(error_rate=0.1).time == pytest.approx(0.04)


def test_recovery_needs_a_baseline_or_a_latency_limit() -> None:
    calls = steady_calls(0.05, 2.0, 0.1, 0.002)
    rec = recording(calls, [applied(DOWN, 0.0, 1.0)], stop=2.0)
    with pytest.raises(LoadError) as raised:
        rec.recovery()
    assert str(raised.value) == (
        "recovery needs a baseline: the load made no call before the first fault; start the"
        " load earlier, or give the limit: latency=SECONDS"
    )
    assert rec.recovery(latency=0.01).time == pytest.approx(0.05)


# ---------------------------------------------------------------------------------- JSON
def test_the_report_json_has_the_signals_per_window_and_the_calls() -> None:
    data = scenario().to_json(T0, max_points=100)
    assert [w["window"] for w in data["windows"]] == [
        "whole run",
        "before faults",
        "latency('api', ms=200)",
        "dependency_down('api')",
        "after faults",
    ]
    assert [w["kind"] for w in data["windows"]] == ["all", "before", "fault", "fault", "after"]
    assert data["windows"][2]["spans"] == [[1.0, 2.0]]
    assert data["windows"][3] == {
        "window": "dependency_down('api')",
        "duration": 0.5,
        "count": 5,
        "throughput": 10.0,
        "error_rate": 1.0,
        "errors": {REFUSED: 5},
        "p50": 0.001,
        "p90": 0.001,
        "p99": 0.001,
        "max": 0.001,
        "proxies": {},
        "kind": "fault",
        "spans": [[2.5, 3.0]],
    }
    assert data["recovery"] == {"time": 0.25, "reverted_at": 3.0, "recovered_at": 3.25}
    assert data["calls"]["count"] == data["calls"]["shown"] == 40
    assert data["calls"]["start"][:2] == [0.05, 0.15]
    assert data["calls"]["error"].count(REFUSED) == 6


def test_the_calls_shown_in_a_report_keep_the_failures() -> None:
    calls = [CallRecord(float(i), 0.001, REFUSED if i % 50 == 0 else None) for i in range(1000)]
    shown = sample_calls(calls, 100)
    assert len(shown) == 100
    assert sum(1 for call in shown if not call.ok) == 20
    assert [c.start for c in shown] == sorted(c.start for c in shown)


# ------------------------------------------------------------------- the engine's clock
def test_a_fault_s_window_runs_from_the_engine_s_change_not_from_the_api_request() -> None:
    """applied_at is taken before the request that adds the toxic and reverted_at after the
    one that removes it; a busy load makes many calls in between that the fault did not touch.
    The engine's own record of the change says when the fault really acted."""
    events = engine_events(
        (1.004, "toxic_added", "api", 0, {"toxic": {"name": "latency_downstream"}}),
        (1.500, "toxic_added", "other", 0, {"toxic": {"name": "latency_downstream"}}),
        (1.996, "toxic_removed", "api", 0, {"toxic": {"name": "latency_downstream"}}),
    )
    window = fault_window(applied(LATENCY, 1.0, 2.0), events)
    assert (window.start - T0, window.end) == (pytest.approx(1.004), pytest.approx(T0 + 1.996))
    refused = engine_events((2.503, "proxy_updated", "api", 0, {"enabled": False}))
    assert fault_window(applied(DOWN, 2.5, None), refused).start == pytest.approx(T0 + 2.503)
    # Without the engine's events, and for process faults (no proxy change), the test's times.
    assert fault_window(applied(LATENCY, 1.0, 2.0), None).start == T0 + 1.0
    killed = fault_window(applied(Down("api", mode="kill"), 2.5, 3.0), refused)
    assert (killed.start, killed.end) == (T0 + 2.5, T0 + 3.0)


def test_a_disable_s_window_starts_when_it_closes_the_proxy_s_connections() -> None:
    """Disabling a proxy closes its connections, then records `proxy_updated`: a call broken
    by the close ends before that record, and belongs to the fault all the same."""
    events = engine_events(
        (2.502, "closed", "api", 7, {"by": "proxy", "reset": False}),
        (2.506, "proxy_updated", "api", 0, {"enabled": False}),
    )
    window = fault_window(applied(DOWN, 2.5, 3.0), events)
    assert window.start == pytest.approx(T0 + 2.502)
    # A connection the client or the server closed is not the fault's doing.
    client_closed = engine_events(
        (2.502, "closed", "api", 7, {"by": "client", "reset": False}),
        (2.506, "proxy_updated", "api", 0, {"enabled": False}),
    )
    assert fault_window(applied(DOWN, 2.5, 3.0), client_closed).start == pytest.approx(T0 + 2.506)


def test_one_hiccup_at_the_very_end_is_not_a_failure_to_recover() -> None:
    calls = steady_calls(0.05, 1.0, 0.1, 0.002) + steady_calls(1.05, 2.0, 0.1, 0.001, REFUSED)
    calls += steady_calls(2.05, 3.0, 0.1, 0.002)
    calls[-1] = (calls[-1][0], 0.3, None)
    rec = recording(calls, [applied(DOWN, 1.0, 2.0)], stop=3.0)
    assert rec.recovery().time == pytest.approx(0.05)
    calls[-2] = (calls[-2][0], 0.3, None)  # two of ten: not back yet
    assert recording(calls, [applied(DOWN, 1.0, 2.0)], stop=3.0).recovery().time is None
