#!/usr/bin/env python3
"""Benchmark the pytest-chaos engine against a direct connection and upstream Toxiproxy.

Run from the project root with the project's virtualenv:

    .venv/bin/python benchmarks/engine_bench.py [--quick] [--toxiproxy PATH]
        [--json PATH] [--markdown PATH]

Every load generator (iperf3, redis-benchmark, and the probes of engine_probes.py) runs
in its own process, so the figures measure the proxy and not this script.  Only 127.0.0.1
is ever contacted.  See benchmarks/README.md for what each figure means.  The figures live
in engine_results.py, the workloads beyond rates and latency in engine_workloads.py, the
tables and the README's markdown in engine_report.py.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import platform
import queue
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, also under `python -m`
from engine_probes import answers_ping
from engine_report import (
    IN_PROCESS,
    evaluate_goals,
    goals_table,
    markdown,
    print_header,
    print_server_logs,
    sections,
    upstream_goals,
    upstream_goals_table,
)
from engine_results import (
    LATENCY_MS,
    LOAD_CLIENTS,
    METRICS,
    REDIS_RUNS,
    TOXIC_SUFFIX,
    LatencyResult,
    Results,
)
from engine_workloads import (
    BANDWIDTH_RATES,
    BURST_CONNECTS,
    CpuMeter,
    measure_bandwidth,
    measure_burst,
    run_probe,
)
from harness import (
    BenchError,
    Supervisor,
    cpu_model,
    is_listening,
    log,
    log_tail,
    package_versions,
    wait_until,
)

from pytest_chaos._ports import free_port

HOST = "127.0.0.1"
URL_RE = re.compile(r"http://([0-9.]+):(\d+)")
TOXIC_NAME = "bench_latency"
# How the upstream binary measured for the README was built (benchmarks/README.md has the recipe).
UPSTREAM_BUILD = (
    "built from source (tag v2.12.0) with Debian's Go 1.23 and Debian's (older) Go libraries, "
    "as `benchmarks/README.md` describes"
)
# Share of one CPU that other processes may use during a run before it is called skewed.
FOREIGN_LIMIT = 0.15


@dataclass(frozen=True)
class Settings:
    reps: int  # repetitions of each noisy measurement; the median is reported
    iperf_seconds: int  # duration of one iperf3 run
    rr_seconds: float  # target duration of one redis-benchmark run
    base_samples: int  # RTT samples through a proxy without a toxic
    toxic_samples: int  # RTT samples with the 20 ms latency toxic (idle, and again loaded)
    bw_seconds: float  # duration of one transfer through a bandwidth toxic
    bw_reps: int  # repetitions of each bandwidth transfer


# Five repetitions: on a 2-core machine loopback throughput is bimodal (client
# and server on the same core or not), and a median of five rides that out.
# 500 toxic samples (~10 s per proxy): p99 is then the 5th-worst sample, not the 3rd,
# so a single scheduling hiccup moves it less.
FULL = Settings(
    reps=5,
    iperf_seconds=2,
    rr_seconds=1.0,
    base_samples=400,
    toxic_samples=500,
    bw_seconds=2.0,
    bw_reps=3,
)
QUICK = Settings(
    reps=1,
    iperf_seconds=1,
    rr_seconds=0.5,
    base_samples=150,
    toxic_samples=100,
    bw_seconds=1.0,
    bw_reps=1,
)
# The do-nothing toxics of the "+toxic" targets: what merely having a toxic costs.
NOOP_TOXICS = tuple(
    {
        "name": f"bench_noop_{stream}",
        "type": "latency",
        "stream": stream,
        "toxicity": 1.0,
        "attributes": {"latency": 0, "jitter": 0},
    }
    for stream in ("upstream", "downstream")
)


# --------------------------------------------------------------------------
# Process helpers (the Supervisor is in harness.py)
# --------------------------------------------------------------------------


class StdoutDrain:
    """Reads a child's stdout on a thread so the child never blocks on a full pipe."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=20)
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.tail.append(line.rstrip())
            self.lines.put(line)
        self.lines.put(None)  # end of file


# --------------------------------------------------------------------------
# Toxiproxy HTTP API (shared by the engine and upstream Toxiproxy)
# --------------------------------------------------------------------------


