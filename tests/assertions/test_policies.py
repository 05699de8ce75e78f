"""Each policy constructor named after a library promises the waits that library computes.

Compared with the libraries' own objects where they have one (tenacity's wait strategies,
redis-py's backoff classes, stamina's retry loop run for real), and with the formula the
library documents. Jitter is pinned to each end of its range by replacing `random`'s draw, so
the bounds are compared exactly rather than sampled.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import stamina
import tenacity
from redis import backoff as redis_backoff

from pytest_chaos.policies import Exponential, Fixed, Incrementing
from pytest_chaos.recorders import record_stamina

RETRIES = range(1, 13)


def tenacity_wait(strategy: Callable[[tenacity.RetryCallState], float], retry: int) -> float:
    """What tenacity sleeps after attempt number `retry` (the `retry`-th retry follows it)."""
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = retry
    return strategy(state)


@pytest.fixture
def jitter_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """`jitter_at("low")` / `("high")`: every uniform draw returns the end of its range
    (tenacity, stamina and redis-py all draw through the `random` module)."""

    def pin(end: str) -> None:
        monkeypatch.setattr(random, "uniform", lambda a, b: a if end == "low" else b)
        monkeypatch.setattr(random, "random", lambda: 0.0 if end == "low" else 1.0)

    return pin


# ------------------------------------------------------------------------------- tenacity
@pytest.mark.parametrize(
    ("multiplier", "maximum", "exp_base", "minimum"),
    [(1, None, 2, 0), (0.1, None, 2, 0), (0.5, 4, 2, 0), (0.05, 2, 3, 0), (0.1, 5, 2, 0.5)],
)
def test_tenacity_exponential_matches_wait_exponential(
    multiplier: float, maximum: float | None, exp_base: float, minimum: float
) -> None:
    options = {"max": maximum} if maximum is not None else {}
    strategy = tenacity.wait_exponential(
        multiplier=multiplier, exp_base=exp_base, min=minimum, **options
    )
    policy = Exponential.tenacity(
        multiplier=multiplier, max=maximum, exp_base=exp_base, min=minimum
    )
    for retry in RETRIES:
        wait = tenacity_wait(strategy, retry)
        assert policy.bounds(retry) == pytest.approx((wait, wait)), retry


@pytest.mark.parametrize(
    ("multiplier", "maximum", "jitter", "minimum"),
    [(1, None, 1, 0), (0.1, 3, 0.5, 0), (0.2, 1, 0.3, 0.25)],
)
@pytest.mark.parametrize("end", ["low", "high"])
def test_tenacity_jitter_matches_wait_exponential_jitter(
    jitter_at: Callable[[str], None],
    end: str,
    multiplier: float,
    maximum: float | None,
    jitter: float,
    minimum: float,
) -> None:
    options = {"max": maximum} if maximum is not None else {}
    strategy = tenacity.wait_exponential_jitter(
        multiplier=multiplier, jitter=jitter, min=minimum, **options
    )
    policy = Exponential.tenacity_jitter(
        multiplier=multiplier, max=maximum, jitter=jitter, min=minimum
    )
    jitter_at(end)
    side = 0 if end == "low" else 1
    for retry in RETRIES:
        assert policy.bounds(retry)[side] == pytest.approx(tenacity_wait(strategy, retry)), retry


def test_tenacity_jitter_takes_initial_or_multiplier_not_both() -> None:
    # tenacity 9.2 renamed `initial` to `multiplier`; older code still says `initial`.
    assert Exponential.tenacity_jitter(initial=0.5) == Exponential.tenacity_jitter(multiplier=0.5)
    with pytest.raises(ValueError, match="give initial or multiplier, not both"):
        Exponential.tenacity_jitter(initial=0.5, multiplier=0.5)


def test_fixed_matches_wait_fixed() -> None:
    for retry in RETRIES:
        assert Fixed(0.3).bounds(retry) == (tenacity_wait(tenacity.wait_fixed(0.3), retry),) * 2


@pytest.mark.parametrize(("start", "increment", "maximum"), [(0, 0.1, None), (0.5, 0.25, 1.5)])
def test_incrementing_matches_wait_incrementing(
    start: float, increment: float, maximum: float | None
) -> None:
    options = {"max": maximum} if maximum is not None else {}
    strategy = tenacity.wait_incrementing(start=start, increment=increment, **options)
    policy = Incrementing(start, increment, maximum)
    for retry in RETRIES:
        wait = tenacity_wait(strategy, retry)
        assert policy.bounds(retry) == pytest.approx((wait, wait)), retry


# -------------------------------------------------------------------------------- redis-py
@pytest.mark.parametrize(("cap", "base"), [(0.512, 0.008), (1.0, 0.05), (10.0, 0.001)])
def test_redis_matches_exponential_backoff(cap: float, base: float) -> None:
    backoff = redis_backoff.ExponentialBackoff(cap=cap, base=base)
    policy = Exponential.redis(cap=cap, base=base)
    for failures in RETRIES:
        wait = backoff.compute(failures)
        assert policy.bounds(failures) == pytest.approx((wait, wait)), failures


@pytest.mark.parametrize(
    ("backoff_class", "jitter"),
    [
        (redis_backoff.FullJitterBackoff, True),
        (redis_backoff.FullJitterBackoff, "full"),
        (redis_backoff.ExponentialWithJitterBackoff, "full"),
        (redis_backoff.EqualJitterBackoff, "equal"),
    ],
)
@pytest.mark.parametrize("end", ["low", "high"])
def test_redis_jitter_matches_the_jittered_backoffs(
    jitter_at: Callable[[str], None],
    end: str,
    backoff_class: type[redis_backoff.AbstractBackoff],
    jitter: bool | str,
) -> None:
    backoff = backoff_class(cap=1.0, base=0.01)  # type: ignore[call-arg]
    policy = Exponential.redis(cap=1.0, base=0.01, jitter=jitter)
    jitter_at(end)
    side = 0 if end == "low" else 1
    for failures in RETRIES:
        assert policy.bounds(failures)[side] == pytest.approx(backoff.compute(failures))


def test_redis_constant_backoff_is_fixed() -> None:
    backoff = redis_backoff.ConstantBackoff(0.25)
    for failures in RETRIES:
        assert Fixed(0.25).bounds(failures) == (backoff.compute(failures),) * 2


def test_redis_refuses_an_unknown_jitter() -> None:
    with pytest.raises(
        ValueError, match=r"jitter must be True, False, 'full' or 'equal', got 'half'"
    ):
        Exponential.redis(jitter="half")


# --------------------------------------------------------------------------------- stamina
def stamina_documented_wait(
    retry: int, initial: float, maximum: float, jitter: float, exp_base: float
) -> float:
    """stamina's documentation: min(wait_max, wait_initial * wait_exp_base ** (retry - 1)
    + random.uniform(0, wait_jitter))."""
    return min(maximum, initial * exp_base ** (retry - 1) + random.uniform(0, jitter))


@pytest.mark.parametrize(
    ("initial", "maximum", "jitter", "exp_base"),
    [(0.1, 5.0, 1.0, 2), (0.01, 0.5, 0.05, 3), (1.0, 2.0, 0.0, 2)],
)
@pytest.mark.parametrize("end", ["low", "high"])
def test_stamina_matches_its_documented_formula(
    jitter_at: Callable[[str], None],
    end: str,
    initial: float,
    maximum: float,
    jitter: float,
    exp_base: float,
) -> None:
    policy = Exponential.stamina(initial, maximum, jitter, exp_base)
    jitter_at(end)
    side = 0 if end == "low" else 1
    for retry in RETRIES:
        documented = stamina_documented_wait(retry, initial, maximum, jitter, exp_base)
        assert policy.bounds(retry)[side] == pytest.approx(documented), retry


@pytest.mark.usefixtures("stamina_active")
@pytest.mark.parametrize("end", ["low", "high"])
def test_stamina_retry_loop_waits_what_the_policy_says(
    jitter_at: Callable[[str], None], end: str
) -> None:
    """stamina's own loop, run for real with tiny waits: the waits it announces (and sleeps)
    are the policy's bounds."""
    options = {"wait_initial": 0.001, "wait_max": 0.012, "wait_jitter": 0.002, "wait_exp_base": 2}

    @stamina.retry(on=ValueError, attempts=6, **options)
    def always_fails() -> None:
        raise ValueError("down")

    jitter_at(end)
    with record_stamina() as attempts, pytest.raises(ValueError, match="down"):
        always_fails()
    policy = Exponential.stamina(**options)
    side = 0 if end == "low" else 1
    expected = [policy.bounds(retry)[side] for retry in range(1, 6)]
    assert attempts.planned_waits() == pytest.approx(expected)


