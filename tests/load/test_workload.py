"""The workload itself, without faults: what each call records, how many run at once, the
rate, the duration, stopping (hung calls counted, never waited on), the async twin, and the
errors for arguments that make no sense."""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from pytest_chaos.apply import AppliedFault
from pytest_chaos.backends.client import FeatureUnavailable
from pytest_chaos.events import Event
from pytest_chaos.faults import Latency
from pytest_chaos.load import HUNG, Load, LoadError

# Generous bounds: the machine is shared and has 2 CPUs.
SLACK = 0.5


def load_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("chaos-load-")]


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event that hung calls wait on; set at teardown so that their threads end."""
    event = threading.Event()
    yield event
    event.set()
    for thread in load_threads():
        thread.join(5)
    assert not load_threads()


def test_each_call_is_recorded_with_its_start_latency_and_outcome() -> None:
    made: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        with lock:
            made.append(len(made))
            number = len(made)
        time.sleep(0.01)
        if number % 3 == 0:
            raise ValueError(f"call {number} failed")

    with Load(call, concurrency=2) as load:
        time.sleep(0.3)
    calls = load.calls
    assert len(calls) == len(made) >= 10
    assert [c.start for c in calls] == sorted(c.start for c in calls)
    assert load.started_at is not None
    assert load.stopped_at is not None
    assert all(load.started_at <= c.start <= load.stopped_at for c in calls)
    assert all(c.latency >= 0.01 for c in calls)
    assert {c.error for c in calls} == {None, "ValueError"}
    assert sum(1 for c in calls if c.error == "ValueError") == len(made) // 3
    assert load.error_examples == {"ValueError": "call 3 failed"}
    assert all(c.faults == () for c in calls)


def test_concurrency_is_the_number_of_calls_in_flight_at_once() -> None:
    running, most = 0, 0
    lock = threading.Lock()
    threads: set[str] = set()

    def call() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.current_thread().name)
        time.sleep(0.02)
        with lock:
            running -= 1

    with Load(call, concurrency=4):
        time.sleep(0.3)
    assert most == 4
    assert threads == {f"chaos-load-{i}" for i in range(4)}


def test_rate_caps_the_calls_per_second_across_workers() -> None:
    with Load(lambda: None, concurrency=3, rate=50) as load:
        time.sleep(1.0)
    starts = [c.start for c in load.calls]
    assert 35 <= len(starts) <= 52
    gaps = sorted(b - a for a, b in itertools.pairwise(starts))
    assert gaps[len(gaps) // 2] == pytest.approx(0.02, abs=0.005)


def test_calls_missed_while_every_worker_was_busy_are_not_made_up_in_a_burst() -> None:
    slow_until = time.monotonic() + 0.3

    def call() -> None:
        if time.monotonic() < slow_until:
            time.sleep(0.1)

    with Load(call, concurrency=1, rate=100) as load:
        time.sleep(0.6)
    after = [c.start for c in load.calls if c.start > slow_until]
    gaps = [b - a for a, b in itertools.pairwise(after)]
    assert len(after) >= 15
    assert min(gaps) >= 0.005  # 1/rate = 10 ms between starts, never a burst of catching up


def test_with_a_duration_the_block_waits_for_it_and_no_call_starts_after_it() -> None:
    with Load(lambda: time.sleep(0.005), duration=0.4) as load:
        pass
    assert load.started_at is not None
    assert load.stopped_at is not None
    assert load.stopped_at - load.started_at >= 0.4
    assert max(c.start for c in load.calls) < load.started_at + 0.4
    assert load.stats().duration == pytest.approx(0.4, abs=0.05)


def test_a_duration_shorter_than_the_block_stops_the_calls_early() -> None:
    with Load(lambda: time.sleep(0.005), duration=0.2) as load:
        time.sleep(0.5)
    assert load.started_at is not None
    assert max(c.start for c in load.calls) < load.started_at + 0.2


def test_an_error_in_the_block_stops_the_load_at_once_despite_its_duration() -> None:
    started = time.monotonic()
    with pytest.raises(KeyError), Load(lambda: time.sleep(0.005), duration=30):
        raise KeyError("the test failed")
    assert time.monotonic() - started < SLACK
    assert not load_threads()


def test_the_load_stops_at_the_end_of_its_block_and_leaves_no_thread() -> None:
    with Load(lambda: time.sleep(0.001), concurrency=3) as load:
        time.sleep(0.1)
    count = len(load.calls)
    assert not load_threads()
    time.sleep(0.05)
    assert len(load.calls) == count
    assert not load.running


def test_hung_calls_are_counted_and_never_waited_on(gate: threading.Event) -> None:
    started = time.monotonic()
    with Load(gate.wait, concurrency=2, stop_timeout=0.2) as load:
        time.sleep(0.1)
    assert time.monotonic() - started < 0.3 + SLACK
    stats = load.stats()
    assert stats.count == 2
    assert stats.errors == {HUNG: 2}
    assert stats.hung == 2
    assert stats.error_rate == 1.0
    assert all(c.hung and c.latency >= 0.3 for c in load.calls)
    # A hung call that ends later is not recorded twice, and its thread can be released.
    gate.set()
    assert load.release(timeout=5) == []
    assert [c.error for c in load.calls] == [HUNG, HUNG]


def test_release_names_the_threads_still_stuck(gate: threading.Event) -> None:
    with Load(gate.wait, stop_timeout=0) as load:
        time.sleep(0.05)
    assert load.release(timeout=0.05) == ["chaos-load-0"]


def test_stats_can_be_read_while_the_load_runs() -> None:
    with Load(lambda: time.sleep(0.005)) as load:
        time.sleep(0.1)
        first = load.stats().count
        time.sleep(0.1)
        assert load.stats().count > first > 0
        assert load.running
        assert len(load.in_flight()) <= 1


# ---------------------------------------------------------------------------- the async twin
@pytest.mark.asyncio
async def test_a_coroutine_function_runs_as_tasks_on_the_running_loop() -> None:
    loop_thread = threading.get_ident()
    seen: set[int] = set()

    async def call() -> None:
        seen.add(threading.get_ident())
        await asyncio.sleep(0.01)

    async with Load(call, concurrency=3) as load:
        await asyncio.sleep(0.2)
    assert seen == {loop_thread}
    assert load.on_tasks
    assert 30 <= load.stats().count <= 70
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("chaos-load-")]
    assert tasks == []


@pytest.mark.asyncio
async def test_a_plain_function_under_async_with_runs_on_threads() -> None:
    loop_thread = threading.get_ident()
    seen: set[int] = set()

    def call() -> None:
        seen.add(threading.get_ident())
        time.sleep(0.01)

    async with Load(call, concurrency=2) as load:
        await asyncio.sleep(0.1)
    assert loop_thread not in seen
    assert not load.on_tasks
    assert load.stats().count > 0


@pytest.mark.asyncio
async def test_hung_tasks_are_counted_then_cancelled() -> None:
    never = asyncio.Event()
    cancelled = 0

    async def call() -> None:
        nonlocal cancelled
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise

    async with Load(call, concurrency=3, stop_timeout=0.1) as load:
        await asyncio.sleep(0.05)
    assert load.stats().errors == {HUNG: 3}
    assert cancelled == 3


@pytest.mark.asyncio
async def test_a_call_that_never_awaits_does_not_keep_the_loop_to_itself() -> None:
    async def call() -> None:
        return None

    started = time.monotonic()
    async with Load(call, rate=None) as load:
        await asyncio.sleep(0.1)
    # A worker that kept the loop would never let this sleep end: the test would hang (and
    # pytest-timeout fail it). Seconds, not milliseconds, is all a shared machine can promise.
    assert time.monotonic() - started < 0.1 + 10 * SLACK
    assert load.stats().count > 10


@pytest.mark.asyncio
async def test_an_async_load_with_a_duration_waits_for_it() -> None:
    async def call() -> None:
        await asyncio.sleep(0.005)

    async with Load(call, duration=0.3) as load:
        pass
    assert load.started_at is not None
    assert load.stopped_at is not None
    assert load.stopped_at - load.started_at >= 0.3


# ------------------------------------------------------------------------------ bad input
async def _coroutine() -> None:
    return None


def _needs(key: str, *, flag: bool) -> None:
    return None


@pytest.mark.parametrize(
    ("call", "options", "error", "message"),
    [
        (
            42,
            {},
            TypeError,
            "chaos.load(): call must be a callable taking no arguments (a function, a lambda, a"
            " functools.partial), got 42 (int)",
        ),
        (
            _needs,
            {},
            TypeError,
            "chaos.load(): call must take no arguments, and _needs requires key, flag; bind them"
            " with functools.partial or a lambda",
        ),
        (
            print,
            {"concurrency": 0},
            LoadError,
            "chaos.load(): concurrency must be a whole number of workers from 1 to 1000, got 0",
        ),
        (
            print,
            {"concurrency": 2.5},
            LoadError,
            "chaos.load(): concurrency must be a whole number of workers from 1 to 1000, got 2.5",
        ),
        (
            print,
            {"concurrency": True},
            LoadError,
            "chaos.load(): concurrency must be a whole number of workers from 1 to 1000, got True",
        ),
        (
            print,
            {"rate": 0},
            LoadError,
            "chaos.load(): rate must be a number of calls per second greater than 0 (or None: as"
            " fast as the workers go), got 0",
        ),
        (
            print,
            {"rate": float("inf")},
            LoadError,
            "chaos.load(): rate must be a number of calls per second greater than 0 (or None: as"
            " fast as the workers go), got inf",
        ),
        (
            print,
            {"duration": -1},
            LoadError,
            "chaos.load(): duration must be a number of seconds greater than 0 (or None: until"
            " the block ends), got -1",
        ),
        (
            print,
            {"duration": "5s"},
            LoadError,
            "chaos.load(): duration must be a number of seconds greater than 0 (or None: until"
            " the block ends), got '5s'",
        ),
        (
            print,
            {"stop_timeout": -0.5},
            LoadError,
            "chaos.load(): stop_timeout must be a number of seconds >= 0, got -0.5",
        ),
    ],
    ids=[
        "not-callable",
        "needs-arguments",
        "no-workers",
        "fractional-workers",
        "bool-workers",
        "zero-rate",
        "infinite-rate",
        "negative-duration",
        "text-duration",
        "negative-stop-timeout",
    ],
)
def test_arguments_that_make_no_sense_are_refused_with_what_is_allowed(
    call: object, options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        Load(call, **options)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_a_call_with_its_arguments_bound_is_fine() -> None:
    with Load(functools.partial(_needs, "key", flag=True)) as load:
        time.sleep(0.02)
    assert load.stats().count > 0
    assert load.describe() == "partial(_needs) x1"


def test_a_coroutine_function_under_a_plain_with_is_refused() -> None:
    with pytest.raises(TypeError) as raised, Load(_coroutine):
        pass
    assert str(raised.value) == (
        "chaos.load(): _coroutine is a coroutine function; run it with `async with chaos.load(...)`"
    )


def test_a_call_returning_a_coroutine_on_threads_is_refused_at_the_end_of_the_block() -> None:
    with pytest.raises(TypeError) as raised, Load(lambda: _coroutine()):
        time.sleep(0.05)
    assert str(raised.value) == (
        "chaos.load(): test_a_call_returning_a_coroutine_on_threads_is_refused_at_the_end_of"
        "_the_block.<locals>.<lambda> returned an awaitable (coroutine); a call made on threads"
        " must do its work itself: pass an `async def` function (or a functools.partial of"
        " one) and use `async with chaos.load(...)`"
    )


def test_a_load_runs_once() -> None:
    load = Load(lambda: None)
    with load:
        pass
    with pytest.raises(LoadError, match=r"a load runs once; make another with chaos.load"):
        load.start()


def test_a_load_that_never_started_has_nothing_to_read() -> None:
    with pytest.raises(LoadError) as raised:
        Load(lambda: None).stats()
    assert str(raised.value) == ("chaos.load(): the load has not started; read it after its block")


# ------------------------------------------------------------------ the faults it is read with
class Faults:
    """A test's faults and the engine's events, as the `chaos` object gives them to a load."""

    def __init__(self, events: list[Event] | None) -> None:
        self.applied: list[AppliedFault] = []
        self._events = events

    def events(self, proxy: str | None = None) -> list[Event]:
        if self._events is None:
            raise FeatureUnavailable("chaos.events() needs the pytest-chaos engine")
        return self._events


def test_only_the_faults_active_while_the_load_ran_are_its_windows() -> None:
    source = Faults([])
    now = time.monotonic()
    source.applied.append(AppliedFault(Latency("api", 1), now - 2, now - 1))  # before it
    with Load(lambda: time.sleep(0.005), faults=source) as load:
        with_it = AppliedFault(Latency("api", 2), time.monotonic())
        source.applied.append(with_it)
        time.sleep(0.05)
        with_it.reverted_at = time.monotonic()
        time.sleep(0.05)
    source.applied.append(AppliedFault(Latency("api", 3), time.monotonic() + 1))  # after it
    assert [w.name for w in load.recording().faults] == ["latency('api', ms=2)"]
    assert load.stats("latency").count > 0
    assert all(c.faults in ((), ("latency('api', ms=2)",)) for c in load.calls)


def test_without_the_engine_s_events_the_proxies_view_says_why_it_is_missing() -> None:
    with Load(lambda: time.sleep(0.005), faults=Faults(None)) as load:
        time.sleep(0.05)
    stats = load.stats()
    assert stats.proxies == {}
    assert stats.proxies_note == "the proxies' view needs the pytest-chaos engine's events"
    assert load.to_json(load.started_at or 0.0)["proxies_note"] == stats.proxies_note
