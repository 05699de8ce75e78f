"""The golden signals of a workload in one window of time: traffic (calls, calls per second),
errors (by exception type), latency (p50, p90, p99, max) and, where the engine saw the
traffic, the proxies' own view (connections, bytes, resets). Also how they are printed: the
assertion messages, the JSON report and the HTML report all use these few formatters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_chaos.events import Accepted, Closed, Data, Event, UpstreamFailed

# The pseudo exception type of a call still running when its load stopped (never waited on).
HUNG = "hung"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call of a load: when it started (`time.monotonic()`, the clock of the engine's
    events), how long it took (seconds), and its outcome: `error` is the exception's type name,
    None for a success, or "hung" for a call still running when the load stopped (its
    `latency` is then how long it had been running). `faults` are the faults active at any
    moment of the call, as their text (`latency('api', ms=200)`)."""

    start: float
    latency: float
    error: str | None = None
    faults: tuple[str, ...] = ()

    @property
    def end(self) -> float:
        """`start` + `latency`: when the call ended (for a hung call, when it was last seen
        running)."""
        return self.start + self.latency

    @property
    def ok(self) -> bool:
        """True for a success."""
        return self.error is None

    @property
    def hung(self) -> bool:
        """True for a call still running when the load stopped."""
        return self.error == HUNG


@dataclass(frozen=True)
class ProxyStats:
    """What one proxy saw in a window: connections accepted, bytes each way (`up`: client to
    dependency), connections reset, and dials to the dependency that failed."""

    proxy: str
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    resets: int = 0
    refused: int = 0

    def __str__(self) -> str:
        return (
            f"proxy {self.proxy}: {plural(self.connections, 'connection')},"
            f" {format_bytes(self.bytes_up)} up, {format_bytes(self.bytes_down)} down,"
            f" {plural(self.resets, 'reset')}, {self.refused} refused upstream"
        )

    def to_json(self) -> dict[str, Any]:
        """The counts for the JSON report, which keys them by the proxy's name."""
        return {
            "connections": self.connections,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "resets": self.resets,
            "refused": self.refused,
        }


@dataclass(frozen=True)
class Stats:
    """The golden signals of a load in one window (`window` names it). Latencies are seconds,
    over every call in the window (failed and hung ones too: callers waited on them);
    `throughput` is the calls started per second of the window."""

    window: str
    duration: float
    count: int
    started: int
    errors: Mapping[str, int]
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None
    proxies: Mapping[str, ProxyStats] = field(default_factory=dict)
    # Why the proxies' view is missing, when it is (a plain Toxiproxy records no events).
    proxies_note: str | None = None

    @property
    def failed(self) -> int:
        """How many calls failed, hung ones included."""
        return sum(self.errors.values())

    @property
    def hung(self) -> int:
        """How many calls were still running when the load stopped."""
        return self.errors.get(HUNG, 0)

    @property
    def error_rate(self) -> float:
        """Failed calls (hung ones included) / calls; 0.0 for no call."""
        return self.failed / self.count if self.count else 0.0

    @property
    def error_rates(self) -> dict[str, float]:
        """The error rate of each exception type."""
        return {name: n / self.count for name, n in self.errors.items()} if self.count else {}

    @property
    def throughput(self) -> float:
        """Calls started per second of the window; 0.0 for a window of no time."""
        return self.started / self.duration if self.duration > 0 else 0.0

    def describe_calls(self) -> str:
        """`84 calls in 2.00s (42.0/s): p50 5.1 ms, p90 7.0 ms, p99 12 ms, max 15 ms`."""
        text = f"{plural(self.count, 'call')} in {self.duration:.2f}s ({self.throughput:.1f}/s)"
        if self.count:
            text += (
                f": p50 {format_latency(self.p50)}, p90 {format_latency(self.p90)},"
                f" p99 {format_latency(self.p99)}, max {format_latency(self.max)}"
            )
        return text

    def describe_errors(self) -> str:
        """`no errors`, or `3 errors (3.6%): ConnectionError 2, TimeoutError 1`."""
        if not self.failed:
            return "no errors"
        kinds = ", ".join(f"{name} {n}" for name, n in sorted_errors(self.errors))
        return f"{plural(self.failed, 'error')} ({format_rate(self.error_rate)}): {kinds}"

    def __str__(self) -> str:
        return f"{self.window}: {self.describe_calls()}; {self.describe_errors()}"

    def to_json(self) -> dict[str, Any]:
        """The signals for the JSON and HTML reports: times in seconds (to the microsecond),
        errors most frequent first, the proxies' view by proxy name."""
        return {
            "window": self.window,
            "duration": round(self.duration, 6),
            "count": self.count,
            "throughput": round(self.throughput, 3),
            "error_rate": round(self.error_rate, 6),
            "errors": dict(sorted_errors(self.errors)),
            "p50": _rounded(self.p50),
            "p90": _rounded(self.p90),
            "p99": _rounded(self.p99),
            "max": _rounded(self.max),
            "proxies": {name: view.to_json() for name, view in sorted(self.proxies.items())},
        }


