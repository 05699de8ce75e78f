#!/usr/bin/env python3
"""What the pytest-chaos plugin costs a test run: per fault, and to start the engine.

Run from the project root with the project's virtualenv:

    .venv/bin/python benchmarks/plugin_overhead.py [--quick] [--json PATH] [--strict]

1. Fault overhead on the embedded backend: apply plus revert of one fault, timed directly
   around `apply_fault(...)` / `.revert()`, and end to end through pytest (N trivial tests
   with `@pytest.mark.latency("p", 100)` against the same tests without the marker).
2. Engine start-up: process launch to ready line, and "fixture requested to first proxy
   usable" as the plugin experiences it inside a pytest run (with the engine pre-launched at
   collection end), next to baselines measured in the same run (bare interpreter start,
   `import aiohttp`).

Only 127.0.0.1 is contacted. Every process started (including engines started by the pytest
runs) is found again at the end, by an environment token, and stopped. Progress goes to
stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import selectors
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, also under `python -m`
import harness
from harness import BenchError, log, median, quantile

HOST = "127.0.0.1"
FAULT_TARGET_MS = 5.0
FIRST_PROXY_TARGET_MS = 300.0
READY_TIMEOUT = 20.0
PYTEST_TIMEOUT = 300.0
URL_RE = re.compile(r"http://[0-9.]+:\d+")
IMPORTTIME_RE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


@dataclass(frozen=True)
class Settings:
    iterations: int  # apply+revert cycles per fault kind
    warmup: int  # cycles per fault kind before timing
    tests: int  # N: tests per generated file in the end-to-end runs
    e2e_reps: int  # pairs of pytest runs (marked, unmarked)
    startup_reps: int  # engine launches, baseline runs and first-proxy pytest runs


FULL = Settings(iterations=200, warmup=20, tests=100, e2e_reps=5, startup_reps=10)
QUICK = Settings(iterations=50, warmup=5, tests=50, e2e_reps=2, startup_reps=3)


# ----------------------------------------------------------------------------- report rows
@dataclass
class Row:
    """One line of the report table; samples are in seconds."""

    section: str
    label: str
    samples: list[float]
    target_ms: float | None = None
    note: str = ""

    @property
    def median_ms(self) -> float:
        return median(self.samples) * 1000

    @property
    def p95_ms(self) -> float:
        return quantile(self.samples, 0.95) * 1000

    @property
    def verdict(self) -> str:
        if self.target_ms is None:
            return ""
        return "PASS" if self.median_ms <= self.target_ms else "MISS"

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "label": self.label,
            "n": len(self.samples),
            "median_ms": round(self.median_ms, 4),
            "p95_ms": round(self.p95_ms, 4),
            "target_ms": self.target_ms,
            "verdict": self.verdict or None,
            "note": self.note or None,
            "samples_ms": [round(s * 1000, 4) for s in self.samples],
        }


# ------------------------------------------------------------------- process supervision
class EngineSupervisor(harness.TokenSupervisor):
    """Also stops the engines this script launches itself (EngineProcess objects)."""

    end_grace = 5.0

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.engines: list[Any] = []  # pytest_chaos.backends.EngineProcess objects

    def stop_all(self) -> list[str]:
        for engine in self.engines:
            with contextlib.suppress(Exception):
                engine.stop()
        return super().stop_all()

    def finish(self) -> None:
        forced = self.stop_all()
        log(f"warning: stopped {'; '.join(forced)}" if forced else "all processes stopped")


def read_line(stream: IO[str], timeout: float) -> str | None:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    return stream.readline()


# --------------------------------------------------------------------------- echo server
class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class EchoServer:
    """A threaded TCP echo server on 127.0.0.1: the upstream behind every proxy."""

    def __init__(self) -> None:
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer((HOST, 0), _EchoHandler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def echo_through(host: str, port: int) -> tuple[float, float]:
    """Connect and do one echo round trip; returns (connected, echoed) perf_counter times."""
    payload = b"ping\n"
    with socket.create_connection((host, port), timeout=10) as sock:
        connected = time.perf_counter()
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(64)
            if not chunk:
                break
            received += chunk
        echoed = time.perf_counter()
    if received != payload:
        raise BenchError(f"echo through {host}:{port} returned {received!r}")
    return connected, echoed


# ------------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": harness.cpu_model() or platform.processor() or "unknown",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "platform": platform.platform(),
        "loadavg_1m": os.getloadavg()[0],
        "versions": harness.package_versions(
            ("pytest", "aiohttp", "httpx", "uvloop", "pytest-chaos")
        ),
    }


# ------------------------------------------------------------- 1a: direct fault overhead
def bench_faults(url: str, upstream: str, settings: Settings) -> tuple[list[Row], dict[str, Any]]:
    from pytest_chaos.apply import apply_proxy_fault as apply_fault
    from pytest_chaos.backends.client import ToxiproxyClient
    from pytest_chaos.backends.server import ToxicNames, ToxiproxyServer
    from pytest_chaos.chaos import Chaos
    from pytest_chaos.faults import Down, Fault, Latency

    client = ToxiproxyClient(url)
    try:
        client.create_proxy("bench_p", upstream)
        names = ToxicNames()
        chaos = Chaos(ToxiproxyServer("embedded", client, None), seed=1)

        def direct(fault: Fault) -> Callable[[], tuple[float, float]]:
            def cycle() -> tuple[float, float]:
                start = time.perf_counter()
                handle = apply_fault(fault, client, names)
                applied = time.perf_counter()
                handle.revert()
                return applied - start, time.perf_counter() - applied

            return cycle

        def marker_path() -> tuple[float, float]:
            start = time.perf_counter()
            handle = chaos.inject(Latency(target="bench_p", ms=100))
            applied = time.perf_counter()
            handle.revert()
            return applied - start, time.perf_counter() - applied

        def api_round_trip() -> tuple[float, float]:
            start = time.perf_counter()
            client.version()
            return time.perf_counter() - start, 0.0

        cases: list[tuple[str, str, Callable[[], tuple[float, float]], float | None]] = [
            ("api", "API round trip (GET /version), floor", api_round_trip, None),
            (
                "latency",
                "latency, 1 toxic: apply+revert",
                direct(Latency(target="bench_p", ms=100)),
                FAULT_TARGET_MS,
            ),
            (
                "latency_both",
                "latency stream='both', 2 toxics",
                direct(Latency(target="bench_p", ms=100, stream="both")),
                FAULT_TARGET_MS,
            ),
            (
                "down_refuse",
                "dependency_down(mode='refuse')",
                direct(Down(target="bench_p", mode="refuse")),
                FAULT_TARGET_MS,
            ),
            (
                "chaos_inject",
                "chaos.inject(latency)+revert",
                marker_path,
                FAULT_TARGET_MS,
            ),
        ]
        for _ in range(settings.warmup):
            for _key, _label, cycle, _target in cases:
                cycle()
        split: dict[str, dict[str, list[float]]] = {
            key: {"apply": [], "revert": []} for key, *_ in cases
        }
        # Interleaved, so that drift on the machine hits every case alike.
        for _ in range(settings.iterations):
            for key, _label, cycle, _target in cases:
                apply_s, revert_s = cycle()
                split[key]["apply"].append(apply_s)
                split[key]["revert"].append(revert_s)
        leftover = client.toxics("bench_p")
        if leftover or not client.get_proxy("bench_p").enabled:
            raise BenchError(f"faults were not fully reverted: {leftover}")
        rows = []
        for key, label, _cycle, target in cases:
            totals = [a + r for a, r in zip(split[key]["apply"], split[key]["revert"], strict=True)]
            note = ""
            if key != "api":
                note = (
                    f"apply {median(split[key]['apply']) * 1000:.2f}"
                    f" + revert {median(split[key]['revert']) * 1000:.2f} ms"
                )
            if key == "chaos_inject":
                note += "; inject also lists proxies"
            rows.append(Row("1. fault overhead, direct", label, totals, target, note))
        raw = {
            key: {part: [round(s * 1000, 4) for s in values] for part, values in parts.items()}
            for key, parts in split.items()
        }
        return rows, raw
    finally:
        client.close()


# ------------------------------------------------------------------ generated pytest runs
E2E_CONFTEST = '''\
"""Generated by benchmarks/plugin_overhead.py: times each test's whole protocol."""

