"""The workloads of engine_bench.py beyond rates and latency: a burst of concurrent connects,
bandwidth-toxic accuracy, and what the proxy processes cost in CPU and memory.

Each client runs in a process of its own (engine_probes.py); this module starts them, reads
the kernel's counters around them and keeps the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import BenchError, is_listening, log, wait_until

if TYPE_CHECKING:
    from engine_bench import Env, Target

PROBES = str(Path(__file__).resolve().with_name("engine_probes.py"))
BURST_CONNECTS = 2000
BURST_TIMEOUT = 20.0  # seconds; a dropped SYN is retried after 1, 3, 7 s
BANDWIDTH_RATES = (1, 100, 1000, 50_000, 100_000)  # KB/s (1 KB = 1000 bytes, as upstream)
BANDWIDTH_TOXIC = "bench_bandwidth"
SOURCE_PROXY = "bench_source"


def run_probe(env: Env, argv: Sequence[str], timeout: float) -> Any:
    """Run an engine_probes.py command in its own process; its JSON output."""
    result = env.sup.run([sys.executable, PROBES, *argv], timeout=timeout)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"probe {argv[0]} failed: {last}")
    return json.loads(result.stdout)


# ------------------------------------------------------------------------- process costs
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads) so far."""
    try:
        # Fields after the ")" of the command name: utime and stime are the 12th and 13th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def memory_kb(pid: int) -> dict[str, int]:
    """Resident set size now (VmRSS) and at its peak (VmHWM), in KB."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


class CpuMeter:
    """CPU a proxy process used during one run: `with CpuMeter(pid) as meter: ...`, then
    `meter.used` (None when the process could not be read)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.used: float | None = None
        self._start: float | None = None

    def __enter__(self) -> CpuMeter:
        self._start = None if self.pid is None else cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc_info: object) -> None:
        end = None if self.pid is None else cpu_seconds(self.pid)
        if self._start is not None and end is not None:
            self.used = end - self._start


