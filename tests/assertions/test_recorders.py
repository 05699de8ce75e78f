"""The recorders hear what the libraries do through the libraries' own hooks, restore those
hooks afterwards, and keep the user's own callbacks working. No network here: the retried and
guarded functions fail on purpose."""

from __future__ import annotations

import asyncio
import time

import pybreaker
import pytest
import stamina
import tenacity
from purgatory import SyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from pytest_chaos.recorders import (
    BreakerRecorder,
    Transition,
    normalise_state,
    record_purgatory,
    record_pybreaker,
    record_stamina,
    record_tenacity,
)

TINY_WAIT = 0.01


class Flaky:
    """Fails `failures` times, then returns "ok"."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"try {self.calls} failed")
        return "ok"


# ------------------------------------------------------------------------------- tenacity
def test_tenacity_decorated_function_attempts_are_recorded() -> None:
    flaky = Flaky(failures=2)
    slept: list[int] = []

    @tenacity.retry(
        wait=tenacity.wait_fixed(TINY_WAIT),
        stop=tenacity.stop_after_attempt(5),
        before_sleep=lambda state: slept.append(state.attempt_number),
    )
    def fetch() -> str:
        return flaky()

    with record_tenacity(fetch) as attempts:
        assert fetch() == "ok"
    assert [a.number for a in attempts.attempts] == [1, 2, 3]
    assert [a.error for a in attempts.attempts] == [
        "ConnectionError: try 1 failed",
        "ConnectionError: try 2 failed",
        None,
    ]
    assert attempts.planned_waits() == [TINY_WAIT, TINY_WAIT]
    assert all(TINY_WAIT * 0.9 <= wait < TINY_WAIT + 0.5 for wait in attempts.waits())
    assert slept == [1, 2], "the user's before_sleep still runs"


def test_tenacity_retrying_object_is_recorded_and_restored() -> None:
    # A Retrying object's own `.retry` is its retry *condition*; the recorder must not take
    # that for the Retrying.
    retrying = tenacity.Retrying(
        wait=tenacity.wait_none(), stop=tenacity.stop_after_attempt(3), reraise=True
    )
    original = (retrying.before, retrying.after, retrying.before_sleep)
    with record_tenacity(retrying) as attempts, pytest.raises(ConnectionError):
        retrying(Flaky(failures=5))
    assert len(attempts.attempts) == 3
    assert (retrying.before, retrying.after, retrying.before_sleep) == original


def test_tenacity_async_retrying_keeps_async_callbacks_awaited() -> None:
    """AsyncRetrying accepts async callbacks; wrapping one in a plain function would hand
    tenacity a coroutine it never awaits (a RuntimeWarning, an error in this suite)."""
    logged: list[int] = []

    async def log_retry(state: tenacity.RetryCallState) -> None:
        await asyncio.sleep(0)
        logged.append(state.attempt_number)

    retrying = tenacity.AsyncRetrying(
        wait=tenacity.wait_exponential(multiplier=TINY_WAIT),
        stop=tenacity.stop_after_attempt(4),
        before_sleep=log_retry,
        reraise=True,
    )
    flaky = Flaky(failures=3)

    async def main() -> str:
        async for attempt in retrying:
            with attempt:
                return flaky()
        raise AssertionError("unreachable")

    with record_tenacity(retrying) as attempts:
        assert asyncio.run(main()) == "ok"
    assert logged == [1, 2, 3]
    assert attempts.planned_waits() == pytest.approx([0.01, 0.02, 0.04])


def test_tenacity_recorder_refuses_what_is_not_tenacity() -> None:
    with pytest.raises(TypeError) as raised, record_tenacity(len):
        pass
    assert str(raised.value) == (
        "record_tenacity() needs a tenacity Retrying object or a function decorated with"
        " @retry, got <built-in function len>"
    )


# --------------------------------------------------------------------------------- stamina
@pytest.mark.usefixtures("stamina_active")
def test_stamina_waits_are_measured_not_taken_from_stamina() -> None:
    @stamina.retry(on=ConnectionError, attempts=4, wait_initial=0.02, wait_jitter=0, wait_max=1)
    def fetch() -> str:
        time.sleep(0.005)  # an attempt that takes time: it must not count as waiting
        return flaky()

    flaky = Flaky(failures=3)
    with record_stamina() as attempts:
        assert fetch() == "ok"
    assert [a.number for a in attempts.attempts] == [1, 2, 3, 4]
    assert attempts.planned_waits() == pytest.approx([0.02, 0.04, 0.08])
    for measured, planned in zip(attempts.waits(), attempts.planned_waits(), strict=True):
        assert planned * 0.9 <= measured < planned + 0.5
    assert attempts.attempts[1].error == "ConnectionError: try 2 failed"


@pytest.mark.usefixtures("stamina_active")
def test_stamina_hooks_are_restored() -> None:
    before = stamina.instrumentation.get_on_retry_hooks()
    with record_stamina():
        assert len(stamina.instrumentation.get_on_retry_hooks()) == len(before) + 1
    assert stamina.instrumentation.get_on_retry_hooks() == before


# -------------------------------------------------------------------------------- pybreaker
def test_pybreaker_transitions_failures_and_successes() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=0.05)
    flaky = Flaky(failures=2)
    with record_pybreaker(breaker) as states:
        with pytest.raises(ConnectionError):
            breaker.call(flaky)
        with pytest.raises(pybreaker.CircuitBreakerError):
            breaker.call(flaky)  # the second failure trips it
        with pytest.raises(pybreaker.CircuitBreakerError):
            breaker.call(flaky)  # rejected without a call
        time.sleep(0.06)
        assert breaker.call(flaky) == "ok"  # the trial call closes it again
    assert states.states() == ["closed", "open", "half-open", "closed"]
    assert [(t.old, t.new) for t in states.transitions] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]
    assert len(states.failures) == 2
    assert len(states.successes) == 1
    assert flaky.calls == 3
    [(opened, closed)] = states.open_windows()
    assert closed is not None
    assert closed - opened >= 0.05 - 0.01
    assert breaker.listeners == ()


def test_pybreaker_initial_state_is_read_from_the_breaker() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60)
    breaker.open()
    with record_pybreaker(breaker) as states:
        pass
    assert states.states() == ["open"]


# -------------------------------------------------------------------------------- purgatory
def test_purgatory_states_are_normalised_and_half_open_is_stamped_at_its_ttl() -> None:
    factory = SyncCircuitBreakerFactory(default_threshold=2, default_ttl=0.05)
    flaky = Flaky(failures=2)

    def call() -> str:
        with factory.get_breaker("cache"):
            if flaky.calls == 2:
                time.sleep(0.02)  # a slow trial call
            return flaky()

    with record_purgatory(factory, "cache") as states:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                call()
        with pytest.raises(OpenedState):
            call()
        time.sleep(0.06)
        trial_started = time.monotonic()
        assert call() == "ok"
    assert states.states() == ["closed", "open", "half-open", "closed"]
    opened, half_open, closed = (t.at for t in states.transitions)
    # purgatory publishes "half-opened" only after the trial call; the recorder puts it where
    # the breaker began to let a call through, before the trial call's traffic.
    assert half_open == pytest.approx(opened + 0.05, abs=0.005)
    assert half_open <= trial_started < closed
    assert len(states.failures) == 2
    assert len(states.successes) == 1


def test_purgatory_recorder_follows_one_circuit_and_detaches() -> None:
    factory = SyncCircuitBreakerFactory(default_threshold=1, default_ttl=60)
    with record_purgatory(factory, "cache") as states:
        for circuit in ("other", "cache"):
            with pytest.raises(ConnectionError), factory.get_breaker(circuit):
                raise ConnectionError(circuit)
    assert states.states() == ["closed", "open"]
    assert factory.listeners == {}


def test_purgatory_initial_state_comes_from_the_circuit() -> None:
    factory = SyncCircuitBreakerFactory(default_threshold=1, default_ttl=60)
    with pytest.raises(ConnectionError), factory.get_breaker("cache"):
        raise ConnectionError("down")
    with record_purgatory(factory, "cache") as states:
        pass
    assert states.states() == ["open"]
    assert states.open_windows() == []  # opened before recording: its start is unknown


# ----------------------------------------------------------------------- breaker recorder
def test_open_windows_pair_each_opening_with_what_ended_it() -> None:
    recorder = BreakerRecorder(
        transitions=[
            Transition(1.0, "closed", "open"),
            Transition(2.0, "open", "half-open"),
            Transition(2.1, "half-open", "open"),
            Transition(3.1, "open", "half-open"),
            Transition(3.2, "half-open", "closed"),
            Transition(5.0, "closed", "open"),
        ]
    )
    assert recorder.open_windows() == [(1.0, 2.0), (2.1, 3.1), (5.0, None)]


@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("closed", "closed"),
        ("opened", "open"),
        ("half-opened", "half-open"),
        ("HALF_OPEN", "half-open"),
    ],
)
def test_state_names_are_normalised(name: str, normal: str) -> None:
    assert normalise_state(name) == normal


def test_unknown_state_names_are_refused() -> None:
    with pytest.raises(ValueError, match="ajar") as raised:
        normalise_state("ajar")
    assert str(raised.value) == (
        "unknown circuit breaker state 'ajar'; known: closed, half-open, half-opened,"
        " half_open, open, opened"
    )