# ------------------------------------------------------------------------- the policies
def test_exponential_bounds_without_jitter_are_one_point() -> None:
    policy = Exponential(0.1, 2, cap=0.5)
    assert [policy.bounds(n) for n in (1, 2, 3, 4)] == [
        (0.1, 0.1),
        (0.2, 0.2),
        (0.4, 0.4),
        (0.5, 0.5),
    ]


def test_exponential_survives_a_huge_retry_number() -> None:
    assert Exponential(1.0, 2.0, cap=3.0).bounds(5000) == (3.0, 3.0)
    assert Exponential(1.0, 2.0).bounds(5000) == (math.inf, math.inf)


def test_policies_describe_themselves() -> None:
    assert str(Exponential.tenacity(multiplier=0.1, max=2)) == (
        "exponential backoff (initial=0.1s, multiplier=2, max=2s)"
    )
    assert str(Exponential.tenacity(multiplier=0.1, min=0.5)) == (
        "exponential backoff (initial=0.1s, multiplier=2, min=0.5s)"
    )
    assert str(Exponential.stamina()) == (
        "exponential backoff (initial=0.1s, multiplier=2, max=5s, jitter up to 1s)"
    )
    assert str(Exponential.redis(jitter=True)) == (
        "exponential backoff (initial=0.016s, multiplier=2, max=0.512s, full jitter)"
    )
    assert str(Exponential.redis(jitter="equal")) == (
        "exponential backoff (initial=0.016s, multiplier=2, max=0.512s, equal jitter)"
    )
    assert str(Fixed(0.25)) == "fixed waits of 0.25s"
    assert str(Incrementing(0.5, 0.25, 1.5)) == (
        "incrementing waits (start=0.5s, increment=0.25s, max=1.5s)"
    )


def test_exponential_refuses_an_unknown_jitter() -> None:
    with pytest.raises(
        ValueError, match="jitter must be one of none, full, equal, additive, got 'some'"
    ):
        Exponential(0.1, jitter="some")
