"""Assertions that resilient code must pass: timeouts, retry backoff, circuit breakers.

Each helper reads two sides when it can: what the client library reports (recorders) and what
the proxy saw on the wire (the engine's events). A failure says, in order: a headline, the
expected and observed items as `- ` bullets, and a one-line hint.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pytest_chaos.events import Accepted, HttpRequest
from pytest_chaos.faults import HttpMatch
from pytest_chaos.load import CallRecord, Load, LoadError, Recording, Recovery, Shutdown, Stats
from pytest_chaos.load.recording import Window
from pytest_chaos.load.shutdown import Terminable, observe_shutdown, run_blocking
from pytest_chaos.load.signals import format_latency, format_rate, plural, sorted_errors
from pytest_chaos.policies import Exponential, Fixed, Policy
from pytest_chaos.recorders import BreakerRecorder, RetryRecorder, normalise_state
from pytest_chaos.wire import WireConnection, busiest_second, connections, traffic_during

if TYPE_CHECKING:
    from pytest_chaos.chaos import Chaos

# How long the proxy may take to see a client's close after the call gave up.
CLOSE_GRACE_SECONDS = 0.5
CLOSE_POLL_SECONDS = 0.02


class ChaosAssertionError(AssertionError):
    """A resilience claim did not hold; the message shows what was expected and observed."""


def _fail(headline: str, bullets: Sequence[str], hint: str) -> ChaosAssertionError:
    lines = [headline, *(f"- {bullet}" for bullet in bullets), f"Hint: {hint}"]
    return ChaosAssertionError("\n".join(lines))


def _s(seconds: float) -> str:
    return f"{seconds:.2f}s"


# ----------------------------------------------------------------------------- timeouts
@dataclass(frozen=True)
class TimeoutOutcome:
    elapsed: float
    error: BaseException


# SQLSTATE query_canceled: what PostgreSQL answers when statement_timeout (or lock_timeout)
# expires; psycopg raises it as QueryCanceled, psycopg2 as QueryCanceledError.
QUERY_CANCELED = "57014"


def _is_timeout(error: BaseException) -> bool:
    # Libraries raise their own classes (redis.TimeoutError, httpx.ReadTimeout, psycopg's
    # ConnectionTimeout, ...); most carry "Timeout" somewhere in their lineage. A server-side
    # statement timeout arrives as a cancelled query instead.
    if (
        getattr(error, "sqlstate", None) == QUERY_CANCELED
        or getattr(error, "pgcode", None) == QUERY_CANCELED
    ):
        return True
    return isinstance(error, TimeoutError) or any(
        "timeout" in cls.__name__.lower() or "timedout" in cls.__name__.lower()
        for cls in type(error).__mro__
    )


def assert_timeout_propagates(
    call: Callable[[], Any],
    *,
    budget: float,
    tolerance: float = 0.25,
    chaos: Chaos | None = None,
    proxy: str | None = None,
) -> TimeoutOutcome:
    """`call()` must raise a timeout-like error within `budget` + `tolerance` seconds and,
    when `chaos` and `proxy` are given, the proxy must see the client give up the connections
    it opened during the call.

    The call runs on a helper thread so that a call with no timeout at all is reported rather
    than hanging the test; such a thread is released when the test's faults are reverted.
    """
    __tracebackhide__ = True
    limit = budget + tolerance
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = call()
        except BaseException as error:  # reported to the caller below
            result["error"] = error
        result["ended"] = time.monotonic()

    started = time.monotonic()
    worker = threading.Thread(target=run, name="assert_timeout_propagates", daemon=True)
    worker.start()
    worker.join(limit)
    outcome = _judge_call(result, started, budget, tolerance, chaos, proxy)
    deadline = time.monotonic() + CLOSE_GRACE_SECONDS
    left_open = _open_connections(chaos, proxy, started)
    while left_open and time.monotonic() < deadline:
        time.sleep(CLOSE_POLL_SECONDS)
        left_open = _open_connections(chaos, proxy, started)
    _judge_connections(outcome, left_open)
    return outcome


async def assert_timeout_propagates_async(
    call: Callable[[], Awaitable[Any]],
    *,
    budget: float,
    tolerance: float = 0.25,
    chaos: Chaos | None = None,
    proxy: str | None = None,
) -> TimeoutOutcome:
    """The async form: awaits `call()`; a coroutine still running at the limit is reported,
    then cancelled (and given a moment to clean up)."""
    __tracebackhide__ = True
    result: dict[str, Any] = {}
    started = time.monotonic()
    task = asyncio.ensure_future(call())
    try:
        done, _ = await asyncio.wait([task], timeout=budget + tolerance)
        if task in done:
            result["ended"] = time.monotonic()
            if task.cancelled():
                result["error"] = asyncio.CancelledError()
            elif task.exception() is not None:
                result["error"] = task.exception()
            else:
                result["value"] = task.result()
        outcome = _judge_call(result, started, budget, tolerance, chaos, proxy)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=CLOSE_GRACE_SECONDS)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log it as forgotten
    deadline = time.monotonic() + CLOSE_GRACE_SECONDS
    left_open = _open_connections(chaos, proxy, started)
    while left_open and time.monotonic() < deadline:
        await asyncio.sleep(CLOSE_POLL_SECONDS)
        left_open = _open_connections(chaos, proxy, started)
    _judge_connections(outcome, left_open)
    return outcome


def _judge_call(
    result: dict[str, Any],
    started: float,
    budget: float,
    tolerance: float,
    chaos: Chaos | None,
    proxy: str | None,
) -> TimeoutOutcome:
    __tracebackhide__ = True
    limit = budget + tolerance
    budget_text = f"budget of {_s(budget)} (+{_s(tolerance)} tolerance)"
    if "ended" not in result:
        raise _fail(
            f"The call did not give up within its {budget_text}.",
            # The limit rather than a fresh reading of the clock: the call was still running
            # when the limit passed, and the message stays the same from run to run.
            [f"still running after {_s(limit)}", *_open_connections(chaos, proxy, started)],
            "does every network call have a timeout, shorter than the budget? A per-read"
            " socket timeout does not bound a whole request when data keeps trickling in"
            " (slicer, bandwidth).",
        )
    elapsed = result["ended"] - started
    if "error" not in result:
        raise _fail(
            f"The call returned instead of timing out within its {budget_text}.",
            [f"returned {result['value']!r} after {_s(elapsed)}"],
            "was the fault active on the proxy the call goes through?",
        )
    error: BaseException = result["error"]
    if not _is_timeout(error):
        raise _fail(
            "The call failed, but not with a timeout.",
            [f"raised {type(error).__name__}: {error} after {_s(elapsed)}"],
            "a stall should surface as a timeout; another error means the client gave up for"
            " another reason (or the fault was not a stall).",
        )
    if elapsed > limit:
        raise _fail(
            f"The call timed out too late for its {budget_text}.",
            [f"raised {type(error).__name__} after {_s(elapsed)}"],
            "is the timeout longer than the budget, or retried after it expired?",
        )
    return TimeoutOutcome(elapsed, error)


def _judge_connections(outcome: TimeoutOutcome, left_open: list[str]) -> None:
    __tracebackhide__ = True
    if left_open:
        raise _fail(
            "The call timed out but left its connection open at the proxy.",
            [f"raised {type(outcome.error).__name__} after {_s(outcome.elapsed)}", *left_open],
            "does the client close (or return to its pool as broken) a connection whose"
            " request timed out?",
        )


def _open_connections(chaos: Chaos | None, proxy: str | None, since: float) -> list[str]:
    """The connections opened at `proxy` since `since` that the client still holds: neither
    closed nor half-closed by the client."""
    if chaos is None or proxy is None:
        return []
    opened = [c for c in connections(chaos.events(proxy)) if c.accepted_at >= since]
    return [
        f"connection {c} at the proxy"
        for c in opened
        if c.closed_at is None and c.client_closed_at is None
    ]


# ------------------------------------------------------------------------------ backoff
def _attempt_times(
    observations: RetryRecorder | Sequence[float],
) -> tuple[list[float], list[float]]:
    """Attempt start times, and the idle wait before each retry."""
    if isinstance(observations, RetryRecorder):
        return observations.start_times(), observations.waits()
    times = sorted(observations)
    return times, [later - earlier for earlier, later in itertools.pairwise(times)]


def assert_backoff(
    observations: RetryRecorder | Sequence[float],
    policy: Policy,
    *,
    tolerance: float | None = None,
    attempts: int | None = None,
) -> None:
    """The waits between attempts must follow `policy`.

    `observations` is a recorder (`record_tenacity`, `record_stamina`) or attempt times seen
    on the wire (`wire_attempts(chaos, proxy)`). Each wait may deviate by `tolerance` seconds
    (default: 20 ms or 10 % of the expected wait, whichever is larger). With `attempts`,
    the number of attempts must match too.
    """
    __tracebackhide__ = True
    times, waits = _attempt_times(observations)
    if attempts is not None and len(times) != attempts:
        raise _fail(
            f"Expected {attempts} attempts, saw {len(times)}.",
            [f"attempt {i} at {_s(at - times[0])}" for i, at in enumerate(times, 1)],
            "check the retry policy's stop condition (stop_after_attempt / attempts).",
        )
    if not waits:
        raise _fail(
            f"Retries could not be checked against {policy}: fewer than two attempts.",
            [f"{len(times)} attempt(s) observed"],
            "was the dependency really failing, and is the call retried at all?",
        )
    bullets: list[str] = []
    wrong = False
    for retry, wait in enumerate(waits, 1):
        low, high = policy.bounds(retry)
        slack = tolerance if tolerance is not None else max(0.02, 0.1 * high)
        expected = f"{_s(low)}" if low == high else f"{_s(low)}..{_s(high)}"
        note = ""
        if wait < low - slack:
            note, wrong = "  <-- too early", True
        elif wait > high + slack:
            note, wrong = "  <-- too late", True
        bullets.append(
            f"attempt {retry + 1} after {_s(wait)} (expected {expected} +/- {_s(slack)}){note}"
        )
    if wrong:
        planned = observations.planned_waits() if isinstance(observations, RetryRecorder) else []
        raise _fail(
            f"Retries did not follow {policy}.", bullets, _backoff_hint(waits, planned, policy)
        )


def _backoff_hint(waits: Sequence[float], planned: Sequence[float], policy: Policy) -> str:
    # What the library said it would sleep is exact; measured gaps also hold the time a busy
    # machine took to run the next attempt.
    if (planned and max(planned) == 0) or max(waits) < 0.005:
        return "the retries do not wait at all: is there a backoff between attempts?"
    spread = max(waits) - min(waits)
    if isinstance(policy, Exponential) and len(waits) > 2 and spread < 0.1 * max(waits):
        return "is the client using wait_fixed instead of wait_exponential?"
    if isinstance(policy, Fixed) and spread > 0.5 * max(waits):
        return "the waits grow: is the client using an exponential or incrementing wait?"
    return (
        "compare the client's retry settings (initial wait, multiplier, cap, jitter) with"
        " the policy."
    )


def assert_no_retry_storm(chaos: Chaos, proxy: str, *, max_per_second: int) -> None:
    """No more than `max_per_second` connection attempts reached `proxy` in any one second."""
    __tracebackhide__ = True
    times = [c.accepted_at for c in connections(chaos.events(proxy))]
    count, start = busiest_second(times)
    if count > max_per_second:
        offset = start - chaos.started_at
        raise _fail(
            f"Retry storm: {count} connection attempts reached {proxy} within one second.",
            [
                f"at most {max_per_second} per second allowed",
                f"{count} attempts in the second from {offset:+.2f}s (test time)",
            ],
            "a retry loop without backoff (or without a cap on attempts) hammers a struggling"
            " dependency.",
        )


# ----------------------------------------------------------------------------- breakers
def assert_breaker_transitions(
    recorder: BreakerRecorder,
    expected: Sequence[str],
    *,
    min_open: float | None = None,
) -> None:
    """The breaker went through exactly the `expected` states (first = its initial state),
    and, with `min_open`, stayed open at least that many seconds each time."""
    __tracebackhide__ = True
    wanted = [normalise_state(state) for state in expected]
    seen = recorder.states()
    start = recorder.transitions[0].at if recorder.transitions else time.monotonic()
    observed = [f"started {recorder.initial_state}"] + [
        f"{t.old} -> {t.new} at {_s(t.at - start)}" for t in recorder.transitions
    ]
    if seen != wanted:
        raise _fail(
            f"The circuit breaker went through {' -> '.join(seen)}, not {' -> '.join(wanted)}.",
            observed,
            _breaker_hint(seen, wanted),
        )
    if min_open is not None:
        for opened, closed in recorder.open_windows():
            held = (closed if closed is not None else time.monotonic()) - opened
            if closed is not None and held < min_open - 0.01:
                raise _fail(
                    f"The circuit breaker left the open state after {_s(held)},"
                    f" before its reset timeout of {_s(min_open)}.",
                    observed,
                    "is reset_timeout (pybreaker) or ttl (purgatory) shorter than intended?",
                )


def _breaker_hint(seen: list[str], wanted: list[str]) -> str:
    if "open" in wanted and "open" not in seen:
        return (
            "the breaker never opened: do the failures reach fail_max (threshold), or are"
            " the errors excluded from counting?"
        )
    if "half-open" in wanted and "half-open" not in seen:
        return "the breaker never probed: was a call made after the reset timeout elapsed?"
    return "compare the breaker's thresholds and reset timeout with the fault's timing."


def assert_no_traffic(
    chaos: Chaos,
    proxy: str,
    *,
    during: tuple[float, float | None] | Sequence[tuple[float, float | None]],
) -> None:
    """No connection was accepted and no data was carried by `proxy` in the window(s)
    `during` (monotonic times, e.g. `recorder.open_windows()`)."""
    __tracebackhide__ = True
    windows = _windows(during)
    events = chaos.events(proxy)
    bullets = []
    for start, end in windows:
        for event in traffic_during(events, proxy, start, end):
            what = (
                "connection accepted"
                if isinstance(event, Accepted)
                else f"{event.bytes} bytes {event.direction}"
            )
            bullets.append(
                f"{what} at {max(event.time, start) - start:+.2f}s into the window ({event.label})"
            )
    if bullets:
        raise _fail(
            f"Traffic reached {proxy} while it should have been left alone.",
            bullets,
            "calls made while the breaker is open must be rejected without touching the"
            " dependency.",
        )


def _windows(
    during: tuple[float, float | None] | Sequence[tuple[float, float | None]],
) -> list[tuple[float, float | None]]:
    # One window is a (start, end) pair of numbers; anything else is a collection of windows
    # (a list, or a tuple of pairs).
    if len(during) == 2 and not isinstance(during[0], tuple):
        return [cast(tuple[float, float | None], during)]
    return list(cast(Sequence[tuple[float, float | None]], during))


def wire_connections(chaos: Chaos, proxy: str) -> list[WireConnection]:
    """The connections `proxy` saw during this test (accepted, closed, by whom)."""
    return connections(chaos.events(proxy), proxy)


def wire_attempts(chaos: Chaos, proxy: str) -> list[float]:
    """When connection attempts reached `proxy` during this test: retries seen from the
    dependency's side, for `assert_backoff`."""
    return [c.accepted_at for c in wire_connections(chaos, proxy)]


