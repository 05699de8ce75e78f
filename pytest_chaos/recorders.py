"""Recorders that watch retry and circuit-breaker libraries through their own hooks.

Nothing is patched: each recorder plugs into the library's public callback (tenacity's
`before`/`after`/`before_sleep`, stamina's on-retry hooks, a pybreaker listener, a purgatory
listener) and writes what happened with `time.monotonic()` timestamps, the clock the engine's
events use too.
"""

from __future__ import annotations

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
        self.attempts.append(Attempt(number, time.monotonic()))

    def record_end(self, error: BaseException | None) -> None:
        if self.attempts and self.attempts[-1].ended_at is None:
            last = self.attempts[-1]
            last.ended_at = time.monotonic()
            last.error = None if error is None else f"{type(error).__name__}: {error}"

    def record_planned_wait(self, seconds: float) -> None:
        if self.attempts:
            self.attempts[-1].planned_wait = seconds

    def start_times(self) -> list[float]:
        return [attempt.started_at for attempt in self.attempts]

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
        retrying = getattr(target, "retry", target)
        if not all(hasattr(retrying, name) for name in ("before", "after", "before_sleep")):
            raise TypeError(
                f"record_tenacity() needs a tenacity Retrying object or a function decorated"
                f" with @retry, got {target!r}"
            )
        original = (retrying.before, retrying.after, retrying.before_sleep)
        before, after, before_sleep = original

        def on_before(state: Any) -> Any:
            self.record_start(state.attempt_number)
            return before(state)

        def on_after(state: Any) -> Any:
            outcome = state.outcome
            self.record_end(outcome.exception() if outcome is not None and outcome.failed else None)
            return after(state)

        def on_before_sleep(state: Any) -> Any:
            self.record_end(state.outcome.exception() if state.outcome.failed else None)
            self.record_planned_wait(float(state.upcoming_sleep))
            return before_sleep(state) if before_sleep is not None else None

        retrying.before, retrying.after, retrying.before_sleep = (
            on_before,
            on_after,
            on_before_sleep,
        )

        def restore() -> None:
            retrying.before, retrying.after, retrying.before_sleep = original

        self._restore = restore
        return self

    def detach(self) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None


@contextmanager
def record_tenacity(target: Any) -> Iterator[TenacityRecorder]:
    """`with record_tenacity(fetch) as attempts:` records every try of `fetch`."""
    recorder = TenacityRecorder().attach(target)
    try:
        yield recorder
    finally:
        recorder.detach()


@contextmanager
def record_stamina() -> Iterator[RetryRecorder]:
    """Records stamina's retries through its on-retry hooks for the duration of the block.

    stamina reports retries, not first attempts: each recorded attempt is a retry, started
    when stamina announced it, with the wait it chose (`planned_wait`, jitter included).
    """
    from stamina import instrumentation

    recorder = RetryRecorder()

    def on_retry(details: Any) -> None:
        recorder.record_end(details.caused_by)
        recorder.record_start(details.retry_num)
        recorder.record_planned_wait(float(details.wait_for))

    previous = instrumentation.get_on_retry_hooks()
    instrumentation.set_on_retry_hooks([*previous, on_retry])
    try:
        yield recorder
    finally:
        instrumentation.set_on_retry_hooks(previous)


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
        self.transitions.append(
            Transition(time.monotonic(), normalise_state(old), normalise_state(new))
        )

    def states(self) -> list[str]:
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
def record_purgatory(factory: Any, circuit: str | None = None) -> Iterator[BreakerRecorder]:
    """Records a purgatory `CircuitBreakerFactory` (optionally one circuit) via its listener."""
    recorder = BreakerRecorder()
    last_state: dict[str, str] = {}

    def listener(name: str, event_type: str, event: Any) -> None:
        if circuit is not None and name != circuit:
            return
        if event_type == "state_changed":
            new = normalise_state(event.state)
            old = last_state.get(name, "closed")
            last_state[name] = new
            if new != old:
                recorder.record_transition(old, new)
        elif event_type == "failed":
            recorder.failures.append(time.monotonic())
        elif event_type == "recovered":
            recorder.successes.append(time.monotonic())

    factory.add_listener(listener)
    try:
        yield recorder
    finally:
        factory.remove_listener(listener)
