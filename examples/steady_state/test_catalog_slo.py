"""The catalog under load through a slow cache and a cache outage: its SLO (p99 and error
rate) must hold before, during and after each fault, and it must be back to its baseline
within a second of the last fault's end. Run with `--chaos-html report.html` to see it."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable

import httpx
import pytest

from pytest_chaos.assertions import ChaosAssertionError, assert_recovers, assert_steady_state

SLO_P99 = 0.4  # seconds


def product_reader(client: httpx.Client) -> Callable[[], None]:
    """One request per call, over 50 products (so the cache fills and then serves)."""
    products = itertools.cycle(range(1, 51))

    def read() -> None:
        client.get(f"/products/{next(products)}").raise_for_status()

    return read


def test_the_catalog_holds_its_slo_through_a_slow_cache_and_an_outage(chaos, catalog):
    with chaos.load(product_reader(catalog), concurrency=4, rate=200) as load:
        time.sleep(0.5)  # the baseline
        with chaos.latency("redis", 500) as slow:  # every reply from Redis 500 ms late
            time.sleep(0.6)
        time.sleep(0.3)
        with chaos.dependency_down("redis") as outage:  # Redis refuses connections
            time.sleep(0.6)
        time.sleep(0.6)  # the recovery
    # The SLO, faults or not: p99 under 400 ms (a slow or absent cache costs a cache timeout or
    # two, 50 ms each, plus the pricing service, 10 ms: the rest is room for a busy machine),
    # and at most 1% of requests failed (none without a fault).
    assert_steady_state(load, p99=SLO_P99, error_rate=0.0, during="before")
    assert_steady_state(load, p99=SLO_P99, error_rate=0.01, during=[slow, outage])
    assert_steady_state(load, p99=SLO_P99, error_rate=0.0, during="after")
    assert_recovers(load, within=1.0)
    # The cache really was in the way: the proxy saw the catalog's traffic in each window.
    assert load.stats(slow).p50 >= 0.05
    assert load.stats("before").proxies["redis"].bytes_up > 0


def test_a_catalog_without_a_cache_timeout_breaks_its_slo_when_the_cache_is_slow(
    chaos, fragile_catalog
):
    with chaos.load(product_reader(fragile_catalog), concurrency=4, rate=200) as load:
        time.sleep(0.3)
        with chaos.latency("redis", 500) as slow:
            time.sleep(0.6)
    with pytest.raises(ChaosAssertionError) as raised:
        assert_steady_state(load, p99=SLO_P99, error_rate=0.01, during=slow)
    # The whole message, measured figures aside.
    expected = "\n".join(
        [
            "The steady state did not hold during latency('redis', ms=500).",
            "- p99 <ms> (at most 400 ms)  <-- over",
            "- error rate 0.0% (at most 1.0%)",
            "- <n> calls in <s> (<rate>): p50 <ms>, p90 <ms>, p99 <ms>, max <ms>",
            "- no errors",
            "- proxy redis: <text>",
            "Hint: the fault's delay reached the callers: does each call have a timeout shorter"
            " than the SLO, and a fallback (a cache, a default) when it expires?",
        ]
    )
    assert re.fullmatch(_pattern(expected), str(raised.value)), str(raised.value)


def _pattern(text: str) -> str:
    pattern = re.escape(text)
    for placeholder, regex in {
        "<ms>": r"\d+(\.\d+)? m?s",
        "<n>": r"\d+",
        "<s>": r"\d+\.\d\ds",
        "<rate>": r"\d+\.\d/s",
        "<text>": r".+",
    }.items():
        pattern = pattern.replace(re.escape(placeholder), regex)
    return pattern
