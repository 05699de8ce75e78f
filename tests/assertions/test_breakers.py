"""assert_breaker_transitions and assert_no_traffic: real circuit breakers (pybreaker,
purgatory) guarding a real redis-py client, driven through closed -> open -> half-open ->
closed by taking Redis down through the proxy and bringing it back.

While a breaker is open its calls must be rejected without touching Redis: the proxy, which
sees every connection attempt, is the witness (assert_no_traffic over the recorder's open
windows).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pybreaker
import pytest
import redis
from purgatory import SyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from pytest_chaos.assertions import (
    ChaosAssertionError,
    assert_breaker_transitions,
    assert_no_traffic,
    wire_connections,
)
from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.chaos import Chaos
from pytest_chaos.recorders import (
    BreakerRecorder,
    Transition,
    record_purgatory,
    record_pybreaker,
)
from tests.assertions.helpers import SyntheticChaos, assert_message, event_stream

RESET_TIMEOUT = 0.3
FAIL_MAX = 3
FULL_CYCLE = ["closed", "open", "half-open", "closed"]
POLL_SECONDS = 0.02
RECOVERY_DEADLINE = 5.0


def fail(call: Callable[[], object], times: int, *errors: type[BaseException]) -> None:
    for _ in range(times):
        with pytest.raises(errors):
            call()


def call_until_it_succeeds(call: Callable[[], object], rejected: type[BaseException]) -> None:
    """Keep calling, as an application would, while the breaker rejects calls."""
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while True:
        try:
            call()
            return
        except rejected:
            assert time.monotonic() < deadline, "the breaker never let a call through"
            time.sleep(POLL_SECONDS)


def ping_bypassing_the_breaker(proxy: ProxyInfo) -> None:
    """A hand-written health check that talks to Redis directly: 14 bytes out, 7 back."""
    with socket.create_connection((proxy.host, proxy.port), timeout=2) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"


# ------------------------------------------------------------------------------- pybreaker
def test_pybreaker_opens_rejects_without_traffic_and_recovers(
    chaos: Chaos, cache: redis.Redis
) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=RESET_TIMEOUT)

    def ping() -> object:
        return breaker.call(cache.ping)

    with record_pybreaker(breaker) as states:
        with chaos.dependency_down("redis", mode="reset"):
            # The last failure trips the breaker, which then raises its own error.
            fail(ping, FAIL_MAX, redis.ConnectionError, pybreaker.CircuitBreakerError)
            fail(ping, 5, pybreaker.CircuitBreakerError)
        call_until_it_succeeds(ping, pybreaker.CircuitBreakerError)

    assert_breaker_transitions(states, FULL_CYCLE, min_open=RESET_TIMEOUT)
    assert_no_traffic(chaos, "redis", during=states.open_windows())
    # Not vacuous: the failures and the trial call did reach Redis, around the open window.
    seen = wire_connections(chaos, "redis")
    [(opened, closed)] = states.open_windows()
    assert closed is not None
    assert sum(c.accepted_at < opened for c in seen) == FAIL_MAX
    assert sum(c.accepted_at > closed for c in seen) == 1


def test_a_breaker_that_never_opens_is_caught(chaos: Chaos, cache: redis.Redis) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=50, reset_timeout=RESET_TIMEOUT)

    def ping() -> object:
        return breaker.call(cache.ping)

    with record_pybreaker(breaker) as states:
        with chaos.dependency_down("redis", mode="reset"):
            fail(ping, 5, redis.ConnectionError)
        assert ping() is True
    with pytest.raises(ChaosAssertionError) as raised:
        assert_breaker_transitions(states, FULL_CYCLE, min_open=RESET_TIMEOUT)
    assert str(raised.value) == (
        "The circuit breaker went through closed, not closed -> open -> half-open -> closed.\n"
        "- started closed\n"
        "Hint: the breaker never opened: do the failures reach fail_max (threshold), or are"
        " the errors excluded from counting?"
    )


def test_traffic_while_the_breaker_is_open_is_caught(
    chaos: Chaos, cache: redis.Redis, redis_proxy: ProxyInfo
) -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=60)

    def ping() -> object:
        return breaker.call(cache.ping)

    with record_pybreaker(breaker) as states:
        with chaos.dependency_down("redis", mode="reset"):
            fail(ping, FAIL_MAX, redis.ConnectionError, pybreaker.CircuitBreakerError)
        ping_bypassing_the_breaker(redis_proxy)  # the breaker is open: this must not happen

    [(_, still_open)] = states.open_windows()
    assert still_open is None
    with pytest.raises(ChaosAssertionError) as raised:
        assert_no_traffic(chaos, "redis", during=states.open_windows())
    assert_message(
        raised.value,
        "Traffic reached redis while it should have been left alone.\n"
        "- connection accepted at <+s> into the window (redis#<n>)\n"
        "- 14 bytes upstream at <+s> into the window (redis#<n>)\n"
        "- 7 bytes downstream at <+s> into the window (redis#<n>)\n"
        "Hint: calls made while the breaker is open must be rejected without touching the"
        " dependency.",
    )


def test_a_reset_timeout_shorter_than_claimed_is_caught() -> None:
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=0.05)

    def fails() -> None:
        raise ConnectionError("down")

    with record_pybreaker(breaker) as states:
        fail(lambda: breaker.call(fails), 1, pybreaker.CircuitBreakerError)
        time.sleep(0.06)
        breaker.call(lambda: None)
    with pytest.raises(ChaosAssertionError) as raised:
        assert_breaker_transitions(states, FULL_CYCLE, min_open=0.5)
    assert_message(
        raised.value,
        "The circuit breaker left the open state after <s>, before its reset timeout of"
        " 0.50s.\n"
        "- started closed\n"
        "- closed -> open at 0.00s\n"
        "- open -> half-open at <s>\n"
        "- half-open -> closed at <s>\n"
        "Hint: is reset_timeout (pybreaker) or ttl (purgatory) shorter than intended?",
    )


# ------------------------------------------------------------------------------- purgatory
def test_purgatory_opens_rejects_without_traffic_and_recovers(
    chaos: Chaos, cache: redis.Redis
) -> None:
    factory = SyncCircuitBreakerFactory(default_threshold=FAIL_MAX, default_ttl=RESET_TIMEOUT)

    def ping() -> object:
        with factory.get_breaker("redis"):
            return cache.ping()

    with record_purgatory(factory, "redis") as states:
        with chaos.dependency_down("redis", mode="reset"):
            fail(ping, FAIL_MAX, redis.ConnectionError)  # purgatory re-raises the last one
            fail(ping, 5, OpenedState)
        call_until_it_succeeds(ping, OpenedState)

    # purgatory says "opened" and "half-opened"; the recorder speaks pybreaker's names.
    assert_breaker_transitions(states, FULL_CYCLE, min_open=RESET_TIMEOUT)
    assert_no_traffic(chaos, "redis", during=states.open_windows())
    seen = wire_connections(chaos, "redis")
    [(opened, closed)] = states.open_windows()
    assert closed is not None
    assert sum(c.accepted_at < opened for c in seen) == FAIL_MAX
    assert sum(c.accepted_at > closed for c in seen) == 1


# ---------------------------------------------------------------- exact, synthetic messages
def test_a_breaker_that_never_probes_exact_message() -> None:
    states = BreakerRecorder(
        transitions=[Transition(100.0, "closed", "open"), Transition(100.5, "open", "closed")]
    )
    with pytest.raises(ChaosAssertionError) as raised:
        assert_breaker_transitions(states, FULL_CYCLE)
    assert str(raised.value) == (
        "The circuit breaker went through closed -> open -> closed, not closed -> open ->"
        " half-open -> closed.\n"
        "- started closed\n"
        "- closed -> open at 0.00s\n"
        "- open -> closed at 0.50s\n"
        "Hint: the breaker never probed: was a call made after the reset timeout elapsed?"
    )


def test_transitions_in_another_order_exact_message() -> None:
    states = BreakerRecorder(
        transitions=[
            Transition(100.0, "closed", "open"),
            Transition(100.3, "open", "half-open"),
            Transition(100.31, "half-open", "open"),
        ]
    )
    with pytest.raises(ChaosAssertionError) as raised:
        assert_breaker_transitions(states, FULL_CYCLE)
    assert str(raised.value) == (
        "The circuit breaker went through closed -> open -> half-open -> open, not closed ->"
        " open -> half-open -> closed.\n"
        "- started closed\n"
        "- closed -> open at 0.00s\n"
        "- open -> half-open at 0.30s\n"
        "- half-open -> open at 0.31s\n"
        "Hint: compare the breaker's thresholds and reset timeout with the fault's timing."
    )


def test_traffic_during_windows_exact_message() -> None:
    events = event_stream(
        "redis",
        (99.0, "accepted", 1, {}),
        (100.25, "data", 1, {"direction": "upstream", "bytes": 14}),
        (100.5, "accepted", 2, {}),
        (101.2, "accepted", 3, {}),
        (103.0, "accepted", 4, {}),
    )
    chaos = SyntheticChaos(events, started_at=98.0).as_chaos()
    assert_no_traffic(chaos, "redis", during=(100.6, 101.0))
    with pytest.raises(ChaosAssertionError) as raised:
        assert_no_traffic(chaos, "redis", during=[(100.0, 101.0), (102.0, None)])
    assert str(raised.value) == (
        "Traffic reached redis while it should have been left alone.\n"
        "- 14 bytes upstream at +0.25s into the window (redis#1)\n"
        "- connection accepted at +0.50s into the window (redis#2)\n"
        "- connection accepted at +1.00s into the window (redis#4)\n"
        "Hint: calls made while the breaker is open must be rejected without touching the"
        " dependency."
    )
    # One window given as a pair, or windows given as a tuple of pairs, read the same.
    with pytest.raises(ChaosAssertionError):
        assert_no_traffic(chaos, "redis", during=(102.0, None))
    with pytest.raises(ChaosAssertionError):
        assert_no_traffic(chaos, "redis", during=((100.6, 101.0), (102.0, None)))