# ------------------------------------------------------------------ loads: steady state
# A limit of assert_steady_state: (name as printed, the Stats attribute, higher is worse).
_LIMITS: tuple[tuple[str, str, bool], ...] = (
    ("p50", "p50", True),
    ("p90", "p90", True),
    ("p99", "p99", True),
    ("error rate", "error_rate", True),
    ("throughput", "throughput", False),
)


def assert_steady_state(
    load: Load | Recording,
    *,
    p50: float | None = None,
    p90: float | None = None,
    p99: float | None = None,
    error_rate: float | None = None,
    throughput: float | None = None,
    during: object = None,
) -> Stats | list[Stats]:
    """The load's signals stayed within the SLO in the window `during` (or each window of a
    list): latency percentiles at most `p50`/`p90`/`p99` seconds, at most `error_rate` of
    the calls failed (0..1), at least `throughput` calls per second. Windows are those of
    `load.stats(during=...)`: None (the whole run), "before", "during", "after", a fault
    (its handle, the fault, its text or kind) or a (start, end) pair of monotonic times."""
    __tracebackhide__ = True
    given = {"p50": p50, "p90": p90, "p99": p99, "error rate": error_rate, "throughput": throughput}
    _check_limits(given)
    recording = _recording_of(load)
    windows = during if isinstance(during, list) else [during]
    if not windows:
        raise LoadError("during must name a window, or be a non-empty list of windows")
    results = [(recording.window(w), recording.stats(w)) for w in windows]
    failing: list[tuple[Window, Stats, list[str]]] = []
    bullets: list[str] = []
    for window, stats in results:
        prefix = f"{stats.window}: " if len(results) > 1 else ""
        broken = _broken_limits(stats, given)
        if not stats.count:
            broken = ["no calls"]
            bullets.append(f"{prefix}the load made no call in this window  <-- nothing to judge")
        else:
            bullets += [f"{prefix}{line}" for line in _limit_lines(stats, given)]
        bullets.append(f"{prefix}{stats.describe_calls()}")
        bullets += [f"{prefix}{line}" for line in _error_lines(stats, load)]
        bullets += [f"{prefix}{proxy}" for _, proxy in sorted(stats.proxies.items())]
        if broken:
            failing.append((window, stats, broken))
    if failing:
        names = " and ".join(stats.window for _, stats, _ in failing)
        window, _, broken = failing[0]
        raise _fail(
            f"The steady state did not hold during {names}.", bullets, _steady_hint(window, broken)
        )
    stats_only = [stats for _, stats in results]
    return stats_only if isinstance(during, list) else stats_only[0]