class ToxiproxyApi:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        # No ProxyHandler entries: an http_proxy variable in the environment must
        # not divert requests meant for 127.0.0.1.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(req, timeout=10) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise BenchError(f"{method} {path} -> HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise BenchError(f"{method} {self.base_url}{path} failed: {exc}") from None
        return json.loads(raw) if raw.strip() else None

    def responds(self) -> bool:
        try:
            self.request("GET", "/proxies")
        except BenchError:
            return False
        return True

    def create_proxy(self, name: str, upstream_port: int) -> int:
        """Create a proxy on an ephemeral port and return the port it got."""
        body = {"name": name, "listen": f"{HOST}:0", "upstream": f"{HOST}:{upstream_port}"}
        proxy = self.request("POST", "/proxies", body)
        listen = str(proxy.get("listen", "")) if isinstance(proxy, dict) else ""
        port = listen.rsplit(":", 1)[-1]
        if not port.isdigit() or int(port) == 0:
            raise BenchError(f"POST /proxies returned no usable listen address: {proxy!r}")
        return int(port)

    def add_latency(self, proxy: str, latency_ms: float) -> None:
        toxic = {
            "name": TOXIC_NAME,
            "type": "latency",
            "stream": "downstream",
            "toxicity": 1.0,
            "attributes": {"latency": int(latency_ms), "jitter": 0},
        }
        self.request("POST", f"/proxies/{proxy}/toxics", toxic)

    def remove_toxic(self, proxy: str, toxic: str) -> None:
        self.request("DELETE", f"/proxies/{proxy}/toxics/{toxic}")


# --------------------------------------------------------------------------
# Servers: upstreams and proxies
# --------------------------------------------------------------------------


@dataclass
class Target:
    """One way of reaching the upstream servers: directly or through a proxy."""

    name: str
    iperf_port: int | None
    redis_port: int | None
    api: ToxiproxyApi | None = None
    redis_proxy: str | None = None
    proc: subprocess.Popen[Any] | None = None  # the proxy server's process
    logfile: Path | None = None  # where that process's output goes
    toxic: bool = False  # its proxies carry the do-nothing toxics (NOOP_TOXICS)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def down(self) -> str | None:
        """Why this target cannot be measured any more, or None while it is up."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        if code < 0:
            return f"{self.name} process was killed by signal {-code} mid-run"
        # Exit 0 is a clean shutdown, which a server does on SIGTERM/SIGINT: this
        # script sends none before the end, so something else on the machine did.
        hint = " (a clean shutdown: did something send it SIGTERM?)" if code == 0 else ""
        return f"{self.name} process exited with code {code} mid-run{hint}"


@dataclass
class Env:
    sup: Supervisor
    settings: Settings
    logdir: Path
    iperf_server: IperfServer | None = None
    redis_port: int | None = None
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.notes.append(message)
        log(f"note: {message}")

    def spawn_logged(
        self, argv: Sequence[str], logname: str, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start a server with its output in a log file: an unread pipe would fill up."""
        with (self.logdir / logname).open("a") as logfile:
            return self.sup.spawn(argv, stdout=logfile, stderr=subprocess.STDOUT, **kwargs)


