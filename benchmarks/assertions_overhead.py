#!/usr/bin/env python3
"""What recording costs: the recorders and the wire-side views of pytest-chaos's assertions.

Run from the project root with the project's virtualenv:

    .venv/bin/python benchmarks/assertions_overhead.py [--quick] [--repeat N] [--json PATH]

Each case does 10,000 events twice, interleaved and repeated, in this one process:

1. tenacity: 10,000 attempts of a retry loop with no wait (so the loop itself, not sleeping,
   is timed), inside `record_tenacity` and without it.
2. pybreaker: 10,000 guarded calls, and 10,000 state changes (open/close toggles), through a
   breaker watched by `record_pybreaker` and through one that is not.
3. wire: `wire.connections()` over 10,000 synthetic engine events (six per connection, two
   proxies), next to the one pass over the same events that `chaos.events(proxy)` already
   makes to filter them (the least any reader pays). Decoding them from JSON, as the fixture
   does when it fetches them, is shown for scale.

Reported per event, in microseconds: the baseline, the recorded run, the difference (what
recording adds) and the ratio recorded / baseline. Each figure is the median of the
repetitions; `spread` is (slowest - fastest) / median of the recorded runs, a noise hint.
Nothing here touches the network. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, also under `python -m`
import harness

EVENTS = 10_000
DEFAULT_REPEAT = 7
QUICK_REPEAT = 3


@dataclass(frozen=True)
class Case:
    """One comparison: `run(recorded)` does EVENTS events, with or without recording."""

    name: str
    baseline_label: str
    run: Callable[[bool], None]


@dataclass(frozen=True)
class Result:
    name: str
    baseline: str
    events: int
    baseline_us: float
    recorded_us: float
    overhead_us: float
    ratio: float
    spread: float
    baseline_runs_us: list[float]
    recorded_runs_us: list[float]


# ------------------------------------------------------------------------------- tenacity
def tenacity_case() -> Case:
    import tenacity

    from pytest_chaos.recorders import record_tenacity

    def no_sleep(seconds: float) -> None:
        pass

    def always_fails() -> None:
        raise ConnectionError("down")

    def run(recorded: bool) -> None:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(EVENTS),
            wait=tenacity.wait_none(),
            sleep=no_sleep,
            reraise=True,
        )
        recording = record_tenacity(retrying) if recorded else contextlib.nullcontext()
        with recording, contextlib.suppress(ConnectionError):
            retrying(always_fails)

    return Case("tenacity attempts (record_tenacity)", "the same retry loop", run)


# ------------------------------------------------------------------------------ pybreaker
def pybreaker_call_case() -> Case:
    import pybreaker

    from pytest_chaos.recorders import record_pybreaker

    def succeeds() -> int:
        return 1

    def run(recorded: bool) -> None:
        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
        recording = record_pybreaker(breaker) if recorded else contextlib.nullcontext()
        with recording:
            call = breaker.call
            for _ in range(EVENTS):
                call(succeeds)

    return Case("pybreaker calls (record_pybreaker)", "the same calls", run)


def pybreaker_state_case() -> Case:
    import pybreaker

    from pytest_chaos.recorders import record_pybreaker

    def run(recorded: bool) -> None:
        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
        recording = record_pybreaker(breaker) if recorded else contextlib.nullcontext()
        with recording:
            for _ in range(EVENTS // 2):
                breaker.open()
                breaker.close()

    return Case("pybreaker state changes (record_pybreaker)", "the same toggles", run)


# ----------------------------------------------------------------------------------- wire
def synthetic_events(count: int) -> list[dict[str, Any]]:
    """Engine events as the API returns them: per connection accepted, upstream_connected,
    data each way, the client's half-close and the close; alternating between two proxies."""
    events: list[dict[str, Any]] = []
    at = 1000.0
    conn = 0
    while len(events) < count:
        conn += 1
        proxy = "redis" if conn % 2 else "postgres"
        shapes: list[tuple[str, dict[str, Any]]] = [
            ("accepted", {"client": "127.0.0.1:50000"}),
            ("upstream_connected", {"upstream": "127.0.0.1:6379", "dial_ms": 0.1}),
            ("data", {"direction": "upstream", "bytes": 14}),
            ("data", {"direction": "downstream", "bytes": 7}),
            ("half_closed", {"side": "client"}),
            ("closed", {"by": "client", "reset": False, "duration_ms": 1.0}),
        ]
        for kind, extra in shapes:
            at += 0.0001
            event = {"seq": len(events) + 1, "time": at, "kind": kind, "proxy": proxy}
            event.update(connection=conn, **extra)
            events.append(event)
    return events[:count]