def _check_limits(given: dict[str, float | None]) -> None:
    __tracebackhide__ = True
    if all(value is None for value in given.values()):
        raise LoadError(
            "assert_steady_state needs at least one limit: p50, p90, p99 (seconds),"
            " error_rate (0..1) or throughput (calls per second)"
        )
    for name, value in given.items():
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise LoadError(f"{name.replace(' ', '_')} must be a number >= 0, got {value!r}")
        if name == "error rate" and value > 1:
            raise LoadError(
                f"error_rate is a fraction of the calls from 0 to 1 (0.01 = 1%), got {value!r}"
            )


def _recording_of(load: Load | Recording) -> Recording:
    __tracebackhide__ = True
    if isinstance(load, Recording):
        return load
    if isinstance(load, Load):
        return load.recording()
    raise LoadError(f"load must be a load (`chaos.load(...)`) or its recording, got {load!r}")


def _limit_value(stats: Stats, attribute: str) -> float | None:
    value: float | None = getattr(stats, attribute)
    return value


def _broken_limits(stats: Stats, given: dict[str, float | None]) -> list[str]:
    broken = []
    for name, attribute, higher_is_worse in _LIMITS:
        limit, value = given[name], _limit_value(stats, attribute)
        if limit is None or value is None:
            continue
        if (value > limit) if higher_is_worse else (value < limit):
            broken.append(name)
    return broken