def listen_overflows() -> dict[str, int]:
    """The machine's TcpExt ListenOverflows and ListenDrops counters (/proc/net/netstat)."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            if names.startswith("TcpExt:"):
                table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
                return {key: int(table.get(key, 0)) for key in ("ListenOverflows", "ListenDrops")}
    return {"ListenOverflows": 0, "ListenDrops": 0}


# -------------------------------------------------------------------------- accept burst
@dataclass
class BurstRun:
    issued_s: float  # how long the client took to issue all the connects
    all_connected_s: float | None  # from the first connect() to the last one completed
    all_answered_s: float | None  # ... to the last PONG
    failed: int  # connections without a PONG: refused, reset, closed or timed out
    overflows: int  # ListenOverflows on the machine during the burst


def burst_once(env: Env, port: int) -> BurstRun:
    before = listen_overflows()
    data = run_probe(
        env, ["burst", str(port), str(BURST_CONNECTS), str(BURST_TIMEOUT)], BURST_TIMEOUT + 15
    )
    after = listen_overflows()
    return BurstRun(
        issued_s=data["issued_s"],
        all_connected_s=data["all_connected_s"],
        all_answered_s=data["all_answered_s"],
        failed=BURST_CONNECTS - int(data["answered"]),
        overflows=after["ListenOverflows"] - before["ListenOverflows"],
    )


def measure_burst(env: Env, targets: Sequence[Target], results: Extras) -> None:
    """2,000 connects at once, each then a PING, against each target in turn (interleaved
    repetitions); the listen-queue overflows the machine counted meanwhile."""
    for rep in range(env.settings.reps):
        for target in targets:
            errors = results.burst_errors.get(target.name, [])
            if target.redis_port is None or target.toxic or len(errors) >= 2:
                continue
            if target.down():
                results.burst_errors.setdefault(target.name, []).append(str(target.down()))
                continue
            try:
                run = burst_once(env, target.redis_port)
            except BenchError as exc:
                results.burst_errors.setdefault(target.name, []).append(str(exc))
                log(f"  {target.name} burst: FAILED: {exc}")
                continue
            results.burst.setdefault(target.name, []).append(run)
            log(
                f"  [{rep + 1}/{env.settings.reps}] {target.name:9} connected "
                f"{fmt_seconds(run.all_connected_s)}  answered {fmt_seconds(run.all_answered_s)}"
                f"  overflows {run.overflows}  failed {run.failed}"
            )
            # Let the proxy close the burst's 2,000 upstream connections before the next one.
            time.sleep(1.0)


def fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


# -------------------------------------------------------------------- bandwidth accuracy
@dataclass
class BandwidthRun:
    delivered: float  # bytes / (last byte - request sent), divided by the configured rate
    first_byte_ms: float  # from the request sent to the first byte received


def start_source(env: Env) -> int:
    """The byte source the bandwidth proxies lead to, in its own process."""
    from pytest_chaos._ports import free_port

    port = free_port()
    proc = env.spawn_logged([sys.executable, PROBES, "source", str(port)], "source.log")
    wait_until(lambda: is_listening(port), proc, "byte source")
    return port


def bandwidth_once(env: Env, target: Target, port: int, rate: int) -> BandwidthRun:
    assert target.api is not None
    size = int(rate * 1000 * env.settings.bw_seconds)
    toxic = {
        "name": BANDWIDTH_TOXIC,
        "type": "bandwidth",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"rate": rate},
    }
    target.api.request("POST", f"/proxies/{SOURCE_PROXY}/toxics", toxic)
    try:
        timeout = env.settings.bw_seconds * 3 + 10
        data = run_probe(env, ["fetch", str(port), str(size), str(timeout)], timeout + 5)
    finally:
        target.api.request("DELETE", f"/proxies/{SOURCE_PROXY}/toxics/{BANDWIDTH_TOXIC}")
    delivered = data["bytes"] / data["last_byte_s"] / (rate * 1000)
    return BandwidthRun(delivered=delivered, first_byte_ms=data["first_byte_s"] * 1000)


def measure_bandwidth(env: Env, targets: Sequence[Target], results: Extras) -> None:
    """A transfer of bw_seconds' worth at each rate through a downstream bandwidth toxic,
    each proxy in turn (interleaved repetitions)."""
    proxies = [t for t in targets if t.api is not None and not t.toxic]
    if not proxies:
        return
    source = start_source(env)
    ports: dict[str, int] = {}
    for target in proxies:
        assert target.api is not None
        ports[target.name] = target.api.create_proxy(SOURCE_PROXY, source)
    for rep in range(env.settings.bw_reps):
        for rate in BANDWIDTH_RATES:
            for target in proxies:
                key = (target.name, rate)
                if target.down() or len(results.bandwidth_errors.get(key, [])) >= 2:
                    continue
                try:
                    run = bandwidth_once(env, target, ports[target.name], rate)
                except BenchError as exc:
                    results.bandwidth_errors.setdefault(key, []).append(str(exc))
                    log(f"  {target.name} {rate} KB/s: FAILED: {exc}")
                    continue
                results.bandwidth.setdefault(key, []).append(run)
                log(
                    f"  [{rep + 1}/{env.settings.bw_reps}] {target.name:9} {rate:>7} KB/s "
                    f"delivered {run.delivered:.4f}x  first byte {run.first_byte_ms:.1f} ms"
                )


# ------------------------------------------------------------------------------ results
@dataclass
class Extras:
    """Figures of the workloads in this module, by target name."""

    burst: dict[str, list[BurstRun]] = field(default_factory=dict)
    burst_errors: dict[str, list[str]] = field(default_factory=dict)
    bandwidth: dict[tuple[str, int], list[BandwidthRun]] = field(default_factory=dict)
    bandwidth_errors: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    memory: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # server, when

    def burst_median(self, target: str, attr: str) -> float | None:
        """Median over repetitions; a repetition that never finished counts as the timeout."""
        runs = self.burst.get(target, [])
        values = [getattr(r, attr) for r in runs]
        if not values:
            return None
        return statistics.median(BURST_TIMEOUT if v is None else v for v in values)

    def overflows(self, target: str) -> int | None:
        runs = self.burst.get(target)
        return None if not runs else sum(r.overflows for r in runs)

    def bandwidth_median(self, target: str, rate: int, attr: str) -> float | None:
        runs = self.bandwidth.get((target, rate), [])
        return statistics.median(getattr(r, attr) for r in runs) if runs else None

    def record_memory(self, targets: Sequence[Target], when: str) -> None:
        for target in targets:
            if target.proc is not None and not target.toxic:
                self.memory.setdefault(target.name, {})[when] = memory_kb(target.proc.pid)

    def as_json(self) -> dict[str, Any]:
        return {
            "burst": {name: [asdict(r) for r in runs] for name, runs in self.burst.items()},
            "burst_errors": self.burst_errors,
            "bandwidth": {
                f"{name} {rate}": [asdict(r) for r in runs]
                for (name, rate), runs in self.bandwidth.items()
            },
            "bandwidth_errors": {
                f"{name} {rate}": errors for (name, rate), errors in self.bandwidth_errors.items()
            },
            "memory_kb": self.memory,
        }