import json
import os
import time

import pytest

TIMES = []
MARKS = {}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    MARKS["collection_finish"] = time.perf_counter()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        TIMES.append([item.name, time.perf_counter() - start])


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session):
    try:
        return (yield)
    finally:
        MARKS["session_end"] = time.perf_counter()
        path = os.environ.get("BENCH_OUT")
        if path:
            with open(path, "w") as handle:
                json.dump({"items": TIMES, "marks": MARKS}, handle)
'''

STARTUP_CONFTEST = '''\
"""Generated by benchmarks/plugin_overhead.py: times the first proxy becoming usable."""

import json
import os
import socket
import time

import pytest

MARKS = {}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    # Before the plugin's own hook, which pre-launches the engine.
    MARKS["collection_finish_start"] = time.perf_counter()


EARLY = {}


class _AfterPlugin:
    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session):
        if os.environ.get("BENCH_NO_PRELAUNCH") or EARLY:
            # Undo the plugin's pre-launch: the fixture has to start the engine, or (what-if)
            # uses the one this conftest launched at pytest_configure.
            from pytest_chaos.plugin import process_key

            process = session.config.stash.get(process_key, None)
            if process is not None:
                process.stop()
                del session.config.stash[process_key]
            if EARLY:
                session.config.stash[process_key] = EARLY["process"]
        MARKS["collection_finish_end"] = time.perf_counter()