def _limit_lines(stats: Stats, given: dict[str, float | None]) -> list[str]:
    lines = []
    broken = _broken_limits(stats, given)
    for name, attribute, higher_is_worse in _LIMITS:
        limit = given[name]
        if limit is None:
            continue
        value = _limit_value(stats, attribute)
        shown, bound = _show(name, value), _show(name, limit)
        relation = "at most" if higher_is_worse else "at least"
        flag = f"  <-- {'over' if higher_is_worse else 'under'}" if name in broken else ""
        lines.append(f"{name} {shown} ({relation} {bound}){flag}")
    return lines


def _show(name: str, value: float | None) -> str:
    if name == "error rate":
        return format_rate(value or 0.0)
    if name == "throughput":
        return f"{value or 0.0:.1f}/s"
    return format_latency(value)


def _error_lines(stats: Stats, load: Load | Recording) -> list[str]:
    if not stats.failed:
        return ["no errors"]
    examples = load.error_examples if isinstance(load, Load) else {}
    lines = []
    for name, count in sorted_errors(stats.errors):
        share = format_rate(count / stats.count)
        example = examples.get(name)
        line = f"{name} in {plural(count, 'call')} ({share})"
        lines.append(f"{line}, e.g. {example}" if example else line)
    return lines


def _steady_hint(window: Window, broken: list[str]) -> str:
    if "no calls" in broken:
        return (
            "the window is shorter than a call: make it longer, or raise the load's rate or"
            " concurrency."
        )
    if window.kind == "before":
        return (
            "the SLO failed before any fault: is the limit realistic on this machine, or was"
            " the service still warming up (first connections, empty caches)?"
        )
    if window.kind == "after":
        return (
            "the load did not come back after the faults: does the client reconnect (a pool"
            " that drops broken connections, a breaker that closes again)?"
        )
    if "error rate" in broken:
        return (
            "failures reached the callers: are failed calls retried with backoff, or answered"
            " from a fallback, while the dependency is impaired?"
        )
    if "throughput" in broken:
        return (
            "fewer calls got through: are calls queued behind slow ones (too few workers, a"
            " lock or a pool held across a slow call)?"
        )
    return (
        "the fault's delay reached the callers: does each call have a timeout shorter than"
        " the SLO, and a fallback (a cache, a default) when it expires?"
    )