class IperfServer:
    """iperf3 -s on a fixed port; restartable because a failed run can wedge it."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen[Any] | None = None
        self.start()

    def start(self) -> None:
        argv = ["iperf3", "-s", "-B", HOST, "-p", str(self.port)]
        self.proc = self.env.spawn_logged(argv, "iperf3-server.log")
        wait_until(lambda: is_listening(self.port), self.proc, "iperf3 server")

    def restart(self) -> None:
        if self.proc is not None:
            self.env.sup.end(self.proc)
        self.start()


def start_redis(env: Env) -> int:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", HOST]
    argv += ["--save", "", "--appendonly", "no"]
    # Redis's own listen backlog (511) would overflow in the accept burst: direct is to be
    # the floor there, limited by the kernel's maximum as the proxies are.
    with contextlib.suppress(OSError, ValueError):
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        argv += ["--tcp-backlog", str(somaxconn)]
    proc = env.spawn_logged(argv, "redis-server.log")
    wait_until(lambda: is_listening(port), proc, "redis-server")
    return port


def engine_module_problem(python: str, sup: Supervisor) -> str | None:
    """Say why `python -m pytest_chaos` cannot run, or None if it can."""
    check = (
        "import importlib.util as u, sys; sys.exit(u.find_spec('pytest_chaos.__main__') is None)"
    )
    result = sup.run([python, "-c", check], timeout=30)
    if result.returncode == 0:
        return None
    return (
        f"the engine is not available: `{python} -m pytest_chaos` cannot be imported "
        f"(pytest_chaos/__main__.py missing, or pytest_chaos not installed for this "
        f"interpreter; run with the project's .venv/bin/python). "
        f"Use --no-engine to measure only the other targets. "
        f"({(result.stderr.strip().splitlines() or ['find_spec found nothing'])[-1]})"
    )


# A started proxy server: its API, its process and its log file.
Server = tuple[ToxiproxyApi, subprocess.Popen[Any], Path]


def start_engine(env: Env, extra_args: Sequence[str]) -> Server:
    argv = [sys.executable, "-m", "pytest_chaos", "serve", "--host", HOST, "--port", "0"]
    argv += extra_args
    errlog = env.logdir / "engine.log"
    with errlog.open("a") as stderr:
        proc = env.sup.spawn(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
    assert proc.stdout is not None
    drain = StdoutDrain(proc.stdout)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = drain.lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is None:
                continue
            line = None
        if line is None:
            proc.wait(timeout=5)
            raise BenchError(
                f"the engine exited (code {proc.returncode}) before printing its URL: "
                f"{' '.join(argv)}\n--- stderr ---\n{log_tail(errlog)}"
            )
        match = URL_RE.search(line)
        if match:
            return ToxiproxyApi(f"http://{match.group(1)}:{match.group(2)}"), proc, errlog
    raise BenchError(f"the engine printed no http://HOST:PORT line within 30 s: {list(drain.tail)}")


def start_toxiproxy(env: Env, binary: str) -> Server:
    port = free_port()
    # Upstream logs every accepted connection at info level; that would tax the
    # connection-rate figure with log formatting the engine does not do.
    argv = [binary, "-host", HOST, "-port", str(port)]
    proc_env = {**os.environ, "LOG_LEVEL": "error"}
    proc = env.spawn_logged(argv, "toxiproxy.log", env=proc_env)
    api = ToxiproxyApi(f"http://{HOST}:{port}")
    wait_until(api.responds, proc, "toxiproxy-server")
    return api, proc, env.logdir / "toxiproxy.log"


def proxied_targets(env: Env, name: str, server: Server) -> list[Target]:
    """Two targets on one proxy server: its plain proxies, and proxies of their own carrying
    the do-nothing toxics (latency 0 ms, jitter 0, both streams)."""
    api, proc, logfile = server
    targets = []
    for toxic in (False, True):
        suffix = "_toxic" if toxic else ""
        iperf_port = redis_port = None
        created = []
        if env.iperf_server is not None:
            iperf_port = api.create_proxy(f"bench_iperf3{suffix}", env.iperf_server.port)
            created.append(f"bench_iperf3{suffix}")
        if env.redis_port is not None:
            redis_port = api.create_proxy(f"bench_redis{suffix}", env.redis_port)
            created.append(f"bench_redis{suffix}")
        for proxy in created if toxic else []:
            for body in NOOP_TOXICS:
                api.request("POST", f"/proxies/{proxy}/toxics", body)
        label = name + (TOXIC_SUFFIX if toxic else "")
        target = Target(
            label, iperf_port, redis_port, api, f"bench_redis{suffix}", proc, logfile, toxic
        )
        if redis_port is not None and not answers_ping(redis_port):
            env.note(f"{label}: a PING through the new proxy got no PONG within 2 s")
        targets.append(target)
    return targets


# --------------------------------------------------------------------------
# Load generators (each in its own process)
# --------------------------------------------------------------------------


def iperf_gbps(env: Env, port: int, reverse: bool) -> tuple[float, float]:
    """Gbit/s received, and the bytes received, of one run."""
    try:
        return iperf_once(env, port, reverse)
    except BenchError as exc:
        # The server needs a moment to reset between tests; on a loaded machine the
        # next client can arrive first. That is not the proxy's failure: retry once.
        if "busy" not in str(exc):
            raise
    time.sleep(1.0)
    return iperf_once(env, port, reverse)


def iperf_once(env: Env, port: int, reverse: bool) -> tuple[float, float]:
    seconds = env.settings.iperf_seconds
    argv = ["iperf3", "-c", HOST, "-p", str(port), "-t", str(seconds), "-J"]
    if reverse:
        argv.append("-R")  # server sends, client receives
    try:
        result = env.sup.run(argv, timeout=seconds + 10)
    except BenchError as exc:
        raise BenchError(f"{exc} (the transfer stalled)") from None
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"iperf3 printed no JSON: {result.stderr.strip()[:300]}") from None
    if "error" in report:
        raise BenchError(f"iperf3: {report['error']}")
    # sum_received is what actually arrived, whichever side received it.
    received = report["end"]["sum_received"]
    return float(received["bits_per_second"]) / 1e9, float(received["bytes"])


def redis_rps(env: Env, port: int, clients: int, keepalive: bool, requests: int) -> float:
    argv = ["redis-benchmark", "-h", HOST, "-p", str(port), "-c", str(clients)]
    argv += ["-n", str(requests), "-k", "1" if keepalive else "0", "-t", "ping_mbulk", "--csv"]
    if not answers_ping(port):
        raise BenchError("no PONG within 2 s: the proxy does not forward")
    # redis-benchmark spins forever when it cannot connect or a reply never comes,
    # so it always gets a deadline, well beyond a sized run (or a warm-up run at
    # ~100 req/s).
    result = env.sup.run(argv, timeout=15 + env.settings.rr_seconds * 10)
    for line in result.stdout.splitlines():
        cells = [cell.strip('"') for cell in line.split(",")]
        if cells[0] == "PING_MBULK" and len(cells) > 1:
            return float(cells[1])
    # Its "Keepalive disabled" warning is printed on every -k 0 run: not the cause.
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    detail = " | ".join(ln for ln in lines if not ln.startswith("WARNING: Keepalive"))[-300:]
    how = (
        f"was killed by signal {-result.returncode}"
        if result.returncode < 0
        else f"exited {result.returncode}"
    )
    raise BenchError(f"redis-benchmark {how} without a result. {detail}".strip())


def sized_requests(env: Env, port: int, clients: int, keepalive: bool) -> int:
    """Size a run to last about rr_seconds from a short warm-up run's rate.

    redis-benchmark counts requests, not time, and the rates of the targets
    differ by an order of magnitude.
    """
    warmup = 5000 if clients > 1 and keepalive else 1000
    # The first run through a fresh proxy also pays for its start (a Go runtime growing its
    # heap and stacks, the engine's first connections): it warms up, the second one sizes.
    redis_rps(env, port, clients, keepalive, warmup)
    rate = redis_rps(env, port, clients, keepalive, warmup)
    # Connection runs stay below ~20k per run so TIME_WAIT sockets cannot use up
    # the ephemeral port range even where tcp_tw_reuse is off.
    ceiling = 500_000 if keepalive else 20_000
    return int(min(max(rate * env.settings.rr_seconds, warmup), ceiling))


def probe_rtts(env: Env, port: int, samples: int) -> list[float]:
    """PING round trips, in ms, timed by a separate helper process."""
    warmup = 10
    argv = ["rtt", str(port), str(warmup), str(samples)]
    # With the toxic each sample takes ~20 ms; allow generously for slow proxies.
    values: list[float] = run_probe(env, argv, timeout=30 + (samples + warmup) * 0.2)
    return values


# --------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------


def measure_throughput(env: Env, targets: Sequence[Target], results: Results) -> None:
    if env.iperf_server is None:
        return
    # Targets are interleaved within each repetition so slow drift on the
    # machine (thermal, other load) affects every target alike.
    for rep in range(env.settings.reps):
        for target in targets:
            for key, reverse in (("tput_up", False), ("tput_down", True)):
                if target.iperf_port is None or results.failed(target.name, key):
                    continue
                if target.down():
                    results.fail(target.name, key, str(target.down()), final=True)
                    continue
                try:
                    with CpuMeter(target.pid) as meter:
                        value, received = iperf_gbps(env, target.iperf_port, reverse)
                except BenchError as exc:
                    results.fail(target.name, key, str(exc))
                    env.iperf_server.restart()
                    continue
                results.add(target.name, key, value)
                if meter.used is not None and received:
                    results.add_cpu(target.name, key, meter.used / (received / 1e9))
                log(
                    f"  [{rep + 1}/{env.settings.reps}] {target.name:9} {key:9} {value:8.2f} Gbit/s"
                )


def measure_redis(env: Env, targets: Sequence[Target], results: Results) -> None:
    if env.redis_port is None:
        return
    sizes: dict[tuple[str, str], int] = {}
    for target in targets:
        for key, clients, keepalive in REDIS_RUNS:
            if target.redis_port is None:
                continue
            if target.down():
                results.fail(target.name, key, str(target.down()), final=True)
                continue
            try:
                sizes[target.name, key] = sized_requests(env, target.redis_port, clients, keepalive)
            except BenchError as exc:
                results.fail(target.name, key, f"warm-up run: {exc}", final=True)
                continue
            results.requests.setdefault(target.name, {})[key] = sizes[target.name, key]
    for rep in range(env.settings.reps):
        for target in targets:
            for key, clients, keepalive in REDIS_RUNS:
                if (target.name, key) not in sizes or results.failed(target.name, key):
                    continue
                assert target.redis_port is not None
                if target.down():
                    results.fail(target.name, key, str(target.down()), final=True)
                    continue
                requests = sizes[target.name, key]
                try:
                    with CpuMeter(target.pid) as meter:
                        rate = redis_rps(env, target.redis_port, clients, keepalive, requests)
                except BenchError as exc:
                    results.fail(target.name, key, str(exc))
                    continue
                results.add(target.name, key, rate)
                if meter.used is not None:
                    results.add_cpu(target.name, key, meter.used / requests * 1e6)
                log(f"  [{rep + 1}/{env.settings.reps}] {target.name:9} {key:9} {rate:10.0f}/s")


class BusyThread:
    """A pure-Python tight loop in this process, like a CPU-bound test.

    It never releases the GIL voluntarily, so anything else running Python in
    this process (an in-process engine) only gets the interpreter at the
    switch interval.
    """

    def __init__(self) -> None:
        self.running = False
        self.iterations = 0
        self._thread = threading.Thread(target=self._spin, name="busy-loop", daemon=True)

    def _spin(self) -> None:
        count = 0
        while self.running:
            count += 1
        self.iterations = count

    def __enter__(self) -> BusyThread:
        self.running = True
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.running = False
        self._thread.join()


def latency_through_proxy(
    env: Env, api: ToxiproxyApi, proxy: str, port: int
) -> tuple[LatencyResult, list[float]]:
    """The toxic's error, and the round trips through the same proxy without it."""
    base = probe_rtts(env, port, env.settings.base_samples)
    api.add_latency(proxy, LATENCY_MS)
    try:
        toxic = probe_rtts(env, port, env.settings.toxic_samples)
    finally:
        api.remove_toxic(proxy, TOXIC_NAME)
    return LatencyResult.of(base, toxic), base


