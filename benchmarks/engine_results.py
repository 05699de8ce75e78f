"""The figures of engine_bench.py: what is measured (metrics, goals) and the results of one
run, with the medians and ratios the report is made of."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine_workloads import Extras
from harness import log, quantile

LATENCY_MS = 20.0  # the latency toxic whose accuracy is measured
# Connection-rate runs use a handful of concurrent clients: one client would
# measure connect() latency rather than how fast the proxy can accept.
CONN_CLIENTS = 10
LOAD_CLIENTS = 50  # clients loading the proxy while the latency probe measures through it
MAX_FAILURES = 2  # failed runs after which a metric is given up for a target
# A ratio whose runs spread wider than +/-20% (target's or direct's) is flagged
# noisy: on 2 CPUs rates are bimodal (same CPU or not) and a median can flip.
NOISY_SPREAD = 0.4
TOXIC_SUFFIX = "+toxic"  # the target of a proxy server whose proxies carry the do-nothing toxics


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str


METRICS = (
    Metric("tput_up", "throughput client->server", "Gbit/s"),
    Metric("tput_down", "throughput server->client (-R)", "Gbit/s"),
    Metric("rr_1", "round trips, 1 client", "req/s"),
    Metric("rr_50", "round trips, 50 clients", "req/s"),
    Metric("conn", f"new connections ({CONN_CLIENTS} clients)", "conn/s"),
)
# (metric key, concurrent clients, keep-alive) for the redis-benchmark metrics.
REDIS_RUNS = (("rr_1", 1, True), ("rr_50", 50, True), ("conn", CONN_CLIENTS, False))


@dataclass(frozen=True)
class Goal:
    key: str
    label: str
    kind: str  # "ratio": at least limit x direct; "ms": |error| at most limit
    limit: float


GOALS = (
    Goal("tput_up", "throughput client->server", "ratio", 0.5),
    Goal("tput_down", "throughput server->client", "ratio", 0.5),
    Goal("rr_50", "round trips, 50 clients", "ratio", 0.5),
    Goal("rr_1", "round trips, 1 client", "ratio", 0.4),
    Goal("conn", "new connections", "ratio", 0.25),
    Goal("err_p50", "latency toxic error p50", "ms", 1.0),
    Goal("err_p99", "latency toxic error p99", "ms", 2.0),
)


@dataclass
class Results:
    runs: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    abandoned: set[tuple[str, str]] = field(default_factory=set)
    latency: dict[str, LatencyResult] = field(default_factory=dict)
    latency_skipped: dict[str, str] = field(default_factory=dict)
    # The latency toxic again, with LOAD_CLIENTS loading the same proxy (by target name).
    loaded: dict[str, LatencyResult] = field(default_factory=dict)
    loaded_skipped: dict[str, str] = field(default_factory=dict)
    idle_base: dict[str, list[float]] = field(default_factory=dict)  # RTTs without a toxic
    # Proxy CPU per unit of work: us per request (redis), s per GB (iperf3), per run.
    cpu: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    requests: dict[str, dict[str, int]] = field(default_factory=dict)  # per redis-benchmark run
    extras: Extras = field(default_factory=Extras)

    def add(self, target: str, metric: str, value: float) -> None:
        self.runs.setdefault(target, {}).setdefault(metric, []).append(value)

    def add_cpu(self, target: str, metric: str, value: float) -> None:
        self.cpu.setdefault(target, {}).setdefault(metric, []).append(value)

    def cpu_median(self, target: str, metric: str) -> float | None:
        values = self.cpu.get(target, {}).get(metric)
        return statistics.median(values) if values else None

    def fail(self, target: str, metric: str, message: str, *, final: bool = False) -> None:
        """Record a failed run. One failure is tolerated (a stray signal, a hiccup);
        a second one, or a final one (target down), abandons the metric so a broken
        proxy does not cost every remaining repetition its full timeout."""
        errors = self.errors.setdefault(target, {}).setdefault(metric, [])
        errors.append(message)
        if final or len(errors) >= MAX_FAILURES:
            self.abandoned.add((target, metric))
        log(f"  {target} {metric}: FAILED: {message}")

    def failed(self, target: str, metric: str) -> bool:
        """True once the metric has been given up for this target."""
        return (target, metric) in self.abandoned

    def failures(self, target: str, metric: str) -> list[str]:
        return self.errors.get(target, {}).get(metric, [])

    def median(self, target: str, metric: str) -> float | None:
        values = self.runs.get(target, {}).get(metric)
        return statistics.median(values) if values else None

    def spread(self, target: str, metric: str) -> float | None:
        """(max - min) / median of the repetitions: a rough noise indicator."""
        values = self.runs.get(target, {}).get(metric, [])
        middle = self.median(target, metric)
        if len(values) < 2 or not middle:
            return None
        return (max(values) - min(values)) / middle

    def ratio(self, target: str, metric: str, base: str = "direct") -> float | None:
        """The target's median over the base's (direct, by default), from the same run."""
        value, reference = self.median(target, metric), self.median(base, metric)
        if value is None or not reference:
            return None
        return value / reference


@dataclass
class LatencyResult:
    base_p50: float  # RTT without a toxic, ms
    base_p99: float
    toxic_p50: float | None  # RTT with the toxic, ms (None for the noise floor)
    err_p50: float  # error = rtt - toxic latency - median base RTT, ms
    err_p99: float
    err_p90: float  # JSON only: with p99 and max, tells a few outliers from a shift
    err_max: float
    samples: int
    proxy_cpu: float | None = None  # under load: the proxy's CPU, as a share of one CPU

    @classmethod
    def of(cls, base: Sequence[float], toxic: Sequence[float] | None) -> LatencyResult:
        """From RTTs without the toxic and with it; without `toxic`, the noise floor: the
        spread of the base RTTs themselves around their median."""
        base_median = statistics.median(base)
        observed, latency = (base, 0.0) if toxic is None else (toxic, LATENCY_MS)
        errors = [rtt - latency - base_median for rtt in observed]
        return cls(
            base_p50=base_median,
            base_p99=quantile(base, 0.99),
            toxic_p50=None if toxic is None else statistics.median(toxic),
            err_p50=quantile(errors, 0.50),
            err_p99=quantile(errors, 0.99),
            err_p90=quantile(errors, 0.90),
            err_max=max(errors),
            samples=len(observed),
        )
