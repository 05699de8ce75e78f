"""Recorders that watch retry and circuit-breaker libraries through their own hooks.

Nothing is patched: each recorder plugs into the library's public callback (tenacity's
`before`/`after`/`before_sleep`, stamina's on-retry hooks, a pybreaker listener, a purgatory
listener) and writes what happened with `time.monotonic()` timestamps, the clock the engine's
events use too.
"""

from __future__ import annotations

import inspect
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# State names across libraries, normalised to pybreaker's spelling.
STATE_NAMES = {
    "closed": "closed",
    "open": "open",
    "opened": "open",
    "half-open": "half-open",
    "half_open": "half-open",
    "half-opened": "half-open",
}


def normalise_state(name: str) -> str:
    """A breaker state's name as the assertions use it: `closed`, `open` or `half-open`."""
    try:
        return STATE_NAMES[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown circuit breaker state {name!r}; known: {', '.join(sorted(STATE_NAMES))}"
        ) from None


# ----------------------------------------------------------------------------------- retries
@dataclass
class Attempt:
    """One try of a retried operation."""

    number: int
    started_at: float
    ended_at: float | None = None
    error: str | None = None
    planned_wait: float | None = None  # what the library said it would sleep after this one


@dataclass
class RetryRecorder:
    """The attempts of a retried operation, oldest first."""

    attempts: list[Attempt] = field(default_factory=list)

    def record_start(self, number: int) -> None:
        """Note that an attempt started now."""
        self.attempts.append(Attempt(number, time.monotonic()))

    def record_end(self, error: BaseException | None) -> None:
        """Note how the current attempt ended (None: it succeeded)."""
        if self.attempts and self.attempts[-1].ended_at is None:
            last = self.attempts[-1]
            last.ended_at = time.monotonic()
            last.error = _describe(error)

    def record_planned_wait(self, seconds: float) -> None:
        """Note the wait the library announced before the next attempt."""
        if self.attempts:
            self.attempts[-1].planned_wait = seconds

    def start_times(self) -> list[float]:
        """When each attempt started (`time.monotonic()`), in order."""
        return [attempt.started_at for attempt in self.attempts]

    def planned_waits(self) -> list[float]:
        """The waits the library announced, one per retry it scheduled."""
        return [a.planned_wait for a in self.attempts if a.planned_wait is not None]

    def waits(self) -> list[float]:
        """The idle time between one attempt's end and the next one's start."""
        return [
            later.started_at - (earlier.ended_at or earlier.started_at)
            for earlier, later in itertools.pairwise(self.attempts)
        ]


class TenacityRecorder(RetryRecorder):
    """Watches a tenacity `Retrying`/`AsyncRetrying` object, or a function decorated with
    `@retry`, through its `before`, `after` and `before_sleep` callbacks (kept chained)."""

    def __init__(self) -> None:
        super().__init__()
        self._restore: Callable[[], None] | None = None

    def attach(self, target: Any) -> TenacityRecorder:
        """Chain the recorder's callbacks onto the Retrying object's own."""
        retrying = _tenacity_retrying(target)
        original = (retrying.before, retrying.after, retrying.before_sleep)
        before, after, before_sleep = original

        def on_before(state: Any) -> None:
            self.record_start(state.attempt_number)

        def on_after(state: Any) -> None:
            outcome = state.outcome
            self.record_end(outcome.exception() if outcome is not None and outcome.failed else None)

        def on_before_sleep(state: Any) -> None:
            self.record_end(state.outcome.exception() if state.outcome.failed else None)
            self.record_planned_wait(float(state.upcoming_sleep))

        retrying.before, retrying.after, retrying.before_sleep = (
            _chained(on_before, before),
            _chained(on_after, after),
            _chained(on_before_sleep, before_sleep),
        )

        def restore() -> None:
            retrying.before, retrying.after, retrying.before_sleep = original

        self._restore = restore
        return self

    def detach(self) -> None:
        """Give the Retrying object back its own callbacks."""
        if self._restore is not None:
            self._restore()
            self._restore = None