def assert_recovers(
    load: Load | Recording,
    *,
    within: float,
    latency: float | None = None,
    error_rate: float | None = None,
) -> Recovery:
    """After the last fault was reverted, the load was back to its baseline within `within`
    seconds: from some call on, every call succeeds (or the error rate stays at the
    baseline's, or at most `error_rate`) and the p90 stays at most `latency` seconds (default:
    1.5 x the baseline's p99 + 5 ms). The baseline is the calls before the first fault."""
    __tracebackhide__ = True
    if not isinstance(within, int | float) or isinstance(within, bool) or within < 0:
        raise LoadError(f"within must be a number of seconds >= 0, got {within!r}")
    recovery = _recording_of(load).recovery(latency=latency, error_rate=error_rate)
    took = recovery.time
    if took is not None and took <= within:
        return recovery
    if took is None:
        reached = (
            "still not back when the load stopped,"
            f" {_s(recovery.after.duration)} after the revert  <-- not recovered"
        )
    else:
        reached = f"back {_s(took)} after the revert  <-- too late"
    baseline = recovery.baseline
    bullets = [
        reached,
        f"baseline ({plural(baseline.count, 'call')} before the first fault):"
        f" p99 {format_latency(baseline.p99)}, {baseline.describe_errors()}",
        f"back means: {recovery.describe_limits()}",
        f"after the revert: {recovery.after.describe_calls()}; {recovery.after.describe_errors()}",
    ]
    last = recovery.last_unhealthy
    if last is not None:
        outcome = last.error or "slow"
        bullets.append(
            f"last slow or failed call started {_s(last.start - recovery.reverted_at)} after the"
            f" revert: {outcome}, {format_latency(last.latency)}"
        )
    raise _fail(
        f"The load did not recover within {_s(within)} of the last revert ({recovery.last_fault}).",
        bullets,
        "after a fault the client must come back on its own: does its pool drop broken"
        " connections, and is a circuit breaker's reset timeout shorter than `within`?",
    )


