#!/usr/bin/env python3
"""What a load costs and how right it is: chaos.load's throughput and overhead, the latency it
reports through a latency toxic, and the HTML report's generation time.

Run from the project root with the project's virtualenv:

    .venv/bin/python benchmarks/load_bench.py [--quick] [--json PATH]

1. Throughput on a trivial call (a function that returns at once), in this process: the calls
   per second a bare loop makes (the baseline), then `Load` on 1 and 4 threads and on 1 and 4
   asyncio tasks. The overhead per recorded call is 1/load rate - 1/bare rate (one worker).
   Also: what reading the signals of 100,000 calls costs (`stats()` per window, `to_json`).
2. Accuracy: a generated pytest run (the embedded engine in its own process, as in any run)
   makes round trips to an echo server through a proxy with `chaos.load`, first without a
   fault, then under a 20 ms `latency` toxic. Error = p50 under the toxic - p50 without it
   - 20 ms, as `load.stats()` reports them; the median of the runs, and each run's.
3. The HTML report of 100 tests (each with a load of 1,500 calls, two faults and 600 engine
   events), from their JSON records: the generation time, per test, against writing the same
   records as JSON; the report's size; and the import of the charting library it needs,
   which runs without `--chaos-html` never pay (fresh interpreters, median).

Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import socketserver
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, also under `python -m`
import harness

TOXIC_MS = 20
ROUND_TRIP_BYTES = 64
REPORT_TESTS = 100
REPORT_CALLS = 1500
REPORT_EVENTS = 600


# ------------------------------------------------------------------------------ throughput
def nothing() -> None:
    return None


async def nothing_async() -> None:
    return None


def bare_rate(seconds: float) -> float:
    """Calls per second of a plain loop timing each call as a load does, minus the load."""
    clock = time.monotonic
    count = 0
    deadline = clock() + seconds
    while clock() < deadline:
        for _ in range(1000):
            nothing()
        count += 1000
    return count / seconds


def load_rate(seconds: float, concurrency: int, on_tasks: bool) -> float:
    from pytest_chaos.load import Load

    if on_tasks:

        async def run() -> Load:
            async with Load(nothing_async, concurrency=concurrency) as load:
                await asyncio.sleep(seconds)
            return load

        load = asyncio.run(run())
    else:
        with Load(nothing, concurrency=concurrency) as load:
            time.sleep(seconds)
    return load.stats().count / seconds


def reading_cost() -> dict[str, float]:
    """Seconds to compute the signals of 100,000 calls: one window, and the report's JSON
    (every window plus the recovery)."""
    from pytest_chaos.apply import AppliedFault
    from pytest_chaos.faults import Down, Latency
    from pytest_chaos.load import CallRecord, Recording
    from pytest_chaos.load.recording import FaultWindow

    count, t0 = 100_000, 1000.0
    calls = tuple(
        CallRecord(t0 + i * 0.0001, 0.001 if i % 3 else 0.002, None if i % 97 else "OSError")
        for i in range(count)
    )
    faults = (
        FaultWindow(AppliedFault(Latency("api", 20), t0 + 3.0, t0 + 5.0), t0 + 3.0, t0 + 5.0),
        FaultWindow(AppliedFault(Down("api"), t0 + 6.0, t0 + 7.0), t0 + 6.0, t0 + 7.0),
    )
    recording = Recording(calls, faults, (), t0, t0 + 10.0)
    started = time.perf_counter()
    recording.stats("latency")
    one = time.perf_counter() - started
    started = time.perf_counter()
    recording.to_json(t0, max_points=1000)
    everything = time.perf_counter() - started
    return {"calls": count, "one_window_s": one, "report_json_s": everything}


# -------------------------------------------------------------------------------- accuracy
class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := sock.recv(65536):
            sock.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


ACCURACY_TEST = """
import json
import os
import socket
import threading
import time

ECHO = os.environ["BENCH_ECHO"]
SECONDS = float(os.environ["BENCH_SECONDS"])
PAYLOAD = b"x" * {size}
local = threading.local()
opened = []


