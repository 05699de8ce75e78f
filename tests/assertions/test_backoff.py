"""assert_backoff and assert_no_retry_storm: retry loops of real libraries (tenacity, stamina,
redis-py's own Retry) against a Redis that is down, read from both sides: the library's hooks
(recorders) and the connection attempts that reached the proxy (wire_attempts).

The dependency is brought down with `dependency_down(mode="reset")`: each attempt connects
to the proxy, which resets it, so every attempt is seen on the wire. In mode "refuse" the
proxy's listener is closed, so the client's SYN is refused by the kernel and no attempt ever
reaches the proxy (see test_refused_attempts_never_reach_the_proxy).

Messages whose numbers are timings are checked twice: exactly, from synthetic attempt times,
and with the timings as placeholders, from real clients.
"""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import stamina
import tenacity
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pytest_chaos.assertions import (
    ChaosAssertionError,
    assert_backoff,
    assert_no_retry_storm,
    wire_attempts,
)
from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.chaos import Chaos
from pytest_chaos.policies import Exponential, Fixed, Incrementing
from pytest_chaos.recorders import record_stamina, record_tenacity
from tests.assertions.helpers import assert_message, attempts_at, redis_client

# Real retry loops are timed by the shared 2-CPU machine: a worker descheduled for 100 ms makes
# one gap late. A wrong policy fails every run; a busy machine rarely fails three in a row.
pytestmark = pytest.mark.flaky(reruns=2)

MULTIPLIER = 0.05  # waits of 0.05, 0.1, 0.2, 0.4 s: 0.75 s for five attempts
ATTEMPTS = 5


def retry_redis_errors(**options: object) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(redis.ConnectionError),
        reraise=True,
        **options,  # type: ignore[arg-type]
    )


# ------------------------------------------------------------------- real retry loops pass
def test_tenacity_exponential_backoff_seen_by_the_recorder_and_on_the_wire(
    chaos: Chaos, cache: redis.Redis
) -> None:
    @tenacity.retry(
        wait=tenacity.wait_exponential(multiplier=MULTIPLIER),
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        retry=tenacity.retry_if_exception_type(redis.ConnectionError),
        reraise=True,
    )
    def fetch() -> bytes | None:
        return cache.get("key")  # type: ignore[return-value]

    policy = Exponential.tenacity(multiplier=MULTIPLIER)
    with (
        record_tenacity(fetch) as attempts,
        chaos.dependency_down("redis", mode="reset"),
        pytest.raises(redis.ConnectionError),
    ):
        fetch()
    assert_backoff(attempts, policy, attempts=ATTEMPTS)
    # The dependency's side: one connection per attempt, spaced by the same waits (plus each
    # attempt's own few milliseconds, within the default tolerance).
    assert_backoff(wire_attempts(chaos, "redis"), policy, attempts=ATTEMPTS)
    assert_no_retry_storm(chaos, "redis", max_per_second=ATTEMPTS)


def test_refused_attempts_never_reach_the_proxy(chaos: Chaos, cache: redis.Redis) -> None:
    retrying = retry_redis_errors(
        wait=tenacity.wait_exponential(multiplier=0.01), stop=tenacity.stop_after_attempt(4)
    )
    with (
        record_tenacity(retrying) as attempts,
        chaos.dependency_down("redis", mode="refuse"),
        pytest.raises(redis.ConnectionError),
    ):
        retrying(cache.get, "key")
    assert_backoff(attempts, Exponential.tenacity(multiplier=0.01), attempts=4)
    # Refused by the kernel: the proxy's listener is closed, so it never sees an attempt.
    assert wire_attempts(chaos, "redis") == []


@pytest.mark.asyncio
async def test_async_tenacity_backoff_seen_by_the_recorder_and_on_the_wire(
    chaos: Chaos, redis_proxy: ProxyInfo
) -> None:
    client = redis.asyncio.Redis(
        host=redis_proxy.host,
        port=redis_proxy.port,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0),
    )
    retrying = tenacity.AsyncRetrying(
        wait=tenacity.wait_exponential(multiplier=MULTIPLIER),
        stop=tenacity.stop_after_attempt(4),
        retry=tenacity.retry_if_exception_type(redis.ConnectionError),
        reraise=True,
    )
    policy = Exponential.tenacity(multiplier=MULTIPLIER)

    async def fetch() -> object:
        async for attempt in retrying:
            with attempt:
                return await client.get("key")
        raise AssertionError("unreachable: the last error is re-raised")

    try:
        with (
            record_tenacity(retrying) as attempts,
            chaos.dependency_down("redis", mode="reset"),
            pytest.raises(redis.ConnectionError),
        ):
            await fetch()
    finally:
        await client.aclose()
    assert_backoff(attempts, policy, attempts=4)
    assert_backoff(wire_attempts(chaos, "redis"), policy, attempts=4)