# ----------------------------------------------------------------- loads: graceful shutdown
def assert_graceful_shutdown(
    service: Terminable | str,
    *,
    load: Load,
    grace: float,
    refuse_within: float = 0.5,
) -> Shutdown:
    """SIGTERM to `service` (a service the plugin runs, or its name) while `load` runs, and
    then: every call in flight completed, calls started afterwards were served or refused
    within `refuse_within` seconds (never left hanging), and the process exited within
    `grace` seconds (it is killed after that). Call it inside the load's block."""
    __tracebackhide__ = True
    if isinstance(load, Load) and load.on_tasks:
        raise LoadError(
            "this load runs as asyncio tasks, which a blocking check would stall: use"
            " `await assert_graceful_shutdown_async(...)`"
        )
    shutdown = run_blocking(
        observe_shutdown(service, load=load, grace=grace, refuse_within=refuse_within)
    )
    _judge_shutdown(shutdown)
    return shutdown


async def assert_graceful_shutdown_async(
    service: Terminable | str,
    *,
    load: Load,
    grace: float,
    refuse_within: float = 0.5,
) -> Shutdown:
    """The async form of `assert_graceful_shutdown`, for a load under `async with`."""
    __tracebackhide__ = True
    procedure = observe_shutdown(service, load=load, grace=grace, refuse_within=refuse_within)
    shutdown: Shutdown | None = None
    while shutdown is None:
        try:
            pause = next(procedure)
        except StopIteration as done:
            shutdown = done.value
        else:
            # The procedure polls threads and the load's workers: nothing to wait on here.
            await asyncio.sleep(pause)
    _judge_shutdown(shutdown)
    return shutdown


def _judge_shutdown(shutdown: Shutdown) -> None:
    __tracebackhide__ = True
    if shutdown.graceful:
        return
    bullets = [_in_flight_line(shutdown), _new_calls_line(shutdown), _exit_line(shutdown)]
    raise _fail(
        f"The service {shutdown.service!r} did not shut down gracefully on SIGTERM.",
        bullets,
        _shutdown_hint(shutdown),
    )


