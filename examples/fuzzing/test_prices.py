"""Fault fuzzing finds the bug that a fixed set of faults misses.

The single-fault tests below all pass against `FragilePriceService`: each fault on its own is
handled. The property-based test draws up to one fault per dependency and applies them
together; Hypothesis finds the pair that breaks the fragile fallback and shrinks it to the
weakest two faults that still do.
"""

from __future__ import annotations

import pytest
import redis
from catalogue import CENTS, SKU
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from prices import FragilePriceService, PriceService, Settings, lookup

from pytest_chaos.chaos import Chaos
from pytest_chaos.faults import Fault
from pytest_chaos.strategies import (
    bandwidths,
    dependency_downs,
    latencies,
    limit_datas,
    resets,
    slicers,
    stalls,
)

EITHER = ["redis", "postgres"]
# One fault on either dependency. The slow ones stay well inside the service's deadlines (the
# property is about answers, not time): at most 50 ms of latency, at least 10 KB/s, slices at
# most 100 us apart. Everything else breaks, hangs or cuts connections.
ONE_FAULT = st.one_of(
    latencies(EITHER, max_value=50),
    slicers(EITHER, max_delay=100),
    bandwidths(EITHER, min_value=10),
    limit_datas(EITHER),
    resets(EITHER),
    stalls(EITHER),
    dependency_downs(EITHER),
)
# Up to one fault on each dependency, applied together.
FAULT_PAIRS = st.lists(ONE_FAULT, max_size=2, unique_by=lambda fault: fault.target)


def a_price_is_answered(service: PriceService, chaos: Chaos, chosen: list[Fault]) -> None:
    """The property: whatever the faults, a price is answered, never an exception, and it is
    the right one or honestly unknown."""
    with chaos.apply(chosen):
        price = lookup(service, SKU)
    assert price.cents in (CENTS, None)


# Each fault on its own is handled, even by the fragile service.
@pytest.mark.dependency_down("postgres")
def test_the_last_known_price_when_the_database_is_down(shop: Settings) -> None:
    assert lookup(FragilePriceService(shop), SKU).source == "last known"


@pytest.mark.stall("postgres")
def test_the_last_known_price_when_the_database_hangs(shop: Settings) -> None:
    assert lookup(FragilePriceService(shop), SKU).source == "last known"


@pytest.mark.dependency_down("redis")
def test_the_database_price_when_the_cache_is_down(shop: Settings) -> None:
    assert lookup(FragilePriceService(shop), SKU).source == "database"


@pytest.mark.latency("postgres", 1000)
@pytest.mark.latency("redis", 500)
def test_unavailable_when_both_are_slow(shop: Settings) -> None:
    assert lookup(FragilePriceService(shop), SKU).source == "unavailable"


# The property, on the service as it should be: no settings needed.
@given(chosen=FAULT_PAIRS)
def test_a_price_is_always_answered(chaos: Chaos, shop: Settings, chosen: list[Fault]) -> None:
    a_price_is_answered(PriceService(shop), chaos, chosen)


# The same property on the fragile service: the same examples on every run (derandomized),
# and the first failure shrunk (no explain phase). No deadline: a @given function defined
# inside a test is not one pytest collected, so the plugin's default does not reach it.
SEARCH = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    report_multiple_bugs=False,
    phases=[Phase.generate, Phase.shrink],
)


def find_the_fallback_bug(chaos: Chaos, shop: Settings) -> tuple[BaseException, list[Fault]]:
    """Hypothesis's failure on the fragile service, and the faults of its shrunk example."""

    @SEARCH
    @given(chosen=FAULT_PAIRS)
    def fragile_price_is_always_answered(chosen: list[Fault]) -> None:
        a_price_is_answered(FragilePriceService(shop), chaos, chosen)

    with pytest.raises(redis.ConnectionError) as failure:
        fragile_price_is_always_answered()
    # The record of `chaos` is of the last example Hypothesis ran: the shrunk one.
    return failure.value, [applied.fault for applied in chaos.applied]


def test_fuzzing_finds_what_single_faults_missed(chaos: Chaos, shop: Settings) -> None:
    error, shrunk = find_the_fallback_bug(chaos, shop)
    print("\n".join(error.__notes__))
    assert sorted(fault.target for fault in shrunk) == ["postgres", "redis"]