@pytest.mark.usefixtures("stamina_active")
def test_stamina_backoff_seen_by_the_recorder_and_on_the_wire(
    chaos: Chaos, cache: redis.Redis
) -> None:
    settings = {"wait_initial": 0.05, "wait_max": 1.0, "wait_jitter": 0.02, "wait_exp_base": 2}

    @stamina.retry(on=redis.ConnectionError, attempts=4, **settings)
    def fetch() -> bytes | None:
        return cache.get("key")  # type: ignore[return-value]

    policy = Exponential.stamina(**settings)
    with (
        record_stamina() as attempts,
        chaos.dependency_down("redis", mode="reset"),
        pytest.raises(redis.ConnectionError),
    ):
        fetch()
    assert_backoff(attempts, policy, attempts=4)
    assert_backoff(wire_attempts(chaos, "redis"), policy, attempts=4)


def test_redis_py_own_retry_backoff_seen_on_the_wire(chaos: Chaos, redis_proxy: ProxyInfo) -> None:
    """No recorder at all: redis-py's built-in Retry, checked from the dependency's side."""
    client = redis_client(
        redis_proxy, timeout=1.0, retry=Retry(ExponentialBackoff(cap=1.0, base=0.025), 3)
    )
    try:
        with chaos.dependency_down("redis", mode="reset"), pytest.raises(redis.ConnectionError):
            client.get("key")
    finally:
        client.close()
    assert_backoff(
        wire_attempts(chaos, "redis"), Exponential.redis(cap=1.0, base=0.025), attempts=4
    )


# --------------------------------------------------------------- real retry loops that fail
def test_a_retry_loop_without_backoff_is_caught(chaos: Chaos, cache: redis.Redis) -> None:
    retrying = retry_redis_errors(stop=tenacity.stop_after_attempt(10))  # no wait at all
    with (
        record_tenacity(retrying) as attempts,
        chaos.dependency_down("redis", mode="reset"),
        pytest.raises(redis.ConnectionError),
    ):
        retrying(cache.get, "key")

    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(attempts, Exponential.tenacity(multiplier=0.1), attempts=10)
    assert_message(
        raised.value,
        "Retries did not follow exponential backoff (initial=0.1s, multiplier=2).\n"
        "- attempt 2 after <s> (expected 0.10s +/- 0.02s)  <-- too early\n"
        "- attempt 3 after <s> (expected 0.20s +/- 0.02s)  <-- too early\n"
        "- attempt 4 after <s> (expected 0.40s +/- 0.04s)  <-- too early\n"
        "- attempt 5 after <s> (expected 0.80s +/- 0.08s)  <-- too early\n"
        "- attempt 6 after <s> (expected 1.60s +/- 0.16s)  <-- too early\n"
        "- attempt 7 after <s> (expected 3.20s +/- 0.32s)  <-- too early\n"
        "- attempt 8 after <s> (expected 6.40s +/- 0.64s)  <-- too early\n"
        "- attempt 9 after <s> (expected 12.80s +/- 1.28s)  <-- too early\n"
        "- attempt 10 after <s> (expected 25.60s +/- 2.56s)  <-- too early\n"
        "Hint: the retries do not wait at all: is there a backoff between attempts?",
    )

    with pytest.raises(ChaosAssertionError) as raised:
        assert_no_retry_storm(chaos, "redis", max_per_second=5)
    assert_message(
        raised.value,
        "Retry storm: 10 connection attempts reached redis within one second.\n"
        "- at most 5 per second allowed\n"
        "- 10 attempts in the second from <+s> (test time)\n"
        "Hint: a retry loop without backoff (or without a cap on attempts) hammers a"
        " struggling dependency.",
    )


def test_fixed_waits_checked_against_exponential_are_caught(
    chaos: Chaos, cache: redis.Redis
) -> None:
    retrying = retry_redis_errors(
        wait=tenacity.wait_fixed(0.1), stop=tenacity.stop_after_attempt(ATTEMPTS)
    )
    with (
        record_tenacity(retrying) as attempts,
        chaos.dependency_down("redis", mode="reset"),
        pytest.raises(redis.ConnectionError),
    ):
        retrying(cache.get, "key")
    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(attempts, Exponential.tenacity(multiplier=0.1), attempts=ATTEMPTS)
    assert_message(
        raised.value,
        "Retries did not follow exponential backoff (initial=0.1s, multiplier=2).\n"
        "- attempt 2 after <s> (expected 0.10s +/- 0.02s)\n"
        "- attempt 3 after <s> (expected 0.20s +/- 0.02s)  <-- too early\n"
        "- attempt 4 after <s> (expected 0.40s +/- 0.04s)  <-- too early\n"
        "- attempt 5 after <s> (expected 0.80s +/- 0.08s)  <-- too early\n"
        "Hint: is the client using wait_fixed instead of wait_exponential?",
    )