def _kinds(calls: Sequence[CallRecord]) -> str:
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.error or "ok"] = counts.get(call.error or "ok", 0) + 1
    return ", ".join(f"{name} {n}" for name, n in sorted_errors(counts))


def _in_flight_line(shutdown: Shutdown) -> str:
    total = len(shutdown.in_flight) + len(shutdown.in_flight_running)
    if not total:
        return "no call was in flight at the SIGTERM  <-- nothing to drain"
    parts = [f"{len(shutdown.completed)} completed"]
    if shutdown.dropped:
        parts.append(f"{len(shutdown.dropped)} failed ({_kinds(shutdown.dropped)})")
    if shutdown.in_flight_running:
        parts.append(f"{len(shutdown.in_flight_running)} still running")
    flag = "  <-- dropped" if shutdown.dropped or shutdown.in_flight_running else ""
    return f"{plural(total, 'call')} in flight at the SIGTERM: {', '.join(parts)}{flag}"


def _new_calls_line(shutdown: Shutdown) -> str:
    total = len(shutdown.started_after) + len(shutdown.new_running)
    if not total:
        return "no call started between the SIGTERM and the exit"
    parts = []
    if shutdown.served:
        parts.append(f"{len(shutdown.served)} served")
    if shutdown.refused:
        parts.append(f"{len(shutdown.refused)} refused within {_s(shutdown.refuse_within)}")
    if shutdown.refused_late:
        slowest = max(call.latency for call in shutdown.refused_late)
        parts.append(
            f"{len(shutdown.refused_late)} refused only after up to {_s(slowest)}"
            f" ({_kinds(shutdown.refused_late)})"
        )
    if shutdown.new_running:
        parts.append(f"{len(shutdown.new_running)} still running")
    flag = "  <-- hung" if shutdown.refused_late or shutdown.new_running else ""
    return f"{plural(total, 'call')} started after it: {', '.join(parts)}{flag}"


def _exit_line(shutdown: Shutdown) -> str:
    if shutdown.exit_time is None:
        return f"still running {_s(shutdown.grace)} after the SIGTERM, then killed  <-- too late"
    flag = "" if shutdown.exited_in_time else "  <-- too late"
    return f"exited {_s(shutdown.exit_time)} after the SIGTERM (grace {_s(shutdown.grace)}){flag}"


def _shutdown_hint(shutdown: Shutdown) -> str:
    if not (shutdown.in_flight or shutdown.in_flight_running):
        return (
            "make the calls slower than a SIGTERM takes to arrive (a slow endpoint), or raise"
            " the load's concurrency, so that there is something to drain."
        )
    if shutdown.dropped or shutdown.in_flight_running:
        return (
            "on SIGTERM a server should stop accepting, finish the requests in flight, then"
            " exit (uvicorn and gunicorn do); a server that does not handle the signal dies"
            " at once."
        )
    if shutdown.refused_late or shutdown.new_running:
        return (
            "a server that stops serving must stop accepting too: close the listening socket"
            " at once, so that new connections are refused rather than queued."
        )
    return (
        "the drain outlived the grace period: bound it with a timeout shorter than the grace"
        " (uvicorn --timeout-graceful-shutdown, gunicorn --graceful-timeout)."
    )


# ----------------------------------------------------------------------------------- HTTP
def http_requests(chaos: Chaos, target: str) -> list[HttpRequest]:
    """The HTTP requests to `target` during this test, oldest first: what the engine saw at
    the proxy of that name (with an HTTP fault applied to it at some point), or what the
    in-process middleware of that name saw."""
    from pytest_chaos.http.registry import APPS

    if APPS.knows(target):
        return APPS.requests(target, since=chaos.started_at)
    found = [event for event in chaos.events(target) if isinstance(event, HttpRequest)]
    return sorted(found, key=lambda request: (request.time, request.seq))


def http_attempts(
    chaos: Chaos, target: str, *, method: str | None = None, path: str | None = None
) -> list[float]:
    """When the requests to `target` started (of `method`, and whose path matches the glob
    `path`, when given): attempts seen from the dependency's side, for `assert_backoff`."""
    wanted = HttpMatch.of({"method": method, "path": path}, "http_attempts") or HttpMatch()
    return [
        request.time
        for request in http_requests(chaos, target)
        if wanted.matches(request.method, request.path, ())
    ]