def wire_case(events: list[dict[str, Any]]) -> Case:
    from pytest_chaos.wire import connections

    def run(recorded: bool) -> None:
        if recorded:
            connections(events)
        else:
            [event for event in events if event.get("proxy") is not None]

    return Case("wire.connections() per engine event", "one filtering pass", run)


def json_decode_seconds(events: list[dict[str, Any]], repeat: int) -> float:
    payload = json.dumps(events)
    runs = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        json.loads(payload)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


# ------------------------------------------------------------------------------ measuring
def timed(run: Callable[[bool], None], recorded: bool) -> float:
    gc.collect()
    started = time.perf_counter()
    run(recorded)
    return time.perf_counter() - started


def measure(case: Case, repeat: int) -> Result:
    """Warm up both variants once, then alternate them `repeat` times so that drift on the
    machine hits both alike."""
    timed(case.run, False)
    timed(case.run, True)
    baseline_runs, recorded_runs = [], []
    for _ in range(repeat):
        baseline_runs.append(timed(case.run, False) / EVENTS * 1e6)
        recorded_runs.append(timed(case.run, True) / EVENTS * 1e6)
    baseline = statistics.median(baseline_runs)
    recorded = statistics.median(recorded_runs)
    return Result(
        name=case.name,
        baseline=case.baseline_label,
        events=EVENTS,
        baseline_us=baseline,
        recorded_us=recorded,
        overhead_us=recorded - baseline,
        ratio=recorded / baseline,
        spread=(max(recorded_runs) - min(recorded_runs)) / recorded,
        baseline_runs_us=baseline_runs,
        recorded_runs_us=recorded_runs,
    )


# -------------------------------------------------------------------------------- report
def versions() -> dict[str, str]:
    found = harness.package_versions(("tenacity", "pybreaker", "stamina", "purgatory"))
    return {"python": platform.python_version()} | {k: v for k, v in found.items() if v}


def render(results: Sequence[Result], decode_us: float, repeat: int) -> Iterator[str]:
    yield f"pytest-chaos assertions: recording overhead ({EVENTS:,} events, median of {repeat})"
    yield "  " + ", ".join(f"{name} {version}" for name, version in versions().items())
    yield ""
    header = ("case", "baseline", "base us", "rec us", "+us/event", "ratio", "spread")
    rows = [
        (
            r.name,
            r.baseline,
            f"{r.baseline_us:.2f}",
            f"{r.recorded_us:.2f}",
            f"{r.overhead_us:+.2f}",
            f"{r.ratio:.2f}x",
            f"{r.spread:.0%}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        yield "  ".join(cells).rstrip()
    yield ""
    yield (
        f"For scale: decoding the same {EVENTS:,} events from JSON costs {decode_us:.2f} us/event."
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REPEAT} repetitions")
    parser.add_argument(
        "--repeat", type=int, default=None, help=f"repetitions (default {DEFAULT_REPEAT})"
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = QUICK_REPEAT if args.quick else DEFAULT_REPEAT
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    events = synthetic_events(EVENTS)
    cases = [
        tenacity_case(),
        pybreaker_call_case(),
        pybreaker_state_case(),
        wire_case(events),
    ]
    results = []
    for case in cases:
        harness.log(f"measuring {case.name} ...")
        results.append(measure(case, args.repeat))
    decode_us = json_decode_seconds(events, args.repeat) / EVENTS * 1e6
    for line in render(results, decode_us, args.repeat):
        print(line)
    if args.json is not None:
        payload = {
            "events": EVENTS,
            "repeat": args.repeat,
            "versions": versions(),
            "machine": {"platform": platform.platform(), "processor": platform.processor()},
            "json_decode_us_per_event": decode_us,
            "results": [asdict(result) for result in results],
        }
        harness.write_json(args.json, payload)
        harness.log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