def compute_stats(
    window: str,
    spans: Sequence[tuple[float, float]],
    calls: Sequence[CallRecord],
    started: int,
    events: Sequence[Event] | None,
    proxies: Iterable[str],
    proxies_note: str | None = None,
) -> Stats:
    """The signals of `calls` (those of the window), over `spans` (the window's time while
    the load ran), with the proxies' view from the engine `events` inside the spans."""
    latencies = sorted(call.latency for call in calls)
    errors: dict[str, int] = {}
    for call in calls:
        if call.error is not None:
            errors[call.error] = errors.get(call.error, 0) + 1
    return Stats(
        window=window,
        duration=sum(max(0.0, end - start) for start, end in spans),
        count=len(calls),
        started=started,
        errors=errors,
        p50=percentile(latencies, 0.50),
        p90=percentile(latencies, 0.90),
        p99=percentile(latencies, 0.99),
        max=latencies[-1] if latencies else None,
        proxies={} if events is None else proxy_view(events, spans, proxies),
        proxies_note=proxies_note,
    )


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values: the smallest value that at least `q` of
    them do not exceed (so p99 of 50 calls is their slowest). None for no values."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def proxy_view(
    events: Iterable[Event], spans: Sequence[tuple[float, float]], proxies: Iterable[str]
) -> dict[str, ProxyStats]:
    """Per proxy: what it saw inside the spans (an event counts where it happened; bytes by
    the time their first byte arrived)."""
    counts: dict[str, dict[str, int]] = {name: {} for name in proxies}
    for event in events:
        if event.proxy is None or event.proxy not in counts:
            continue
        if not any(start <= event.time <= end for start, end in spans):
            continue
        seen = counts[event.proxy]
        if isinstance(event, Accepted):
            seen["connections"] = seen.get("connections", 0) + 1
        elif isinstance(event, Data):
            key = "bytes_up" if event.direction == "upstream" else "bytes_down"
            seen[key] = seen.get(key, 0) + event.bytes
        elif isinstance(event, Closed) and event.reset:
            seen["resets"] = seen.get("resets", 0) + 1
        elif isinstance(event, UpstreamFailed):
            seen["refused"] = seen.get("refused", 0) + 1
    return {name: ProxyStats(name, **seen) for name, seen in counts.items()}


def busy_proxies(events: Iterable[Event], start: float, end: float) -> list[str]:
    """The proxies that accepted a connection or carried data between `start` and `end`."""
    found = {
        event.proxy
        for event in events
        if isinstance(event, Accepted | Data) and event.proxy and start <= event.time <= end
    }
    return sorted(name for name in found if name is not None)


def sorted_errors(errors: Mapping[str, int]) -> list[tuple[str, int]]:
    """Most frequent first, then by name."""
    return sorted(errors.items(), key=lambda item: (-item[1], item[0]))


# ------------------------------------------------------------------------------ formatting
def format_latency(seconds: float | None) -> str:
    """`0.42 ms`, `5.1 ms`, `412 ms`, `2.35 s`; `-` for none."""
    if seconds is None:
        return "-"
    ms = seconds * 1000
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.2f} s"


def format_rate(fraction: float) -> str:
    """`0.0%`, `2.4%`, `100.0%`."""
    return f"{fraction * 100:.1f}%"


def format_bytes(count: int) -> str:
    """`512 B`, `12.3 KB`, `4.5 MB` (1 KB = 1000 bytes, as the bandwidth fault's unit)."""
    if count < 1000:
        return f"{count} B"
    if count < 1_000_000:
        return f"{count / 1000:.1f} KB"
    return f"{count / 1_000_000:.1f} MB"


def plural(count: int, noun: str) -> str:
    """`1 call`, `2 calls`: the count and the noun, with an s unless the count is 1."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)