def assert_http_retries(
    chaos: Chaos,
    target: str,
    *,
    statuses: Sequence[int] = (503,),
    calls: int | None = None,
    attempts: int | None = None,
    tolerance: float = 0.05,
) -> None:
    """The client retried exactly the requests to `target` answered with one of `statuses`,
    each after the answer's Retry-After, when it had one.

    A request's retry is the next request with the same method and target (path and query).
    Every request answered with a retryable status must have one, unless it ended a run of
    `attempts` tries (the client gave up); each retry must start at least Retry-After seconds
    (less `tolerance`) after the answer it retries ended. With `calls`, the first tries must
    number exactly `calls`: a request sent again after any other answer counts as a new
    call, so more first tries than calls means the client retried what it should not have.
    """
    __tracebackhide__ = True
    retryable = set(statuses)
    requests = http_requests(chaos, target)
    following, tries = _http_retry_chains(requests, retryable)
    wanted = ", ".join(map(str, statuses))
    missed = [
        request
        for request in requests
        if request.status in retryable
        and request.outcome == "answered"
        and following.get(id(request)) is None
        and (attempts is None or tries[id(request)] < attempts)
    ]
    if missed:
        raise _fail(
            f"Requests answered {wanted} were not retried ({len(missed)} of"
            f" {sum(r.status in retryable for r in requests)}).",
            [_http_line(chaos, r) + ("  <-- not retried" if r in missed else "") for r in requests],
            f"does the client's retry condition cover HTTP {wanted} (e.g. tenacity's"
            " retry_if_result on the status, or raise_for_status() inside the retried call)?",
        )
    early = [
        (request, retry)
        for request in requests
        if request.retry_after is not None
        and (retry := following.get(id(request))) is not None
        and retry.time - request.until < request.retry_after - tolerance
    ]
    if early:
        raise _fail(
            "Retries came before the Retry-After delay.",
            [
                f"{_http_line(chaos, request)}, retried after {_s(retry.time - request.until)}"
                f" (expected >= {_s(request.retry_after or 0)})  <-- too early"
                for request, retry in early
            ],
            "does the client read Retry-After (urllib3: Retry(respect_retry_after_header=True);"
            " tenacity: a wait function that reads it from the answer)?",
        )
    first_tries = sum(tries[id(request)] == 1 for request in requests)
    if calls is not None and first_tries != calls:
        raise _fail(
            f"Expected {calls} call{'' if calls == 1 else 's'} and their retries, saw"
            f" {first_tries} first tr{'y' if first_tries == 1 else 'ies'} in"
            f" {len(requests)} requests.",
            [
                _http_line(chaos, r) + ("" if tries[id(r)] == 1 else f" (try {tries[id(r)]})")
                for r in requests
            ],
            "a request sent again after an answer outside the retried statuses is a new call:"
            " is the client retrying other statuses or errors too?",
        )


def _http_retry_chains(
    requests: Sequence[HttpRequest], retryable: set[int]
) -> tuple[dict[int, HttpRequest | None], dict[int, int]]:
    """For each request (by id): the request that retries it (the next one with the same
    method and target after a retryable answer), and which try of its call it is."""
    following: dict[int, HttpRequest | None] = {}
    tries: dict[int, int] = {}
    last: dict[tuple[str, str], HttpRequest] = {}
    for request in requests:
        key = (request.method, request.path)
        before = last.get(key)
        if before is not None and before.status in retryable and before.outcome == "answered":
            following[id(before)] = request
            tries[id(request)] = tries[id(before)] + 1
        else:
            tries[id(request)] = 1
        following.setdefault(id(request), None)
        last[key] = request
    return following, tries


def _http_line(chaos: Chaos, request: HttpRequest) -> str:
    retry_after = (
        f" (Retry-After: {request.retry_after:g}s)" if request.retry_after is not None else ""
    )
    by = f" by {request.fault}" if request.fault in ("http_error", "http_abort") else ""
    return (
        f"{request.method} {request.path} -> {request.answer}{by}{retry_after}"
        f" at {request.time - chaos.started_at:+.2f}s"
    )
