"""Prometheus metrics (`GET /metrics`), computed from the proxies when scraped.

Nothing is counted twice on the hot path: closed connections add to each proxy's totals, live
ones are read from their links at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from pytest_chaos.engine.collection import ProxyCollection

PREFIX = "toxiproxy_chaos"


class ProxyMetrics(Collector):
    def __init__(self, collection: ProxyCollection) -> None:
        self.collection = collection

    def collect(self) -> Iterator[Metric]:
        connections = CounterMetricFamily(
            f"{PREFIX}_connections", "Client connections accepted.", labels=["proxy"]
        )
        failures = CounterMetricFamily(
            f"{PREFIX}_upstream_failures",
            "Client connections whose upstream dial failed.",
            labels=["proxy"],
        )
        received = CounterMetricFamily(
            f"{PREFIX}_received_bytes",
            "Bytes read by the proxy, by direction (upstream = client to server).",
            labels=["proxy", "direction"],
        )
        active = GaugeMetricFamily(
            f"{PREFIX}_active_connections", "Connections open now.", labels=["proxy"]
        )
        toxics = GaugeMetricFamily(f"{PREFIX}_toxics", "Toxics configured.", labels=["proxy"])
        enabled = GaugeMetricFamily(
            f"{PREFIX}_enabled", "1 when the proxy listens.", labels=["proxy"]
        )
        for name, proxy in self.collection.proxies.items():
            connections.add_metric([name], proxy.totals["connections"])
            failures.add_metric([name], proxy.totals["upstream_failures"])
            for direction in ("upstream", "downstream"):
                live = sum(
                    c.links[direction].bytes_in for c in proxy.connections if direction in c.links
                )
                received.add_metric([name, direction], proxy.totals[direction] + live)
            active.add_metric([name], len(proxy.connections))
            toxics.add_metric([name], len(proxy.toxics))
            enabled.add_metric([name], 1 if proxy.enabled else 0)
        yield from (connections, failures, received, active, toxics, enabled)


def render_metrics(collection: ProxyCollection) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyMetrics(collection))
    return generate_latest(registry), CONTENT_TYPE_LATEST