def noise_floor(env: Env, port: int) -> LatencyResult:
    """Direct RTT spread around its median: what the probe itself contributes."""
    return LatencyResult.of(probe_rtts(env, port, env.settings.base_samples), None)


def latency_for(env: Env, target: Target, results: Results) -> LatencyResult:
    if target.redis_port is None:
        raise BenchError("no redis port for this target")
    if target.down():
        raise BenchError(str(target.down()))
    if target.api is None or target.redis_proxy is None:
        return noise_floor(env, target.redis_port)
    result, base = latency_through_proxy(env, target.api, target.redis_proxy, target.redis_port)
    results.idle_base[target.name] = base
    return result


def measure_latency(
    env: Env, targets: Sequence[Target], results: Results, in_process: bool
) -> None:
    if env.redis_port is None:
        return
    with BusyThread() as busy:
        for target in targets:
            if target.toxic:
                continue  # its proxies already carry toxics of their own
            label = "direct (noise floor)" if target.api is None else target.name
            try:
                result = latency_for(env, target, results)
            except BenchError as exc:
                results.latency_skipped[label] = str(exc)
                log(f"  {label}: FAILED: {exc}")
                continue
            results.latency[label] = result
            log(f"  {label:22} error p50 {result.err_p50:+.3f} ms  p99 {result.err_p99:+.3f} ms")
        if in_process:
            measure_in_process(env, results)
    if busy.iterations == 0:
        env.note("the busy thread did not run; latency rows are not under GIL load")