# ---------------------------------------------------------------- exact, synthetic messages
def test_no_waits_exact_message() -> None:
    times = attempts_at(*(0.001 * n for n in range(10)))
    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(times, Exponential.tenacity(multiplier=0.1, max=2))
    assert str(raised.value) == (
        "Retries did not follow exponential backoff (initial=0.1s, multiplier=2, max=2s).\n"
        "- attempt 2 after 0.00s (expected 0.10s +/- 0.02s)  <-- too early\n"
        "- attempt 3 after 0.00s (expected 0.20s +/- 0.02s)  <-- too early\n"
        "- attempt 4 after 0.00s (expected 0.40s +/- 0.04s)  <-- too early\n"
        "- attempt 5 after 0.00s (expected 0.80s +/- 0.08s)  <-- too early\n"
        "- attempt 6 after 0.00s (expected 1.60s +/- 0.16s)  <-- too early\n"
        "- attempt 7 after 0.00s (expected 2.00s +/- 0.20s)  <-- too early\n"
        "- attempt 8 after 0.00s (expected 2.00s +/- 0.20s)  <-- too early\n"
        "- attempt 9 after 0.00s (expected 2.00s +/- 0.20s)  <-- too early\n"
        "- attempt 10 after 0.00s (expected 2.00s +/- 0.20s)  <-- too early\n"
        "Hint: the retries do not wait at all: is there a backoff between attempts?"
    )


def test_fixed_waits_against_exponential_exact_message() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(attempts_at(0, 0.1, 0.2, 0.3, 0.4), Exponential(0.1, 2, cap=2))
    assert str(raised.value) == (
        "Retries did not follow exponential backoff (initial=0.1s, multiplier=2, max=2s).\n"
        "- attempt 2 after 0.10s (expected 0.10s +/- 0.02s)\n"
        "- attempt 3 after 0.10s (expected 0.20s +/- 0.02s)  <-- too early\n"
        "- attempt 4 after 0.10s (expected 0.40s +/- 0.04s)  <-- too early\n"
        "- attempt 5 after 0.10s (expected 0.80s +/- 0.08s)  <-- too early\n"
        "Hint: is the client using wait_fixed instead of wait_exponential?"
    )


def test_growing_waits_against_fixed_exact_message() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(attempts_at(0, 0.1, 0.3, 0.7), Fixed(0.1))
    assert str(raised.value) == (
        "Retries did not follow fixed waits of 0.1s.\n"
        "- attempt 2 after 0.10s (expected 0.10s +/- 0.02s)\n"
        "- attempt 3 after 0.20s (expected 0.10s +/- 0.02s)  <-- too late\n"
        "- attempt 4 after 0.40s (expected 0.10s +/- 0.02s)  <-- too late\n"
        "Hint: the waits grow: is the client using an exponential or incrementing wait?"
    )


def test_other_mismatches_get_the_general_hint() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(attempts_at(0, 0.5, 1.5), Incrementing(0.1, 0.1), tolerance=0.05)
    assert str(raised.value) == (
        "Retries did not follow incrementing waits (start=0.1s, increment=0.1s).\n"
        "- attempt 2 after 0.50s (expected 0.10s +/- 0.05s)  <-- too late\n"
        "- attempt 3 after 1.00s (expected 0.20s +/- 0.05s)  <-- too late\n"
        "Hint: compare the client's retry settings (initial wait, multiplier, cap, jitter)"
        " with the policy."
    )


def test_jittered_waits_are_checked_against_their_range() -> None:
    policy = Exponential.stamina(wait_initial=0.1, wait_max=5, wait_jitter=0.5)
    # Waits of 0.35, 0.55 and 0.8 s: within [0.1, 0.6], [0.2, 0.7] and [0.4, 0.9].
    assert_backoff(attempts_at(0, 0.35, 0.9, 1.7), policy)
    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(attempts_at(0, 0.35, 1.5), policy)
    assert str(raised.value) == (
        "Retries did not follow exponential backoff (initial=0.1s, multiplier=2, max=5s,"
        " jitter up to 0.5s).\n"
        "- attempt 2 after 0.35s (expected 0.10s..0.60s +/- 0.06s)\n"
        "- attempt 3 after 1.15s (expected 0.20s..0.70s +/- 0.07s)  <-- too late\n"
        "Hint: compare the client's retry settings (initial wait, multiplier, cap, jitter)"
        " with the policy."
    )


def test_wrong_number_of_attempts_exact_message() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(attempts_at(0, 0.1, 0.3), Exponential(0.1), attempts=5)
    assert str(raised.value) == (
        "Expected 5 attempts, saw 3.\n"
        "- attempt 1 at 0.00s\n"
        "- attempt 2 at 0.10s\n"
        "- attempt 3 at 0.30s\n"
        "Hint: check the retry policy's stop condition (stop_after_attempt / attempts)."
    )


def test_a_single_attempt_cannot_show_a_backoff() -> None:
    with pytest.raises(ChaosAssertionError) as raised:
        assert_backoff(attempts_at(0), Fixed(0.1))
    assert str(raised.value) == (
        "Retries could not be checked against fixed waits of 0.1s: fewer than two attempts.\n"
        "- 1 attempt(s) observed\n"
        "Hint: was the dependency really failing, and is the call retried at all?"
    )


def test_attempt_times_are_sorted_before_judging() -> None:
    assert_backoff(attempts_at(0.3, 0.0, 0.1), Exponential(0.1, 2))