def round_trip(proxy):
    sock = getattr(local, "sock", None)
    if sock is None:
        sock = local.sock = socket.create_connection((proxy.host, proxy.port), timeout=2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opened.append(sock)
    sock.sendall(PAYLOAD)
    received = 0
    while received < len(PAYLOAD):
        received += len(sock.recv(65536))


def test_accuracy(chaos):
    proxy = chaos.proxy("echo", upstream=ECHO)
    with chaos.load(lambda: round_trip(proxy)) as load:
        time.sleep(SECONDS)
        with chaos.latency("echo", {toxic}) as slow:
            time.sleep(SECONDS)
    for sock in opened:
        sock.close()
    before, during = load.stats("before"), load.stats(slow)
    with open(os.environ["BENCH_OUT"], "w") as out:
        json.dump({{"before": before.to_json(), "during": during.to_json()}}, out)
"""


def accuracy_runs(
    supervisor: harness.TokenSupervisor, workdir: Path, runs: int, seconds: float
) -> list[dict[str, Any]]:
    project = workdir / "accuracy"
    project.mkdir()
    (project / "test_accuracy.py").write_text(
        ACCURACY_TEST.format(size=ROUND_TRIP_BYTES, toxic=TOXIC_MS)
    )
    (project / "pytest.ini").write_text("[pytest]\n")
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = dict(os.environ)
    env["BENCH_ECHO"] = f"127.0.0.1:{server.server_address[1]}"
    env["BENCH_SECONDS"] = str(seconds)
    results = []
    try:
        for number in range(runs):
            harness.log(f"accuracy run {number + 1}/{runs} ...")
            run = harness.run_pytest(
                supervisor,
                project,
                ["-p", "no:hypothesispytest"],
                env,
                timeout=120,
                what="the accuracy run",
            )
            before, during = run.data["before"], run.data["during"]
            results.append(
                {
                    "calls_before": before["count"],
                    "calls_during": during["count"],
                    "p50_before_ms": before["p50"] * 1000,
                    "p50_during_ms": during["p50"] * 1000,
                    "p99_before_ms": before["p99"] * 1000,
                    "p99_during_ms": during["p99"] * 1000,
                    "error_p50_ms": (during["p50"] - before["p50"]) * 1000 - TOXIC_MS,
                    "error_p99_ms": (during["p99"] - before["p99"]) * 1000 - TOXIC_MS,
                }
            )
    finally:
        server.shutdown()
        server.server_close()
    return results


# ---------------------------------------------------------------------------------- report
def synthetic_payload(tests: int) -> dict[str, Any]:
    """The JSON report of `tests` tests, each with a load, two faults and engine events, as
    the plugin records them."""
    from pytest_chaos.apply import AppliedFault
    from pytest_chaos.faults import Down, Latency
    from pytest_chaos.load import CallRecord, Recording
    from pytest_chaos.load.recording import FaultWindow

    t0 = 1000.0
    records = []
    for number in range(tests):
        slow = AppliedFault(Latency("api", 100), t0 + 1.0, t0 + 1.8)
        down = AppliedFault(Down("api"), t0 + 2.2, t0 + 2.6)
        calls = []
        for i in range(REPORT_CALLS):
            start = t0 + 3.0 * i / REPORT_CALLS
            latency = 0.1 if 1.0 <= start - t0 < 1.8 else 0.001 + (i % 7) * 0.0003
            error = "ConnectionRefusedError" if 2.2 <= start - t0 < 2.6 else None
            calls.append(CallRecord(start, latency, error))
        events = []
        for i in range(REPORT_EVENTS // 3):
            at = 3.0 * i / (REPORT_EVENTS // 3)
            events += [
                _event(3 * i, at, "accepted", i),
                _event(3 * i + 1, at, "data", i, direction="upstream", bytes=64),
                _event(3 * i + 2, at + 0.004, "closed", i, by="client"),
            ]
        windows = tuple(FaultWindow(f, f.applied_at, f.reverted_at) for f in (slow, down))
        recording = Recording(tuple(calls), windows, None, t0, t0 + 3.0)
        records.append(
            {
                "nodeid": f"tests/test_bench.py::test_{number}",
                "outcome": "passed",
                "seed": 1,
                "faults": [_fault(f, t0) for f in (slow, down)],
                "events": events,
                "loads": [{**LOAD_SETTINGS, **recording.to_json(t0, max_points=1000)}],
            }
        )
    return {"seed": 1, "backend": "embedded", "tests": records}


LOAD_SETTINGS = {
    "load": "call x4",
    "concurrency": 4,
    "rate": None,
    "duration": None,
    "error_examples": {},
}


def _event(seq: int, at: float, kind: str, connection: int, **fields: Any) -> dict[str, Any]:
    """An engine event as the JSON report holds it (`offset` from the test's start)."""
    common = {"seq": seq, "time": 1000.0 + at, "kind": kind, "proxy": "api"}
    return {**common, "connection": connection, **fields, "offset": at}


def _fault(applied: Any, t0: float) -> dict[str, Any]:
    """A fault as the JSON report holds it."""
    return {
        "fault": str(applied.fault),
        "type": applied.fault.kind,
        "target": applied.fault.target,
        "options": applied.fault.options(),
        "applied_at": applied.applied_at - t0,
        "reverted_at": applied.reverted_at - t0,
    }


def report_cost(workdir: Path, repeat: int) -> dict[str, float]:
    from pytest_chaos.report.html import render

    payload = synthetic_payload(REPORT_TESTS)
    html_runs, json_runs = [], []
    page = ""
    for _ in range(repeat):
        started = time.perf_counter()
        page = render(payload)
        html_runs.append(time.perf_counter() - started)
        started = time.perf_counter()
        text = json.dumps(payload, indent=2)
        (workdir / "report.json").write_text(text)
        json_runs.append(time.perf_counter() - started)
    (workdir / "report.html").write_text(page)
    return {
        "tests": REPORT_TESTS,
        "html_s": statistics.median(html_runs),
        "json_s": statistics.median(json_runs),
        "html_bytes": len(page.encode()),
        "json_bytes": len(json.dumps(payload, indent=2).encode()),
    }


def import_cost(supervisor: harness.TokenSupervisor, repeat: int) -> dict[str, float]:
    """Seconds to import the reporter (every run) and the HTML report (with --chaos-html) in
    a fresh interpreter, median of `repeat`."""

    def seconds(module: str) -> float:
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            done = supervisor.run([sys.executable, "-c", f"import {module}"], timeout=60)
            if done.returncode != 0:
                raise harness.BenchError(f"import {module} failed: {done.stderr.strip()}")
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    reporter = seconds("pytest_chaos.report.reporter")
    html = seconds("pytest_chaos.report.html")
    return {"reporter_s": reporter, "html_s": html, "added_s": html - reporter}


# ------------------------------------------------------------------------------ the report
def render_report(figures: dict[str, Any]) -> Iterator[str]:
    t = figures["throughput"]
    yield "pytest-chaos load: cost and accuracy"
    yield f"  python {platform.python_version()}, {harness.cpu_model() or platform.machine()}"
    cpus, loads = figures["machine"]["cpus"], figures["machine"]["load_average"]
    busy = harness.busy_warning(max(loads), cpus)
    yield (
        f"  {cpus} CPUs; load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end{busy}"
    )
    yield ""
    yield f"Trivial call, {t['seconds']:g} s each (calls per second, per call):"
    bare = t["bare"]
    yield f"  bare loop (baseline)        {bare:>12,.0f}/s  {1e6 / bare:6.2f} us"
    for label, key in (
        ("chaos.load, 1 thread", "threads_1"),
        ("chaos.load, 4 threads", "threads_4"),
        ("chaos.load, 1 asyncio task", "tasks_1"),
        ("chaos.load, 4 asyncio tasks", "tasks_4"),
    ):
        rate = t[key]
        yield f"  {label:<27} {rate:>12,.0f}/s  {1e6 / rate:6.2f} us  ({rate / bare:.3f} x bare)"
    yield (
        f"  overhead per recorded call (1 thread): {t['overhead_us']:.2f} us;"
        f" 1 task: {t['overhead_task_us']:.2f} us"
    )
    r = figures["reading"]
    yield (
        f"  reading {r['calls']:,} calls: one window {r['one_window_s'] * 1000:.0f} ms,"
        f" every window + recovery for the report {r['report_json_s'] * 1000:.0f} ms"
    )
    yield ""
    runs = figures["accuracy"]
    yield f"Accuracy: round trips through a {TOXIC_MS} ms latency toxic (embedded engine):"
    for run in runs:
        yield (
            f"  p50 {run['p50_before_ms']:.2f} -> {run['p50_during_ms']:.2f} ms"
            f" ({run['calls_before']} / {run['calls_during']} calls):"
            f" error p50 {run['error_p50_ms']:+.2f} ms, p99 {run['error_p99_ms']:+.2f} ms"
        )
    p50s = [run["error_p50_ms"] for run in runs]
    yield (
        f"  median error at p50: {statistics.median(p50s):+.2f} ms (target: within 1 ms);"
        f" worst run {max(p50s, key=abs):+.2f} ms"
    )
    yield ""
    rep, imp = figures["report"], figures["imports"]
    yield f"HTML report of {rep['tests']} tests ({REPORT_CALLS:,} calls, 2 faults each):"
    yield (
        f"  generation {rep['html_s']:.2f} s ({rep['html_s'] / rep['tests'] * 1000:.0f} ms a"
        f" test), {rep['html_bytes'] / 1e6:.1f} MB; the same records as JSON"
        f" {rep['json_s']:.2f} s, {rep['json_bytes'] / 1e6:.1f} MB"
    )
    yield (
        f"  import: reporter {imp['reporter_s'] * 1000:.0f} ms, with the HTML report"
        f" {imp['html_s'] * 1000:.0f} ms: +{imp['added_s'] * 1000:.0f} ms, only with --chaos-html"
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer repetitions")
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace) -> Callable[[harness.TokenSupervisor, Path], int]:
    def run(supervisor: harness.TokenSupervisor, workdir: Path) -> int:
        load_at_start = os.getloadavg()[0]
        seconds = 0.5 if args.quick else 2.0
        repeat = 1 if args.quick else 3
        harness.log("throughput ...")
        rates = {
            "seconds": seconds,
            "bare": statistics.median(bare_rate(seconds) for _ in range(repeat)),
        }
        for key, concurrency, tasks in (
            ("threads_1", 1, False),
            ("threads_4", 4, False),
            ("tasks_1", 1, True),
            ("tasks_4", 4, True),
        ):
            rates[key] = statistics.median(
                load_rate(seconds, concurrency, tasks) for _ in range(repeat)
            )
        rates["overhead_us"] = 1e6 / rates["threads_1"] - 1e6 / rates["bare"]
        rates["overhead_task_us"] = 1e6 / rates["tasks_1"] - 1e6 / rates["bare"]
        harness.log("reading the signals ...")
        reading = reading_cost()
        accuracy = accuracy_runs(
            supervisor, workdir, 2 if args.quick else 5, 1.0 if args.quick else 3.0
        )
        harness.log("the HTML report ...")
        report = report_cost(workdir, repeat)
        imports = import_cost(supervisor, 3 if args.quick else 7)
        figures = {
            "machine": {
                "cpus": os.cpu_count() or 1,
                "load_average": [load_at_start, os.getloadavg()[0]],
            },
            "throughput": rates,
            "reading": reading,
            "accuracy": accuracy,
            "report": report,
            "imports": imports,
        }
        for line in render_report(figures):
            print(line)
        if args.json is not None:
            harness.write_json(args.json, figures)
            harness.log(f"wrote {args.json}")
        return 0

    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return harness.run_supervised(
        harness.TokenSupervisor,
        benchmark(args),
        needs="pytest_chaos.load",
        tmp_prefix="pytest-chaos-load-bench-",
    )


if __name__ == "__main__":
    raise SystemExit(main())