def loaded_latency(env: Env, target: Target, base: Sequence[float]) -> LatencyResult:
    """The latency toxic while LOAD_CLIENTS redis-benchmark clients send PINGs through the same
    proxy (so through the same toxic) as fast as it answers them. The error is against the
    round trip measured idle through that proxy without a toxic: it includes what the load
    adds."""
    assert target.api is not None
    assert target.redis_proxy is not None
    assert target.redis_port is not None
    argv = ["redis-benchmark", "-h", HOST, "-p", str(target.redis_port)]
    argv += ["-c", str(LOAD_CLIENTS), "-t", "ping_mbulk", "-l", "-q"]  # -l: until stopped
    target.api.add_latency(target.redis_proxy, LATENCY_MS)
    try:
        # Its progress line is rewritten many times a second: nobody reads it.
        load = env.sup.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)  # the clients connect and settle into their 20 ms pace
            with CpuMeter(target.pid) as meter:
                started = time.monotonic()
                toxic = probe_rtts(env, target.redis_port, env.settings.toxic_samples)
                elapsed = time.monotonic() - started
            if load.poll() is not None:
                raise BenchError(f"the load (redis-benchmark) exited with {load.returncode}")
        finally:
            env.sup.end(load)
    finally:
        target.api.remove_toxic(target.redis_proxy, TOXIC_NAME)
    result = LatencyResult.of(base, toxic)
    result.proxy_cpu = None if meter.used is None else meter.used / elapsed
    return result


