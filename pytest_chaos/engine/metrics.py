"""Prometheus metrics (`GET /metrics`), computed from the proxies when scraped.

Nothing is counted twice on the hot path: closed connections add to totals, live ones are
read from their links at scrape time.

Always served (the engine's own, `toxiproxy_chaos_*`): connections, upstream failures, bytes
received per direction, active connections, toxics and enabled state, labelled by proxy.

With `-proxy-metrics`, upstream's two counters too, with upstream's names, empty help texts
and labels (see its METRICS.md):

- `toxiproxy_proxy_received_bytes_total`: bytes read by the proxy, from the client for
  `direction="upstream"`, from the server for `direction="downstream"`;
- `toxiproxy_proxy_sent_bytes_total`: bytes written, to the server for `upstream`, to the client
  for `downstream`;

labelled `direction`, `listener` (the proxy's listen address when the connection started),
`proxy` (its name) and `upstream` (its upstream address then). Upstream adds a link's bytes
when the link ends; here live links count too, so a scrape during a long transfer sees it. A
label set appears once a connection has carried a link, and stays after its proxy is deleted.

With `-runtime-metrics`, the process's own metrics, as upstream serves Go's: `process_*` (CPU,
memory, file descriptors, start time) and Python's counterparts of `go_*`: `python_info` and
`python_gc_*`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from pytest_chaos.engine.collection import ProxyCollection

PREFIX = "toxiproxy_chaos"
UPSTREAM_LABELS = ["direction", "listener", "proxy", "upstream"]
# Upstream's media type: the text format 0.0.4, which is what `generate_latest` writes for
# these names (prometheus_client's own CONTENT_TYPE_LATEST says 1.0.0 in newer releases).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ProxyMetrics(Collector):
    """The engine's own metrics, per proxy."""

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


class UpstreamProxyMetrics(Collector):
    """Upstream Toxiproxy's `-proxy-metrics` counters, with its names and labels."""

    def __init__(self, collection: ProxyCollection) -> None:
        self.collection = collection

    def collect(self) -> Iterator[Metric]:
        counts = {labels: list(values) for labels, values in self.collection.link_totals.items()}
        for proxy in self.collection.proxies.values():
            for connection in proxy.connections:
                for link in connection.links.values():
                    values = counts.setdefault(link.metric_labels, [0, 0])
                    values[0] += link.bytes_in
                    values[1] += link.bytes_out
        received = CounterMetricFamily("toxiproxy_proxy_received_bytes", "", labels=UPSTREAM_LABELS)
        sent = CounterMetricFamily("toxiproxy_proxy_sent_bytes", "", labels=UPSTREAM_LABELS)
        for labels, (received_bytes, sent_bytes) in sorted(counts.items()):
            received.add_metric(list(labels), received_bytes)
            sent.add_metric(list(labels), sent_bytes)
        yield from (received, sent)


def render_metrics(
    collection: ProxyCollection, *, proxy_metrics: bool = False, runtime_metrics: bool = False
) -> tuple[bytes, str]:
    """The `/metrics` body and its content type, collected now from the proxies' counters."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyMetrics(collection))
    if proxy_metrics:
        registry.register(UpstreamProxyMetrics(collection))
    if runtime_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return generate_latest(registry), CONTENT_TYPE
