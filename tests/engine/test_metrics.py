"""`/metrics` with upstream's flags: `-proxy-metrics` adds upstream's byte counters, with its
names, help texts and labels; `-runtime-metrics` adds the process's metrics."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pytest_chaos.engine import EngineThread
from tests.engine.api_helpers import connect, create_proxy, exchange, wait_until
from tests.engine.served import serve

UPSTREAM_FAMILIES = ("toxiproxy_proxy_received_bytes", "toxiproxy_proxy_sent_bytes")


@pytest.fixture
def metered() -> Iterator[httpx.Client]:
    running = EngineThread(seed=1, proxy_metrics=True)
    running.start()
    with httpx.Client(base_url=running.engine.url, timeout=10) as client:
        yield client
    running.stop()


def scrape(api: httpx.Client) -> dict[str, list[Sample]]:
    response = api.get("/metrics")
    assert response.status_code == 200
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def byte_counts(api: httpx.Client) -> dict[tuple[str, str, str, str, str], float]:
    """(family, direction, listener, proxy, upstream) -> value, for upstream's counters."""
    families = scrape(api)
    return {
        (
            name,
            sample.labels["direction"],
            sample.labels["listener"],
            sample.labels["proxy"],
            sample.labels["upstream"],
        ): sample.value
        for name in UPSTREAM_FAMILIES
        for sample in families.get(name, [])
    }


def test_upstream_byte_counters_follow_real_traffic(metered: httpx.Client, echo: str) -> None:
    proxy = create_proxy(metered, "p", echo)
    listen = proxy["listen"]
    assert byte_counts(metered) == {}  # a label set appears with the first connection

    with connect(listen) as sock:
        assert exchange(sock, b"x" * 1000) == b"x" * 1000
    with connect(listen) as live:
        assert exchange(live, b"y" * 24) == b"y" * 24

        expected = {
            ("toxiproxy_proxy_received_bytes", "upstream", listen, "p", echo): 1024,
            ("toxiproxy_proxy_received_bytes", "downstream", listen, "p", echo): 1024,
            ("toxiproxy_proxy_sent_bytes", "upstream", listen, "p", echo): 1024,
            ("toxiproxy_proxy_sent_bytes", "downstream", listen, "p", echo): 1024,
        }
        wait_until(lambda: byte_counts(metered) == expected, failure=str(byte_counts(metered)))

    text = metered.get("/metrics").text
    for name in UPSTREAM_FAMILIES:
        # Upstream registers them without help texts.
        assert f"# HELP {name}_total \n# TYPE {name}_total counter\n" in text
    assert (
        f'toxiproxy_proxy_sent_bytes_total{{direction="downstream",listener="{listen}",'
        f'proxy="p",upstream="{echo}"}} 1024.0\n'
    ) in text


def test_upstream_counters_keep_their_labels_and_outlive_the_proxy(
    metered: httpx.Client, echo: str
) -> None:
    old = create_proxy(metered, "p", echo)["listen"]
    with connect(old) as sock:
        exchange(sock, b"a" * 10)
    moved = metered.patch("/proxies/p", json={"listen": "127.0.0.1:0"}).json()["listen"]
    with connect(moved) as sock:
        exchange(sock, b"b" * 5)
    wait_until(lambda: len(byte_counts(metered)) == 8)
    assert metered.delete("/proxies/p").status_code == 204

    counts = byte_counts(metered)

    assert counts[("toxiproxy_proxy_received_bytes", "upstream", old, "p", echo)] == 10
    assert counts[("toxiproxy_proxy_received_bytes", "upstream", moved, "p", echo)] == 5


def test_upstream_counters_only_with_the_flag(api: httpx.Client, echo: str) -> None:
    proxy = create_proxy(api, "p", echo)
    with connect(proxy["listen"]) as sock:
        exchange(sock, b"z")

    families = scrape(api)

    assert not set(UPSTREAM_FAMILIES) & set(families)
    assert "toxiproxy_chaos_received_bytes" in families
    assert "process_cpu_seconds" not in families


def test_the_server_flags_turn_the_metrics_on(echo: str) -> None:
    with serve("-port", "0", "-proxy-metrics", "-runtime-metrics") as served:
        api = httpx.Client(base_url=served.url, timeout=10)
        proxy = create_proxy(api, "p", echo)
        with connect(proxy["listen"]) as sock:
            exchange(sock, b"q" * 7)

        def counted() -> bool:
            counts = byte_counts(api)
            key = ("toxiproxy_proxy_sent_bytes", "downstream", proxy["listen"], "p", echo)
            return counts.get(key) == 7

        wait_until(counted)
        families = scrape(api)
        api.close()

    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= set(families)
    assert "toxiproxy_chaos_connections" in families
