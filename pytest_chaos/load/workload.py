"""A workload that runs in the background while a test injects faults: `call` made over and
over by `concurrency` workers (threads, or asyncio tasks for a coroutine function), at most
`rate` calls a second, each call's start, latency and outcome recorded.

It stops at the end of its block (`with` or `async with`), or when the test ends; calls still
running `stop_timeout` seconds after that are recorded as hung and never waited on again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from pytest_chaos.load.recording import (
    FaultWindow,
    LoadError,
    Recording,
    Recovery,
    fault_window,
)
from pytest_chaos.load.signals import HUNG, CallRecord, Stats

if TYPE_CHECKING:
    from pytest_chaos.apply import AppliedFault
    from pytest_chaos.events import Event

MAX_CONCURRENCY = 1000
DEFAULT_STOP_TIMEOUT = 2.0
CANCEL_WAIT_SECONDS = 0.5
# Calls shown per load in the reports (the signals are computed from all of them).
MAX_REPORTED_CALLS = 1000
# How long the end of a test waits for the threads of hung calls, once its faults are reverted.
RELEASE_TIMEOUT = 5.0
# The first words of an error's message kept per exception type, for messages and reports.
EXAMPLE_LENGTH = 200


class FaultSource(Protocol):
    """Where a load reads the faults of its test and what the engine saw (the `chaos`
    fixture's object has both)."""

    @property
    def applied(self) -> list[AppliedFault]:
        """Every fault the test applied, reverted or not, oldest first."""
        ...

    def events(self, proxy: str | None = None) -> list[Event]:
        """What the engine saw since the test started, optionally for one proxy
        (FeatureUnavailable when the backend is a plain Toxiproxy)."""
        ...


class _Worker:
    """One worker's calls, and the start of the call it is in (None between calls). Once the
    load is frozen, a call that ends late is not recorded: it was counted as hung."""

    __slots__ = ("current", "frozen", "lock", "records", "runner")

    def __init__(self) -> None:
        self.records: list[tuple[float, float, str | None]] = []
        self.current: float | None = None
        self.frozen = False
        self.lock = threading.Lock()
        self.runner: threading.Thread | asyncio.Task[None] | None = None

    def record(self, start: float, end: float, error: str | None) -> bool:
        """Keep the call; False once frozen (the worker should end)."""
        with self.lock:
            if self.frozen:
                return False
            self.records.append((start, end, error))
            self.current = None
            return True


class Load:
    """`call()` made repeatedly in the background for the body of a `with` (threads) or
    `async with` (asyncio tasks, when `call` is a coroutine function) block; see
    `Chaos.load` for the options. Read it with `stats()`, `recovery_time()`, `calls`."""

    def __init__(
        self,
        call: Callable[[], Any],
        *,
        concurrency: int = 1,
        rate: float | None = None,
        duration: float | None = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        faults: FaultSource | None = None,
    ) -> None:
        __tracebackhide__ = True
        problem = _problem(call, concurrency, rate, duration, stop_timeout)
        if problem is not None:
            error_type, message = problem
            raise error_type(f"chaos.load(): {message}")
        self.call = call
        self.concurrency = concurrency
        self.rate = None if rate is None else float(rate)
        self.duration = None if duration is None else float(duration)
        self.stop_timeout = float(stop_timeout)
        self.source = faults
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.error_examples: dict[str, str] = {}
        self._workers: list[_Worker] = []
        self._stopping = threading.Event()
        self._async_stopping: asyncio.Event | None = None
        self._slot_lock = threading.Lock()
        self._next_slot = 0.0
        self._deadline = math.inf
        self._misuse: str | None = None
        self._calls: tuple[CallRecord, ...] | None = None

    # ---------------------------------------------------------------------- the block
    def __enter__(self) -> Self:
        __tracebackhide__ = True
        if _is_coroutine_function(self.call):
            raise TypeError(
                f"chaos.load(): {_name(self.call)} is a coroutine function; run it with"
                " `async with chaos.load(...)`"
            )
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        self._stopping.wait(self._time_left(exc_type))
        self.stop()
        self._raise_misuse(exc_type)

    def _time_left(self, exc_type: type[BaseException] | None) -> float:
        """How long the load still runs once its block has ended: the rest of its duration
        (the calls go on), or nothing after an error or without a duration."""
        if exc_type is not None or self.duration is None or self.started_at is None:
            return 0.0
        return max(0.0, self.started_at + self.duration - time.monotonic())

    async def __aenter__(self) -> Self:
        __tracebackhide__ = True
        if not _is_coroutine_function(self.call):
            return self.start()  # a plain function runs on threads, as with `with`
        self._begin()
        self._async_stopping = asyncio.Event()
        for index, worker in enumerate(self._workers):
            worker.runner = asyncio.create_task(self._run_task(worker), name=f"chaos-load-{index}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        await asyncio.sleep(self._time_left(exc_type))
        if self._async_stopping is None:
            await asyncio.to_thread(self.stop)
        else:
            await self._stop_tasks()
        self._raise_misuse(exc_type)

    # ------------------------------------------------------------------------ threads
    def start(self) -> Self:
        """Start the workers on threads (what `with` does); `stop()` ends them."""
        __tracebackhide__ = True
        self._begin()
        for index, worker in enumerate(self._workers):
            thread = threading.Thread(
                target=self._run_thread, args=(worker,), name=f"chaos-load-{index}", daemon=True
            )
            worker.runner = thread
            thread.start()
        return self

    def _begin(self) -> None:
        __tracebackhide__ = True
        if self.started_at is not None:
            raise LoadError("chaos.load(): a load runs once; make another with chaos.load(...)")
        self._workers = [_Worker() for _ in range(self.concurrency)]
        self.started_at = self._next_slot = time.monotonic()
        if self.duration is not None:
            self._deadline = self.started_at + self.duration

    def _take_slot(self) -> float:
        """When the next call may start: 1/rate after the previous one, never in the past
        (calls missed while every worker was busy are not made up in a burst)."""
        assert self.rate is not None
        with self._slot_lock:
            slot = max(self._next_slot, time.monotonic())
            self._next_slot = slot + 1.0 / self.rate
        return slot

    def _started(self, start: float) -> None:
        """A call started at `start`: the next one waits 1/rate from then. A worker woken
        late from its wait (a busy machine) must not let the next call follow at once."""
        if self.rate is None:
            return
        with self._slot_lock:
            self._next_slot = max(self._next_slot, start + 1.0 / self.rate)

    def _run_thread(self, worker: _Worker) -> None:
        call, clock, stopping, rate = self.call, time.monotonic, self._stopping, self.rate
        while not stopping.is_set():
            if rate is not None:
                wait = self._take_slot() - clock()
                if wait > 0 and stopping.wait(wait):
                    return
            start = clock()
            if start >= self._deadline:
                return
            self._started(start)
            worker.current = start
            error: str | None = None
            try:
                result = call()
            except (KeyboardInterrupt, SystemExit):
                worker.record(start, clock(), "interrupted")
                return
            except BaseException as exc:  # every failure of the call is an outcome to count
                error = self._note(exc)
            else:
                if result is not None and inspect.isawaitable(result):
                    self._refuse_awaitable(result)
                    worker.current = None
                    return
            if not worker.record(start, clock(), error):
                return

    @property
    def on_tasks(self) -> bool:
        """The calls run as asyncio tasks (an `async with` block and an `async def` call)."""
        return self._async_stopping is not None

    def stop(self) -> None:
        """Stop starting calls, wait up to `stop_timeout` seconds for those in flight, and
        record the ones still running as hung. Safe to call twice."""
        if self.started_at is None or self.stopped_at is not None:
            return
        if self.on_tasks:
            self._abandon_tasks()
            return
        self.stopped_at = time.monotonic()
        self._stopping.set()
        deadline = self.stopped_at + self.stop_timeout
        for worker in self._workers:
            if isinstance(worker.runner, threading.Thread):
                worker.runner.join(max(0.0, deadline - time.monotonic()))
        self._freeze()

    def release(self, timeout: float = RELEASE_TIMEOUT) -> list[str]:
        """Wait (up to `timeout` seconds in all) for the threads of hung calls, which the
        test's end has usually freed by reverting its faults; the names of those still stuck."""
        self.stop()
        deadline = time.monotonic() + timeout
        stuck = []
        for worker in self._workers:
            if isinstance(worker.runner, threading.Thread):
                worker.runner.join(max(0.0, deadline - time.monotonic()))
                if worker.runner.is_alive():
                    stuck.append(worker.runner.name)
        return stuck

    # ------------------------------------------------------------------------- asyncio
    async def _run_task(self, worker: _Worker) -> None:
        call, clock, rate = self.call, time.monotonic, self.rate
        stopping = self._async_stopping
        assert stopping is not None
        while not stopping.is_set():
            if rate is not None:
                wait = self._take_slot() - clock()
                if wait > 0:
                    try:
                        await asyncio.wait_for(stopping.wait(), wait)
                        return
                    except TimeoutError:
                        pass
            start = clock()
            if start >= self._deadline:
                return
            self._started(start)
            worker.current = start
            error: str | None = None
            try:
                await call()
            except asyncio.CancelledError:
                raise  # the load stopped while this call hung: counted as hung
            except (KeyboardInterrupt, SystemExit):
                worker.record(start, clock(), "interrupted")
                raise
            except BaseException as exc:  # every failure of the call is an outcome to count
                error = self._note(exc)
            if not worker.record(start, clock(), error):
                return
            # A call that never waits on anything would otherwise keep the loop to itself.
            await asyncio.sleep(0)

    async def _stop_tasks(self) -> None:
        if self.started_at is None or self.stopped_at is not None:
            return
        assert self._async_stopping is not None
        self.stopped_at = time.monotonic()
        self._async_stopping.set()
        tasks = [w.runner for w in self._workers if isinstance(w.runner, asyncio.Task)]
        _, pending = await asyncio.wait(tasks, timeout=self.stop_timeout) if tasks else ((), ())
        self._freeze()
        for task in pending:
            task.cancel()
        if pending:
            # A call that swallows its cancellation is not waited on for ever either.
            await asyncio.wait(pending, timeout=max(self.stop_timeout, CANCEL_WAIT_SECONDS))

    def _abandon_tasks(self) -> None:
        """Stop tasks from outside their loop (the test ended inside the block, its loop
        gone or busy): what is running now is hung."""
        self.stopped_at = time.monotonic()
        self._freeze()
        for worker in self._workers:
            if isinstance(worker.runner, asyncio.Task):
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    worker.runner.cancel()

    # ------------------------------------------------------------------------- records
    def _freeze(self) -> None:
        """The calls as they stand: later ends are ignored, running ones are hung."""
        now = time.monotonic()
        calls: list[CallRecord] = []
        for worker in self._workers:
            with worker.lock:
                worker.frozen = True
                running = worker.current
            calls += [CallRecord(start, end - start, error) for start, end, error in worker.records]
            if running is not None:
                calls.append(CallRecord(running, now - running, HUNG))
        calls.sort(key=lambda call: call.start)
        self._calls = tuple(calls)

    def _note(self, error: BaseException) -> str:
        # Only the type and a first message are kept: the exception's traceback holds frames
        # (and their sockets) alive.
        name = type(error).__name__
        if name not in self.error_examples:
            self.error_examples[name] = str(error)[:EXAMPLE_LENGTH]
        return name

    def _refuse_awaitable(self, result: Any) -> None:
        if inspect.iscoroutine(result):
            result.close()  # never awaited: closed, so Python does not warn about it
        self._misuse = (
            f"chaos.load(): {_name(self.call)} returned an awaitable ({type(result).__name__});"
            " a call made on threads must do its work itself: pass an `async def` function"
            " (or a functools.partial of one) and use `async with chaos.load(...)`"
        )
        self._stopping.set()

    def _raise_misuse(self, exc_type: type[BaseException] | None) -> None:
        __tracebackhide__ = True
        if self._misuse is not None and exc_type is None:
            raise TypeError(self._misuse)

    # ------------------------------------------------------------------ reading it
    @property
    def running(self) -> bool:
        """True from the load's start until it stops."""
        return self.started_at is not None and self.stopped_at is None

    def in_flight(self) -> list[float]:
        """When the calls running now started (monotonic times)."""
        return [w.current for w in self._workers if w.current is not None]

    @property
    def calls(self) -> list[CallRecord]:
        """Every call so far, oldest first, each tagged with the faults active during it."""
        return list(self.recording().calls)

    def recording(self) -> Recording:
        """A snapshot: the calls (once stopped, hung ones included), the faults active while
        the load ran, and the engine's events."""
        __tracebackhide__ = True
        if self.started_at is None:
            raise LoadError("chaos.load(): the load has not started; read it after its block")
        stopped = self.stopped_at if self.stopped_at is not None else time.monotonic()
        if self._calls is not None:
            raw = self._calls
        else:
            found = [
                CallRecord(start, end - start, error)
                for worker in self._workers
                for start, end, error in list(worker.records)
            ]
            raw = tuple(sorted(found, key=lambda call: call.start))
        events, note = self._events()
        faults = self._fault_windows(self.started_at, stopped, events)
        return Recording(
            calls=tuple(_tagged(call, faults) for call in raw),
            faults=tuple(faults),
            events=events,
            started_at=self.started_at,
            stopped_at=stopped,
            events_note=note,
        )

    def _fault_windows(
        self, start: float, stop: float, events: tuple[Event, ...] | None
    ) -> list[FaultWindow]:
        """The faults active at some moment of the load's run, each from when it took effect
        to when it ceased to."""
        if self.source is None:
            return []
        windows = [fault_window(applied, events) for applied in self.source.applied]
        return [w for w in windows if w.start <= stop and (w.end is None or w.end >= start)]

    def _events(self) -> tuple[tuple[Event, ...] | None, str | None]:
        if self.source is None:
            return None, None
        from pytest_chaos.backends.client import FeatureUnavailable, ToxiproxyError

        try:
            return tuple(self.source.events()), None
        except FeatureUnavailable:
            return None, "the proxies' view needs the pytest-chaos engine's events"
        except ToxiproxyError as error:
            return None, f"the proxies' view is missing: {error}"

    def stats(self, during: object = None) -> Stats:
        """Count, throughput, error rate by exception type, p50/p90/p99/max latency, and the
        proxies' view, for the whole run or the window `during` names: "before" (the first
        fault), "during" (any fault), "after" (the last revert), a fault (its handle, the
        fault, its text or kind) or a (start, end) pair of monotonic times."""
        __tracebackhide__ = True
        return self.recording().stats(during)

    def recovery(
        self, *, latency: float | None = None, error_rate: float | None = None
    ) -> Recovery:
        """How the load came back after the last revert (see `Recording.recovery`)."""
        __tracebackhide__ = True
        return self.recording().recovery(latency=latency, error_rate=error_rate)

    def recovery_time(
        self, *, latency: float | None = None, error_rate: float | None = None
    ) -> float | None:
        """Seconds from the last revert until errors and latency were back to the baseline
        (the calls before the first fault): from a call on, every call succeeds (or no more
        often fails than before) and their p90 is at most 1.5 x the baseline's p99 + 5 ms
        (`latency`, `error_rate` to choose); None if they were not by the time the load
        stopped."""
        __tracebackhide__ = True
        return self.recovery(latency=latency, error_rate=error_rate).time

    def to_json(self, origin: float, *, max_points: int = MAX_REPORTED_CALLS) -> dict[str, Any]:
        """The load for the JSON and HTML reports, times relative to `origin` (the test's
        start): what it ran, its signals per window, its recovery time, and its calls (at
        most `max_points` of them)."""
        return {
            "load": self.describe(),
            "concurrency": self.concurrency,
            "rate": self.rate,
            "duration": self.duration,
            "error_examples": dict(self.error_examples),
            **self.recording().to_json(origin, max_points=max_points),
        }

    def describe(self) -> str:
        """`get_user x4 at 50/s for 3s`: what the load runs, for reports."""
        text = f"{_name(self.call)} x{self.concurrency}"
        if self.rate is not None:
            text += f" at {self.rate:g}/s"
        if self.duration is not None:
            text += f" for {self.duration:g}s"
        return text

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self.stopped_at else "not started"
        return f"<Load {self.describe()} ({state})>"


def _tagged(call: CallRecord, faults: list[FaultWindow]) -> CallRecord:
    names = tuple(
        dict.fromkeys(
            w.name for w in faults if w.start <= call.end and (w.end is None or w.end >= call.start)
        )
    )
    return CallRecord(call.start, call.latency, call.error, names) if names else call


def _is_coroutine_function(call: Any) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


def _name(call: Any) -> str:
    name = getattr(call, "__qualname__", None) or getattr(call, "__name__", None)
    if name is None and hasattr(call, "func"):  # functools.partial
        return f"partial({_name(call.func)})"
    return str(name) if name is not None else type(call).__name__


def _problem(
    call: object,
    concurrency: object,
    rate: object,
    duration: object,
    stop_timeout: object,
) -> tuple[type[Exception], str] | None:
    """What is wrong with the arguments, as (exception type, message), or None."""
    if not callable(call):
        return TypeError, (
            "call must be a callable taking no arguments (a function, a lambda, a"
            f" functools.partial), got {call!r} ({type(call).__name__})"
        )
    required = _required_parameters(call)
    if required:
        return TypeError, (
            f"call must take no arguments, and {_name(call)} requires {', '.join(required)};"
            " bind them with functools.partial or a lambda"
        )
    if (
        not isinstance(concurrency, int)
        or isinstance(concurrency, bool)
        or not 1 <= concurrency <= MAX_CONCURRENCY
    ):
        return LoadError, (
            f"concurrency must be a whole number of workers from 1 to {MAX_CONCURRENCY},"
            f" got {concurrency!r}"
        )
    if rate is not None and not _positive(rate):
        return LoadError, (
            "rate must be a number of calls per second greater than 0 (or None: as fast as"
            f" the workers go), got {rate!r}"
        )
    if duration is not None and not _positive(duration):
        return LoadError, (
            "duration must be a number of seconds greater than 0 (or None: until the block"
            f" ends), got {duration!r}"
        )
    if not _number(stop_timeout) or float(stop_timeout) < 0:  # type: ignore[arg-type]
        return LoadError, f"stop_timeout must be a number of seconds >= 0, got {stop_timeout!r}"
    return None


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _positive(value: object) -> bool:
    return _number(value) and float(value) > 0  # type: ignore[arg-type]


def _required_parameters(call: Any) -> list[str]:
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError):
        return []  # some builtins have no signature to read: let the first call tell
    # Parameters a call without arguments would leave unfilled (*args and **kwargs are fine).
    fillable = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [
        name
        for name, parameter in signature.parameters.items()
        if parameter.default is parameter.empty and parameter.kind not in fillable
    ]