def measure_loaded_latency(env: Env, targets: Sequence[Target], results: Results) -> None:
    for target in targets:
        base = results.idle_base.get(target.name)
        if target.toxic or target.api is None or base is None:
            continue
        try:
            if target.down():
                raise BenchError(str(target.down()))
            result = loaded_latency(env, target, base)
        except BenchError as exc:
            results.loaded_skipped[target.name] = str(exc)
            log(f"  {target.name}: FAILED: {exc}")
            continue
        results.loaded[target.name] = result
        log(
            f"  {target.name:22} error p50 {result.err_p50:+.3f} ms  p99 {result.err_p99:+.3f} ms"
            f"  (proxy CPU {fmt_share(result.proxy_cpu)})"
        )


def fmt_share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


# --------------------------------------------------------------------------
# In-process engine (optional)
# --------------------------------------------------------------------------

IN_PROCESS_HINT = re.compile(r"thread|background|in_?process", re.IGNORECASE)


def find_in_process_starter() -> tuple[str, Callable[..., Any]] | None:
    """Find what pytest_chaos.engine offers to run the server on a thread.

    Accepted: a function that starts it, or a class (like EngineThread) whose
    instances have start(); either is recognised by a name that suggests
    threads or background running, since that API is the engine's to choose.
    """
    try:
        module = importlib.import_module("pytest_chaos.engine")
    except ImportError:
        return None
    for name in sorted(dir(module)):
        candidate = getattr(module, name)
        if name.startswith("_") or not callable(candidate) or not IN_PROCESS_HINT.search(name):
            continue
        if not inspect.isclass(candidate) or callable(getattr(candidate, "start", None)):
            return name, candidate
    return None


def call_starter(starter: Callable[..., Any]) -> Any:
    """Call the starter with host/port when it accepts them (port 0 = any free port)."""
    params = inspect.signature(starter).parameters
    kwargs: dict[str, object] = {}
    if "host" in params:
        kwargs["host"] = HOST
    if "port" in params:
        kwargs["port"] = 0
    return starter(**kwargs)


def api_url_of(*candidates: Any) -> str:
    """Find the API URL in a start() result or the handle itself."""
    for item in candidates:
        texts: list[object] = [item]
        texts += [getattr(item, attr, None) for attr in ("url", "api_url", "base_url")]
        texts.append(getattr(getattr(item, "engine", None), "url", None))
        for text in texts:
            match = URL_RE.search(text) if isinstance(text, str) else None
            if match:
                return match.group(0)
    raise BenchError(f"cannot find the API address in {candidates!r}")


def start_in_process(starter: Callable[..., Any]) -> tuple[str, Any]:
    """Start the in-process engine; return its API URL and the handle to stop it."""
    handle = call_starter(starter)
    started = handle.start() if inspect.isclass(starter) else None
    return api_url_of(started, handle), handle


def stop_handle(handle: Any) -> None:
    for attr in ("stop", "close", "shutdown"):
        method = getattr(handle, attr, None)
        if callable(method):
            method()
            return
    if hasattr(handle, "__exit__"):
        handle.__exit__(None, None, None)