def pytest_configure(config):
    config.pluginmanager.register(_AfterPlugin(), "bench-after-plugin")
    if os.environ.get("BENCH_EARLY_LAUNCH"):
        # What-if: the plugin launched the engine at pytest_configure instead of at
        # collection end. Same EngineProcess, same import of pytest_chaos.backends.server first.
        MARKS["configure"] = time.perf_counter()
        from pytest_chaos.backends.embedded import EngineProcess

        process = EngineProcess(1)
        process.launch()
        EARLY["process"] = process


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session):
    try:
        return (yield)
    finally:
        MARKS["session_end"] = time.perf_counter()
        if os.environ.get("BENCH_PLAIN"):
            with open(os.environ["BENCH_OUT"], "w") as handle:
                json.dump({"prelaunched": _prelaunched(session.config), "marks": MARKS}, handle)


def _prelaunched(config):
    try:
        from pytest_chaos.plugin import process_key
    except ImportError:
        return None
    return config.stash.get(process_key, None) is not None


@pytest.fixture(scope="session")
def first_proxy(request):
    prelaunched = _prelaunched(request.config)
    modules_before = "httpx" in __import__("sys").modules
    start = time.perf_counter()
    server = request.getfixturevalue("toxiproxy")
    server_ready = time.perf_counter()
    proxy = server.create_proxy("bench_first", os.environ["BENCH_UPSTREAM"])
    created = time.perf_counter()
    payload = b"ping\\n"
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        connected = time.perf_counter()
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(64)
            if not chunk:
                break
            received += chunk
        echoed = time.perf_counter()
    assert received == payload, received
    MARKS.update(
        fixture_start=start,
        server_ready=server_ready,
        proxy_created=created,
        connected=connected,
        echoed=echoed,
    )
    with open(os.environ["BENCH_OUT"], "w") as handle:
        json.dump(
            {"marks": MARKS, "prelaunched": prelaunched, "httpx_imported": modules_before},
            handle,
        )
    return proxy