def _tenacity_retrying(target: Any) -> Any:
    """The `Retrying`/`AsyncRetrying` object behind `target`.

    A `Retrying` object is taken as it is: its own `.retry` attribute is the retry *condition*
    (`retry_if_exception_type`, ...), not a `Retrying`. A function decorated with `@retry`
    carries its `Retrying` as `.retry`.
    """
    callbacks = ("before", "after", "before_sleep")
    for candidate in (target, getattr(target, "retry", None)):
        if candidate is not None and all(hasattr(candidate, name) for name in callbacks):
            return candidate
    raise TypeError(
        f"record_tenacity() needs a tenacity Retrying object or a function decorated"
        f" with @retry, got {target!r}"
    )


def _chained(record: Callable[[Any], None], original: Callable[..., Any] | None) -> Any:
    """`record`, then the user's own callback. An async callback (AsyncRetrying accepts them)
    stays async, so that tenacity awaits it rather than dropping an un-awaited coroutine."""
    if original is None:
        return record
    if inspect.iscoroutinefunction(original) or inspect.iscoroutinefunction(
        type(original).__call__
    ):

        async def chained_async(state: Any) -> Any:
            record(state)
            return await original(state)

        return chained_async

    def chained(state: Any) -> Any:
        record(state)
        return original(state)

    return chained


@contextmanager
def record_tenacity(target: Any) -> Iterator[TenacityRecorder]:
    """`with record_tenacity(fetch) as attempts:` records every try of `fetch`."""
    recorder = TenacityRecorder().attach(target)
    try:
        yield recorder
    finally:
        recorder.detach()


# stamina 25.1 lets an on-retry hook return a context manager, exited right before the retry
# runs: the only way to see when a retry really starts.
STAMINA_CONTEXT_HOOKS = (25, 1)


class _StaminaRetryStart:
    """Returned by the on-retry hook: stamina enters it when it schedules a retry and exits it
    right before the retry runs. stamina exits every such context manager again before each
    later attempt of the same call, so only the first exit counts."""

    def __init__(self, recorder: RetryRecorder, number: int) -> None:
        self.recorder = recorder
        self.number = number
        self.started = False

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        if not self.started:
            self.started = True
            self.recorder.record_start(self.number)


@contextmanager
def record_stamina() -> Iterator[RetryRecorder]:
    """Records stamina's retries through its on-retry hooks for the duration of the block.

    stamina announces a retry when the failed attempt ends, and (through the context manager
    the hook returns) right before the retry runs, so each wait is measured, not taken from
    stamina. stamina says nothing before a first attempt: that attempt is recorded as starting
    and ending when its failure is announced (its duration is unknown). Attempts are numbered
    as tries (1 = the first call); `planned_wait` is the wait stamina chose, jitter included.
    Needs stamina 25.1 or later.
    """
    from importlib.metadata import version

    from stamina import instrumentation

    installed = version("stamina")
    if _version_tuple(installed) < STAMINA_CONTEXT_HOOKS:
        raise RuntimeError(
            f"record_stamina() needs stamina 25.1 or later (hooks that return a context"
            f" manager), found {installed}"
        )
    recorder = RetryRecorder()

    def on_retry(details: Any) -> _StaminaRetryStart:
        failed = details.retry_num  # the try that just failed; the next one is failed + 1
        if failed == 1:
            now = time.monotonic()
            recorder.attempts.append(Attempt(1, now, now, _describe(details.caused_by)))
        else:
            recorder.record_end(details.caused_by)
        recorder.record_planned_wait(float(details.wait_for))
        return _StaminaRetryStart(recorder, failed + 1)

    previous = instrumentation.get_on_retry_hooks()
    instrumentation.set_on_retry_hooks([*previous, on_retry])
    try:
        yield recorder
    finally:
        instrumentation.set_on_retry_hooks(previous)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        parts.append(int(digits or 0))
    return tuple(parts)


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------------------------- breakers
@dataclass(frozen=True)
class Transition:
    at: float
    old: str
    new: str


@dataclass
class BreakerRecorder:
    """State changes, failures, successes and rejected calls of one circuit breaker."""

    initial_state: str = "closed"
    transitions: list[Transition] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)
    rejected: list[float] = field(default_factory=list)

    def record_transition(self, old: str, new: str) -> None:
        """Note a state change of the breaker, now."""
        self.transitions.append(
            Transition(time.monotonic(), normalise_state(old), normalise_state(new))
        )

    def states(self) -> list[str]:
        """The states the breaker went through, normalised, starting with its first."""
        return [self.initial_state, *(t.new for t in self.transitions)]

    def open_windows(self) -> list[tuple[float, float | None]]:
        """(start, end) of each period the breaker was open; end is None while still open."""
        windows: list[tuple[float, float | None]] = []
        opened: float | None = None
        for transition in self.transitions:
            if transition.new == "open" and opened is None:
                opened = transition.at
            elif transition.new != "open" and opened is not None:
                windows.append((opened, transition.at))
                opened = None
        if opened is not None:
            windows.append((opened, None))
        return windows