def measure_in_process(env: Env, results: Results) -> None:
    label = "engine (in-process)"
    found = find_in_process_starter()
    if found is None:
        reason = "pytest_chaos.engine offers nothing that starts the server on a thread"
        results.latency_skipped[label] = reason
        env.note(f"{label} skipped: {reason}")
        return
    name, starter = found
    assert env.redis_port is not None
    handle: Any = None
    try:
        url, handle = start_in_process(starter)
        api = ToxiproxyApi(url)
        port = api.create_proxy("bench_redis_inproc", env.redis_port)
        result, _base = latency_through_proxy(env, api, "bench_redis_inproc", port)
    except Exception as exc:
        results.latency_skipped[label] = f"{name}(): {exc}"
        log(f"  {label}: FAILED: {name}(): {exc}")
        return
    finally:
        if handle is not None:
            with contextlib.suppress(Exception):
                stop_handle(handle)
    results.latency[label] = result
    log(f"  {label:22} error p50 {result.err_p50:+.3f} ms  p99 {result.err_p99:+.3f} ms")


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def cpu_busy_fraction(seconds: float) -> float:
    """Share of all CPUs busy over a short window: other load skews every figure."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return idle, sum(fields)

    try:
        idle1, total1 = sample()
        time.sleep(seconds)
        idle2, total2 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1 - (idle2 - idle1) / max(total2 - total1, 1)


class ForeignLoad:
    """CPU time other processes used during the run.

    Machine-wide busy time (/proc/stat) minus what this benchmark's own process
    tree used: this process, its reaped children and its live servers. On a
    shared machine this tells a clean run from one skewed by someone's build.
    """

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.start = time.monotonic()
        self.machine_start = machine_busy_seconds()
        self.own_start = self.own_seconds()

    def own_seconds(self) -> float:
        times = os.times()
        own = times.user + times.system + times.children_user + times.children_system
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.sup.live_pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # Fields after the ")" of the command name: utime and stime are 12th and 13th.
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                own += (int(fields[11]) + int(fields[12])) / tick
        return own

    def share(self) -> float:
        """Average share of one CPU used by other processes since the start."""
        elapsed = max(time.monotonic() - self.start, 1e-6)
        machine = machine_busy_seconds() - self.machine_start
        own = self.own_seconds() - self.own_start
        return max(machine - own, 0.0) / elapsed


def machine_busy_seconds() -> float:
    """Busy CPU time of the whole machine, all CPUs summed (idle and iowait excluded)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, str]:
    tw_reuse = "?"
    with contextlib.suppress(OSError):
        tw_reuse = Path("/proc/sys/net/ipv4/tcp_tw_reuse").read_text().strip()
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model() or "unknown",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "cpu_busy_before": f"{cpu_busy_fraction(0.5):.0%}",
        "tcp_tw_reuse": tw_reuse,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")
    log(f"figures written to {path}")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="one short run of each: a smoke test (1-2 minutes)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write all figures as JSON")
    parser.add_argument(
        "--no-engine",
        action="store_true",
        help="skip the engine (measure direct and, if installed, upstream Toxiproxy only)",
    )
    parser.add_argument(
        "--engine-args",
        default="",
        metavar="ARGS",
        help="extra arguments for `pytest_chaos serve`, e.g. --engine-args='--loop asyncio'",
    )
    parser.add_argument(
        "--toxiproxy",
        metavar="PATH",
        help="upstream toxiproxy-server binary (default: toxiproxy-server on PATH, if any)",
    )
    parser.add_argument(
        "--toxiproxy-build",
        default=UPSTREAM_BUILD,
        metavar="TEXT",
        help="how the upstream binary was obtained, for --markdown (default: %(default)s)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="also write the README's Performance tables from this run as markdown ('-': stdout)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 if any engine target is missed"
    )
    return parser.parse_args(argv)


def tool_versions(env: Env, toxiproxy: str | None) -> dict[str, str]:
    tools: dict[str, str] = {}
    for tool in ("iperf3", "redis-server", "redis-benchmark", "toxiproxy-server"):
        path = shutil.which(tool) if tool != "toxiproxy-server" or not toxiproxy else toxiproxy
        if path is None:
            tools[tool] = "not found"
        elif tool == "toxiproxy-server":
            tools[tool] = f"{first_line([path, '-version'])} ({path})"
        else:
            tools[tool] = first_line([path, "--version"])
    if tools["iperf3"] == "not found":
        env.note(
            "iperf3 is not installed, so throughput is not measured; "
            "install it with `apt-get install -y iperf3`"
        )
    if "not found" in (tools["redis-server"], tools["redis-benchmark"]):
        env.note(
            "redis-server/redis-benchmark not found, so round trips, connection rate and "
            "latency are not measured; install them with `apt-get install -y redis-server`"
        )
    if tools["toxiproxy-server"] == "not found":
        env.note("toxiproxy-server is not on PATH: no upstream Toxiproxy column")
    return tools


def start_targets(env: Env, args: argparse.Namespace, tools: dict[str, str]) -> list[Target]:
    if tools["iperf3"] != "not found":
        env.iperf_server = IperfServer(env)
    if "not found" not in (tools["redis-server"], tools["redis-benchmark"]):
        env.redis_port = start_redis(env)
    iperf_port = env.iperf_server.port if env.iperf_server else None
    targets = [Target("direct", iperf_port, env.redis_port)]
    if not args.no_engine:
        log("starting the engine")
        engine = start_engine(env, shlex.split(args.engine_args))
        targets += proxied_targets(env, "engine", engine)
    toxiproxy = args.toxiproxy or shutil.which("toxiproxy-server")
    if toxiproxy is not None:
        log("starting upstream toxiproxy-server")
        targets += proxied_targets(env, "toxiproxy", start_toxiproxy(env, toxiproxy))
    return targets