'''


def write_e2e_project(directory: Path, upstream: str, tests: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text(
        f"[pytest]\nchaos_proxies =\n    p = {upstream}\n", encoding="utf-8"
    )
    (directory / "conftest.py").write_text(E2E_CONFTEST, encoding="utf-8")
    for name, decorator in (("marked", '@pytest.mark.latency("p", 100)\n'), ("unmarked", "")):
        body = ["import pytest\n"]
        body += [f"\n\n{decorator}def test_{i}(chaos):\n    pass\n" for i in range(tests)]
        (directory / f"test_{name}.py").write_text("".join(body), encoding="utf-8")


def write_startup_project(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (directory / "conftest.py").write_text(STARTUP_CONFTEST, encoding="utf-8")
    # Naming `toxiproxy` makes the plugin see, at collection end, that the engine is needed.
    # The no-pre-launch variant (BENCH_NO_PRELAUNCH=1) stops the pre-launched engine in the
    # conftest, after the plugin's collection hook and before the clock starts.
    (directory / "test_first.py").write_text(
        "def test_first(first_proxy, toxiproxy):\n    pass\n", encoding="utf-8"
    )
    # A test that uses no chaos at all: the plugin should not start anything for it.
    (directory / "test_plain.py").write_text("def test_plain():\n    pass\n", encoding="utf-8")


def run_pytest(
    supervisor: EngineSupervisor,
    directory: Path,
    test_file: str,
    env_extra: dict[str, str],
    options: Sequence[str] = (),
) -> tuple[float, dict[str, Any]]:
    """Run pytest on one generated file; returns (wall seconds, what the conftest wrote)."""
    args = [*(options or ["--chaos-seed", "1"]), test_file]
    env = dict(os.environ) | env_extra
    done = harness.run_pytest(
        supervisor, directory, args, env, PYTEST_TIMEOUT, f"pytest {test_file}"
    )
    return done.wall, done.data


# ----------------------------------------------------------------- 1b: end-to-end markers
def bench_e2e(
    supervisor: EngineSupervisor, workdir: Path, upstream: str, settings: Settings
) -> tuple[list[Row], dict[str, Any]]:
    directory = workdir / "e2e"
    write_e2e_project(directory, upstream, settings.tests)
    n = settings.tests
    log(f"  warm-up runs (bytecode, page cache), then {settings.e2e_reps} x 2 runs of {n} tests")
    for name in ("marked", "unmarked"):
        run_pytest(supervisor, directory, f"test_{name}.py", {})
    per_test: dict[str, list[float]] = {"marked": [], "unmarked": []}
    sums: dict[str, list[float]] = {"marked": [], "unmarked": []}
    walls: dict[str, list[float]] = {"marked": [], "unmarked": []}
    sessions: dict[str, list[float]] = {"marked": [], "unmarked": []}
    for rep in range(settings.e2e_reps):
        order = ("marked", "unmarked") if rep % 2 == 0 else ("unmarked", "marked")
        for name in order:
            wall, data = run_pytest(supervisor, directory, f"test_{name}.py", {})
            times = [float(t) for _name, t in data["items"]]
            if len(times) != n:
                raise BenchError(f"test_{name}.py ran {len(times)} tests, expected {n}")
            # The first test also sets up the session (waits for the engine, creates the
            # proxies), the last one also tears it down (stops the engine): leave them out.
            middle = times[1:-1]
            per_test[name].extend(middle)
            sums[name].append(sum(middle))
            walls[name].append(wall)
            marks = data["marks"]
            sessions[name].append(marks["session_end"] - marks["collection_finish"])
        log(
            f"  rep {rep + 1}: marked {sums['marked'][-1] / (n - 2) * 1000:.2f} ms/test,"
            f" unmarked {sums['unmarked'][-1] / (n - 2) * 1000:.2f} ms/test"
        )
    overhead = [(m - u) / (n - 2) for m, u in zip(sums["marked"], sums["unmarked"], strict=True)]
    session_overhead = [
        (m - u) / n for m, u in zip(sessions["marked"], sessions["unmarked"], strict=True)
    ]
    section = f"1. fault overhead, pytest (N={n})"
    rows = [
        Row(section, "per test, unmarked (chaos fixture)", per_test["unmarked"]),
        Row(section, "per test, @mark.latency('p', 100)", per_test["marked"]),
        Row(
            section,
            "marker overhead (marked-unmarked)/N",
            overhead,
            FAULT_TARGET_MS,
            f"{settings.e2e_reps} runs each; tests 2..N-1, timed in-run",
        ),
        Row(
            section,
            "same, whole session span / N",
            session_overhead,
            note="collection end -> session end; engine start and stop included",
        ),
    ]
    raw = {
        "tests": n,
        "per_run_sum_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in sums.items()},
        "per_run_wall_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in walls.items()},
        "per_run_session_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in sessions.items()},
    }
    return rows, raw


# --------------------------------------------------------------------------- 2: start-up
def python_inner_time(supervisor: EngineSupervisor, code: str) -> float:
    """Run `code` in a fresh interpreter; it prints a duration in seconds."""
    done = supervisor.run([sys.executable, "-c", code], 60)
    if done.returncode != 0:
        raise BenchError(f"python -c {code!r} failed: {done.stderr.strip()}")
    return float(done.stdout.strip().splitlines()[-1])


def python_wall_time(supervisor: EngineSupervisor, argv: Sequence[str]) -> float:
    start = time.perf_counter()
    proc = supervisor.spawn(
        [sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    proc.wait(timeout=60)
    elapsed = time.perf_counter() - start
    supervisor.end(proc)
    if proc.returncode != 0:
        raise BenchError(f"python {' '.join(argv)} failed (exit {proc.returncode})")
    return elapsed


def timed_import(modules: str) -> str:
    return f"import time\nt = time.perf_counter()\n{modules}\nprint(time.perf_counter() - t)\n"


ENGINE_IMPORTS = timed_import(
    "import pytest_chaos.engine.cli\ntry:\n    import uvloop\nexcept ImportError:\n    pass"
)


def launch_without_certs(supervisor: EngineSupervisor, seed: int) -> float:
    """Launch to ready line of the engine with OpenSSL's default CA paths pointed at nothing:
    aiohttp builds two SSL contexts when imported, which load the CA store."""
    from pytest_chaos.backends.embedded import engine_command

    env = dict(os.environ, SSL_CERT_FILE=os.devnull, SSL_CERT_DIR="/nonexistent")
    start = time.perf_counter()
    proc = supervisor.spawn(
        engine_command(seed), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = read_line(proc.stdout, READY_TIMEOUT)
    elapsed = time.perf_counter() - start
    supervisor.end(proc)
    if not line or not URL_RE.search(line):
        raise BenchError(f"engine without CA store printed no ready line: {line!r}")
    return elapsed


def noverify_client_time(url: str) -> float:
    """What ToxiproxyClient's constructor would cost with verify=False (plain http API)."""
    import httpx

    start = time.perf_counter()
    http = httpx.Client(
        base_url=url,
        timeout=10.0,
        headers={"User-Agent": "pytest-chaos"},
        trust_env=False,
        verify=False,
    )
    elapsed = time.perf_counter() - start
    http.close()
    return elapsed


def bench_startup(
    supervisor: EngineSupervisor, workdir: Path, echo: EchoServer, settings: Settings
) -> tuple[list[Row], dict[str, Any]]:
    from pytest_chaos.backends.client import ToxiproxyClient
    from pytest_chaos.backends.embedded import EngineProcess

    directory = workdir / "startup"
    write_startup_project(directory)
    samples: dict[str, list[float]] = {
        key: []
        for key in (
            "python_pass",
            "import_aiohttp",
            "import_engine",
            "import_backends",
            "launch_ready",
            "ready_usable",
            "client_init",
            "client_noverify",
            "engine_stop",
            "launch_ready_nocerts",
        )
    }
    log(f"  baselines and engine launches, {settings.startup_reps} rounds")
    # Interleaved rounds, so that drift on the machine hits every figure alike.
    for rep in range(settings.startup_reps):
        samples["python_pass"].append(python_wall_time(supervisor, ["-c", "pass"]))
        samples["import_aiohttp"].append(
            python_inner_time(supervisor, timed_import("import aiohttp"))
        )
        samples["import_engine"].append(python_inner_time(supervisor, ENGINE_IMPORTS))
        samples["import_backends"].append(
            python_inner_time(supervisor, timed_import("import pytest_chaos.backends.server"))
        )
        engine = EngineProcess(seed=rep + 1)
        supervisor.engines.append(engine)
        start = time.perf_counter()
        engine.launch()
        url = engine.wait_ready()
        ready = time.perf_counter()
        client = ToxiproxyClient(url)
        client_ready = time.perf_counter()
        try:
            proxy = client.create_proxy("bench_first", echo.address)
            _connected, echoed = echo_through(proxy.host, proxy.port)
        finally:
            client.close()
        samples["client_init"].append(client_ready - ready)
        samples["client_noverify"].append(noverify_client_time(url))
        stopping = time.perf_counter()
        engine.stop()
        supervisor.engines.remove(engine)
        samples["engine_stop"].append(time.perf_counter() - stopping)
        samples["launch_ready"].append(ready - start)
        samples["ready_usable"].append(echoed - ready)
        samples["launch_ready_nocerts"].append(launch_without_certs(supervisor, rep + 1))

    log(f"  first proxy inside pytest, {settings.startup_reps} runs per variant")
    envs = {
        "prelaunch": {"BENCH_UPSTREAM": echo.address},
        "no_prelaunch": {"BENCH_UPSTREAM": echo.address, "BENCH_NO_PRELAUNCH": "1"},
        "early_launch": {"BENCH_UPSTREAM": echo.address, "BENCH_EARLY_LAUNCH": "1"},
    }
    run_pytest(supervisor, directory, "test_first.py", envs["prelaunch"])  # warm-up
    variants: dict[str, list[dict[str, Any]]] = {key: [] for key in envs}
    for _rep in range(settings.startup_reps):
        for variant, env in envs.items():
            _wall, data = run_pytest(supervisor, directory, "test_first.py", env)
            variants[variant].append(data)
    for variant, runs in variants.items():
        expected = variant != "no_prelaunch"
        seen = {run["prelaunched"] for run in runs}
        if seen != {expected}:
            raise BenchError(
                f"{variant}: expected the engine {'' if expected else 'not '}to be pre-launched"
                f" when the fixture starts; saw {seen}"
            )

    log(f"  pytest on one plain test, with and without the plugin, {settings.startup_reps} runs")
    plain: dict[str, list[float]] = {"plugin": [], "no_plugin": []}
    plain_walls: dict[str, list[float]] = {"plugin": [], "no_plugin": []}
    plain_prelaunched: set[bool | None] = set()
    plain_env = {"BENCH_PLAIN": "1"}
    for _rep in range(settings.startup_reps):
        for key, options in (("plugin", []), ("no_plugin", ["-p", "no:chaos"])):
            wall, data = run_pytest(supervisor, directory, "test_plain.py", plain_env, options)
            marks = data["marks"]
            plain[key].append(marks["session_end"] - marks["collection_finish_start"])
            plain_walls[key].append(wall)
            if key == "plugin":
                plain_prelaunched.add(data["prelaunched"])
    plain_cost = [a - b for a, b in zip(plain["plugin"], plain["no_plugin"], strict=True)]

    def span(runs: list[dict[str, Any]], first: str, last: str) -> list[float]:
        return [run["marks"][last] - run["marks"][first] for run in runs]

    pre = variants["prelaunch"]
    section_a = "2a. engine start-up"
    section_b = "2b. toxiproxy fixture -> first proxy"
    section_0 = "2. baselines (fresh interpreter)"
    section_w = "2d. what-ifs (suggested changes, measured)"
    rows = [
        Row(section_0, "python -c pass (wall)", samples["python_pass"]),
        Row(section_0, "import aiohttp", samples["import_aiohttp"]),
        Row(section_0, "import engine (+uvloop)", samples["import_engine"]),
        Row(
            section_0,
            "import pytest_chaos.backends.server",
            samples["import_backends"],
            note="httpx; the plugin pays it before launching",
        ),
        Row(section_a, "launch -> ready line", samples["launch_ready"]),
        Row(
            section_a,
            "ready -> first proxy usable",
            samples["ready_usable"],
            note="new client, create proxy, echo",
        ),
        Row(
            section_a,
            "  of which ToxiproxyClient()",
            samples["client_init"],
            note="httpx.Client loads the CA store",
        ),
        Row(section_a, "stop (SIGTERM -> exit)", samples["engine_stop"]),
        Row(
            section_b,
            "first proxy usable, pre-launched",
            span(pre, "fixture_start", "echoed"),
            FIRST_PROXY_TARGET_MS,
            "fixture start -> echo through proxy",
        ),
        Row(
            section_b,
            "  plugin collection hook",
            span(pre, "collection_finish_start", "collection_finish_end"),
            note="import backends + Popen",
        ),
        Row(
            section_b,
            "  head start: hook end -> fixture",
            span(pre, "collection_finish_end", "fixture_start"),
        ),
        Row(section_b, "  fixture -> server ready", span(pre, "fixture_start", "server_ready")),
        Row(section_b, "  create proxy", span(pre, "server_ready", "proxy_created")),
        Row(section_b, "  connect + echo", span(pre, "proxy_created", "echoed")),
        Row(
            section_b,
            "first proxy usable, no pre-launch",
            span(variants["no_prelaunch"], "fixture_start", "echoed"),
            note="the fixture launches the engine",
        ),
        Row(
            "2c. a run that uses no chaos",
            "1 plain test: plugin - no:chaos",
            plain_cost,
            note="collection end -> session end; engine launched: "
            + ("yes (should not be)" if True in plain_prelaunched else "no"),
        ),
        Row(
            section_w,
            "(b) with launch at pytest_configure",
            span(variants["early_launch"], "fixture_start", "echoed"),
            note="simulated in a conftest",
        ),
        Row(
            section_w,
            "  its head start: configure -> fixture",
            span(variants["early_launch"], "configure", "fixture_start"),
            note="tiny project; real collection is longer",
        ),
        Row(
            section_w,
            "(a) with certificate loading skipped",
            samples["launch_ready_nocerts"],
            note="engine env SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent",
        ),
        Row(
            section_w,
            "ToxiproxyClient(), verify=False",
            samples["client_noverify"],
            note="httpx.Client without CA loading",
        ),
    ]
    raw = {
        "plain_run_span_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in plain.items()},
        "plain_run_wall_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in plain_walls.items()},
        "plain_run_engine_launched": sorted(str(v) for v in plain_prelaunched),
        "samples_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in samples.items()},
        "pytest_runs": variants,
    }
    return rows, raw


# ------------------------------------------------------------- where start-up time goes
def import_breakdown(supervisor: EngineSupervisor, workdir: Path, runs: int) -> dict[str, Any]:
    """Run the engine under `-X importtime` up to its ready line; group import self-times."""
    from pytest_chaos.backends.embedded import engine_command

    groups_runs: list[dict[str, float]] = []
    modules_runs: list[dict[str, float]] = []
    ready_runs: list[float] = []
    stdlib = set(sys.stdlib_module_names)
    for _ in range(runs):
        log_path = workdir / f"importtime-{uuid.uuid4().hex}.log"
        argv = [sys.executable, "-X", "importtime", *engine_command(seed=1)[1:]]
        # stderr to a file: the import log is larger than a pipe's buffer.
        with log_path.open("w") as err:
            start = time.perf_counter()
            proc = supervisor.spawn(argv, stdout=subprocess.PIPE, stderr=err, text=True)
            assert proc.stdout is not None
            line = read_line(proc.stdout, READY_TIMEOUT)
            ready_runs.append(time.perf_counter() - start)
            supervisor.end(proc)
        if not line or not URL_RE.search(line):
            raise BenchError(f"engine under -X importtime printed no ready line: {line!r}")
        groups: dict[str, float] = {}
        modules: dict[str, float] = {}
        for entry in log_path.read_text().splitlines():
            match = IMPORTTIME_RE.match(entry)
            if match is None:
                continue
            self_us, name = int(match.group(1)), match.group(4)
            root = name.split(".")[0]
            group = "stdlib" if root in stdlib or root.startswith("_") else root
            groups[group] = groups.get(group, 0.0) + self_us / 1000
            modules[name] = modules.get(name, 0.0) + self_us / 1000
        log_path.unlink()
        groups_runs.append(groups)
        modules_runs.append(modules)

    def medians(runs_: list[dict[str, float]]) -> dict[str, float]:
        keys = set().union(*runs_)
        return {k: median([r.get(k, 0.0) for r in runs_]) for k in keys}

    groups_ms = medians(groups_runs)
    modules_ms = medians(modules_runs)
    return {
        "runs": runs,
        "ready_ms_under_importtime": median(ready_runs) * 1000,
        "imports_total_ms": median([sum(g.values()) for g in groups_runs]),
        "by_package_ms": dict(sorted(groups_ms.items(), key=lambda kv: -kv[1])),
        "top_modules_self_ms": dict(sorted(modules_ms.items(), key=lambda kv: -kv[1])[:10]),
    }


# ------------------------------------------------------------------------------ report
def render(machine: dict[str, Any], rows: list[Row], extra: dict[str, Any]) -> str:
    lines = [
        "pytest-chaos plugin overhead",
        f"machine: nproc={machine['nproc']} (cpu_count {machine['cpu_count']}),"
        f" CPU {machine['cpu_model']}, {machine['python']}, {machine['platform']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        f"load average (1 min): {machine['loadavg_1m']:.2f} at start,"
        f" {machine.get('loadavg_1m_end', math.nan):.2f} at end"
        + harness.busy_warning(
            max(machine["loadavg_1m"], machine.get("loadavg_1m_end", 0)), machine["nproc"]
        ),
    ]
    width = max((len(r.label) for r in rows), default=20) + 2
    header = f"{'measurement':<{width}}{'n':>6}{'median':>10}{'p95':>10}{'target':>9}  verdict"
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines += ["", f"[{section}]  (ms)", header, "-" * (len(header) + 2)]
        target = f"<{row.target_ms:g}" if row.target_ms is not None else ""
        lines.append(
            f"{row.label:<{width}}{len(row.samples):>6}{row.median_ms:>10.2f}{row.p95_ms:>10.2f}"
            f"{target:>9}  {row.verdict:<4}  {row.note}".rstrip()
        )
    ratios = extra.get("ratios")
    if ratios:
        lines += ["", "first proxy usable (pre-launched, median) relative to this run's baselines:"]
        lines += [f"  {label}: x{value:.2f}" for label, value in ratios.items()]
    breakdown = extra.get("import_breakdown")
    if breakdown:
        lines += [
            "",
            f"engine imports under -X importtime (median of {breakdown['runs']} runs;"
            " importtime inflates times):",
            f"  ready line after {breakdown['ready_ms_under_importtime']:.0f} ms,"
            f" of which imports {breakdown['imports_total_ms']:.0f} ms",
            "  by package (self time): "
            + ", ".join(f"{k} {v:.0f}" for k, v in list(breakdown["by_package_ms"].items())[:8]),
            "  slowest modules (self time): "
            + ", ".join(
                f"{k} {v:.1f}" for k, v in list(breakdown["top_modules_self_ms"].items())[:6]
            ),
        ]
    for error in extra.get("errors") or ():
        lines += ["", f"ERROR (figures missing): {error}"]
    verdicts = [r for r in rows if r.verdict]
    lines += ["", "summary:"]
    lines += [
        f"  {r.verdict}  {r.section}: {r.label.strip()}: median {r.median_ms:.2f} ms"
        f" (target < {r.target_ms:g} ms)"
        for r in verdicts
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all figures as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test)")
    parser.add_argument(
        "--skip-e2e", action="store_true", help="leave out the end-to-end pytest runs"
    )
    parser.add_argument(
        "--skip-importtime", action="store_true", help="leave out the -X importtime breakdown"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, supervisor: EngineSupervisor, workdir: Path) -> int:
    settings = QUICK if args.quick else FULL
    machine = machine_info()
    log(
        f"machine: nproc={machine['nproc']}, {machine['cpu_model']}, {machine['python']};"
        f" load {machine['loadavg_1m']:.2f}"
    )
    from pytest_chaos.backends.server import BackendError, EngineProcess

    echo = EchoServer()
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    errors: list[str] = []

    def stage(title: str, body: Callable[[], None]) -> None:
        log(title)
        try:
            body()
        except BenchError as error:
            log(f"error: {error}")
            errors.append(f"{title}: {error}")

    def faults() -> None:
        engine = EngineProcess(seed=1)
        supervisor.engines.append(engine)
        try:
            fault_rows, raw["faults_ms"] = bench_faults(engine.wait_ready(), echo.address, settings)
        except BackendError as error:
            raise BenchError(str(error)) from None
        finally:
            engine.stop()
            supervisor.engines.remove(engine)
        rows.extend(fault_rows)

    def e2e() -> None:
        e2e_rows, raw["e2e"] = bench_e2e(supervisor, workdir, echo.address, settings)
        rows.extend(e2e_rows)

    def startup() -> None:
        startup_rows, raw["startup"] = bench_startup(supervisor, workdir, echo, settings)
        rows.extend(startup_rows)
        by_label = {r.label: r for r in rows}
        first = by_label["first proxy usable, pre-launched"].median_ms
        extra["ratios"] = {
            "x python -c pass": first / by_label["python -c pass (wall)"].median_ms,
            "x import aiohttp": first / by_label["import aiohttp"].median_ms,
        }

    def importtime() -> None:
        extra["import_breakdown"] = import_breakdown(supervisor, workdir, 3)

    try:
        stage(f"1a. apply+revert, {settings.iterations} cycles per fault kind", faults)
        if not args.skip_e2e:
            stage("1b. end to end through pytest", e2e)
        stage("2. start-up", startup)
        if not args.skip_importtime:
            stage("3. -X importtime breakdown of the engine", importtime)
    finally:
        echo.stop()
    machine["loadavg_1m_end"] = os.getloadavg()[0]
    extra["errors"] = errors

    print(render(machine, rows, extra))
    missed = [r for r in rows if r.verdict == "MISS"]
    if args.json:
        payload = {
            "machine": machine,
            "settings": settings.__dict__,
            "rows": [r.to_json() for r in rows],
            "ratios": extra.get("ratios"),
            "import_breakdown": extra.get("import_breakdown"),
            "errors": errors,
            "raw": raw,
        }
        harness.write_json(args.json, payload)
        log(f"wrote {args.json}")
    if errors:
        return 2
    return 1 if args.strict and missed else 0


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    return harness.run_supervised(
        EngineSupervisor,
        lambda supervisor, workdir: benchmark(args, supervisor, workdir),
        needs="pytest_chaos.backends.server",
        tmp_prefix="chaos-overhead-",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