class _PybreakerListener:
    """A pybreaker.CircuitBreakerListener (duck-typed, so pybreaker is imported lazily)."""

    def __init__(self, recorder: BreakerRecorder) -> None:
        self.recorder = recorder

    def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = getattr(old_state, "name", None) or "closed"
        self.recorder.record_transition(old, new_state.name)

    def failure(self, cb: Any, exc: BaseException) -> None:
        self.recorder.failures.append(time.monotonic())

    def success(self, cb: Any) -> None:
        self.recorder.successes.append(time.monotonic())


@contextmanager
def record_pybreaker(breaker: Any) -> Iterator[BreakerRecorder]:
    """`with record_pybreaker(breaker) as states:` records the breaker through a listener.

    Calls rejected while open raise `pybreaker.CircuitBreakerError` in the caller without
    reaching any listener; count them with `states.rejected.append(time.monotonic())` in the
    code that catches that error, or read them at the proxy (`assert_no_traffic`).
    """
    recorder = BreakerRecorder(initial_state=normalise_state(breaker.current_state))
    listener = _PybreakerListener(recorder)
    breaker.add_listener(listener)
    try:
        yield recorder
    finally:
        breaker.remove_listener(listener)


@contextmanager
def record_purgatory(
    factory: Any, circuit: str | None = None, *, ttl: float | None = None
) -> Iterator[BreakerRecorder]:
    """Records a purgatory `CircuitBreakerFactory` (optionally one circuit) via its listener.

    purgatory publishes a request's state changes only when the request ends, so "half-open"
    would be stamped after the trial call it let through. It is stamped instead when the
    breaker started letting a call through: its open time (from the event) plus its ttl, taken
    from `ttl`, else from the circuit's own settings, else the factory's default. Transitions
    that close or reopen the breaker are stamped when published, right after the trial call.
    """
    recorder = BreakerRecorder()
    if circuit is not None:
        context = _purgatory_context(factory, circuit)
        if context is not None:
            recorder.initial_state = normalise_state(context.state)
    last_state: dict[str, str] = {}
    opened_at: dict[str, float] = {}
    ttls: dict[str, float] = {}

    def ttl_of(name: str) -> float:
        if ttl is not None:
            return ttl
        if name not in ttls:
            context = _purgatory_context(factory, name)
            ttls[name] = float(context.ttl if context is not None else factory.default_ttl)
        return ttls[name]

    def listener(name: str, event_type: str, event: Any) -> None:
        if circuit is not None and name != circuit:
            return
        now = time.monotonic()
        if event_type == "circuit_breaker_created":
            ttls[name] = float(event.ttl)
        elif event_type == "state_changed":
            new = normalise_state(event.state)
            old = last_state.get(name, recorder.initial_state)
            last_state[name] = new
            if new == old:
                return
            at = now
            if new == "open" and event.opened_at is not None:
                # purgatory stamps the opening with time.time(); bring it onto our clock.
                at = now - max(0.0, time.time() - event.opened_at)
                opened_at[name] = at
            elif new == "half-open" and name in opened_at:
                at = min(now, opened_at.pop(name) + ttl_of(name))
            recorder.transitions.append(Transition(at, old, new))
        elif event_type == "failed":
            recorder.failures.append(now)
        elif event_type == "recovered":
            recorder.successes.append(now)

    factory.add_listener(listener)
    try:
        yield recorder
    finally:
        factory.remove_listener(listener)


def _purgatory_context(factory: Any, circuit: str) -> Any:
    """The circuit's stored context (state, ttl) from a synchronous in-memory or Redis
    repository; None when it does not exist yet or the repository is asynchronous."""
    try:
        context = factory.uow.contexts.get(circuit)
    except Exception:  # a repository we cannot read synchronously: fall back to defaults
        return None
    if inspect.iscoroutine(context):
        context.close()  # an async repository: never awaited, so close it quietly
        return None
    return context