def raise_fd_limit(env: Env) -> None:
    """Raise the soft limit on open files, which every server started after this inherits:
    in the accept burst a proxy holds two sockets per connection (client and upstream)."""
    needed = 2 * BURST_CONNECTS + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        env.note(f"open files limited to {hard}: the accept burst may fail with EMFILE")
        needed = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def benchmark(env: Env, args: argparse.Namespace) -> int:
    info = machine_info()
    tools = tool_versions(env, args.toxiproxy)
    print_header(info, tools)
    if float(info["cpu_busy_before"].rstrip("%")) > 10:
        env.note(f"{info['cpu_busy_before']} CPU was busy before the run: expect noisy figures")
    if not args.no_engine:
        problem = engine_module_problem(sys.executable, env.sup)
        if problem is not None:
            raise BenchError(problem)
    raise_fd_limit(env)
    foreign = ForeignLoad(env.sup)
    targets = start_targets(env, args, tools)
    results = Results()
    results.extras.record_memory(targets, "start")
    log("throughput (iperf3)")
    measure_throughput(env, targets, results)
    log("round trips and connection rate (redis-benchmark)")
    measure_redis(env, targets, results)
    if env.redis_port is not None:
        log(f"accept burst: {BURST_CONNECTS:,} concurrent connects, a PING on each")
        measure_burst(env, targets, results.extras)
    log("latency toxic accuracy, idle (busy thread running)")
    measure_latency(env, targets, results, in_process=not args.no_engine)
    log(f"latency toxic accuracy, {LOAD_CLIENTS} clients loading the same proxy")
    measure_loaded_latency(env, targets, results)
    results.extras.record_memory(targets, "before bandwidth")
    log(f"bandwidth toxic accuracy at {', '.join(map(str, BANDWIDTH_RATES))} KB/s")
    measure_bandwidth(env, targets, results.extras)
    results.extras.record_memory(targets, "end")
    other = foreign.share()
    info["other_load_during_run"] = f"{other:.0%} of one CPU"
    if other > FOREIGN_LIMIT:
        env.note(
            f"other processes used {other:.0%} of one CPU on average during the run: "
            f"the figures are skewed, re-run on a quiet machine"
        )
    else:
        log(f"other processes used {other:.0%} of one CPU during the run")
    names = [t.name for t in targets]
    verdicts, goals = report(env, targets, results, in_process=not args.no_engine)
    if args.json:
        payload = {
            "machine": info,
            "tools": tools,
            "settings": asdict(env.settings),
            "runs": results.runs,
            "medians": {n: {m.key: results.median(n, m.key) for m in METRICS} for n in names},
            "ratios": {n: {m.key: results.ratio(n, m.key) for m in METRICS} for n in names[1:]},
            "cpu": results.cpu,
            "requests_per_run": results.requests,
            "errors": results.errors,
            "latency": {label: asdict(res) for label, res in results.latency.items()},
            "latency_skipped": results.latency_skipped,
            "latency_loaded": {label: asdict(res) for label, res in results.loaded.items()},
            "latency_loaded_skipped": results.loaded_skipped,
            **results.extras.as_json(),
            "goals": verdicts,
            "upstream_goals": goals,
            "notes": env.notes,
        }
        write_json(args.json, payload)
    if args.markdown:
        versions = package_versions(["uvloop", "aiohttp"])
        block = markdown(
            info,
            tools,
            versions,
            results,
            names,
            env.settings.reps,
            env.settings.bw_reps,
            verdicts,
            args.toxiproxy_build,
        )
        if str(args.markdown) == "-":
            print(block)
        else:
            args.markdown.write_text(block, encoding="utf-8")
            log(f"markdown written to {args.markdown}")
    missed = any(v["status"] == "MISS" for v in verdicts if v["target"] == "engine")
    missed = missed or any(goal["status"] == "MISS" for goal in goals)
    return 1 if args.strict and missed else 0


def report(
    env: Env, targets: Sequence[Target], results: Results, in_process: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Print the tables and both summaries; return the verdicts of each."""
    names = [t.name for t in targets]
    for table in sections(results, names, env.settings.reps, env.settings.bw_reps, spread=True):
        print(table.text())
    rows = [n for n in names if n != "direct"] + ([IN_PROCESS] if in_process else [])
    verdicts = evaluate_goals(results, rows)
    print(goals_table(verdicts).text())
    goals = upstream_goals(results)
    print(upstream_goals_table(goals).text())
    print_server_logs(targets)
    for note in env.notes:
        print(f"note: {note}")
    return verdicts, goals


def raise_interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM/SIGHUP into the same clean-up path as Ctrl-C."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def supervised() -> Iterator[Supervisor]:
    sup = Supervisor()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)
    try:
        yield sup
    finally:
        # A second Ctrl-C must not abandon the children half-way through clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sup.end_all()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    started = time.monotonic()
    try:
        # The supervisor is innermost so children stop before their log directory goes.
        with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp, supervised() as sup:
            env = Env(sup=sup, settings=settings, logdir=Path(tmp))
            status = benchmark(env, args)
    except KeyboardInterrupt:
        print("\ninterrupted; all benchmark processes were stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    log(f"done in {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
