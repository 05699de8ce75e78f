#!/usr/bin/env python3
"""How faithful packet faults are: UDP loss, duplication and reordering rates, TCP stalls
under loss against the model, and what a UDP proxy costs.

Run from the project root with the project's virtualenv:

    .venv/bin/python benchmarks/loss_bench.py [--quick] [--json PATH]

The engine runs in its own process (as the plugin runs it), seeded; the servers are a UDP
echo and a UDP counting sink in this process, and a local redis-server.

1. UDP loss: `packet_loss` upstream at 1%, 5%, 20% (and 10% with correlation 0.5) over
   10,000 numbered datagrams each; the sink counts what arrived. The measured loss must be
   within 2 percentage points of the configured rate (PASS/MISS); the engine's own count of
   drops is shown beside it (a difference would be datagrams lost outside the toxic).
2. UDP duplication and reordering: `duplicate` and `reorder` at 5% and 20%, and `latency`
   10 +/- 5 ms (netem-like jitter), over 10,000 datagrams: the share of datagrams the sink saw
   twice, and the share that arrived after a later-numbered one.
3. UDP passthrough: echo round trips per second with 16 datagrams in flight, direct and
   through a UDP proxy without toxics, in the same run; the ratio.
4. TCP under loss: redis-py GETs (10,000 per rate, over 20 connections at once) through a
   proxy with `packet_loss` both ways at 1%, 5%, 20%, beside the same GETs through a proxy
   without loss: latency percentiles measured against the model's (the clean run's median
   plus the stalls the model's loss distribution predicts), the share of stalled segments
   by number of losses against the geometric law, and every reply checked (a wrong or
   out-of-order reply would be counted). Then 100%: the time until the reset against the
   model's (retries=3: 0.2 + 0.4 + 0.8 + 1.6 s), and new connections at 20%: the share held
   back by a lost SYN (1 s) against the model's 1 - 0.8^2.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, also under `python -m`
import harness
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pytest_chaos.backends.client import ToxiproxyClient
from pytest_chaos.backends.embedded import EngineProcess
from pytest_chaos.services import LocalProcess, redis_recipe

DATAGRAMS = 10_000
TOLERANCE = 0.02  # 2 percentage points
SEND_RATE = 3_000  # datagrams per second: well within the kernel's socket buffers
RTO = 0.2
QUANTILES = (0.5, 0.9, 0.99, 0.999)


# ------------------------------------------------------------------------------ UDP servers
class Sink:
    """A UDP server that counts every numbered datagram it receives, in arrival order."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.arrived: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            self.arrived.append(int.from_bytes(data[:8], "big"))
            if data[8:9] == b"E":  # an echo request
                self.sock.sendto(data, sender)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


def send_numbered(address: str, count: int, rate: float = SEND_RATE) -> None:
    host, _, port = address.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    started = time.perf_counter()
    try:
        for number in range(count):
            due = started + number / rate
            while (wait := due - time.perf_counter()) > 0:
                time.sleep(min(wait, 0.002))
            sock.sendto(number.to_bytes(8, "big") + b"-" * 24, (host, int(port)))
    finally:
        sock.close()


def wait_quiet(sink: Sink, seconds: float = 0.3) -> None:
    """Until nothing arrived for `seconds` (held and delayed datagrams have come out)."""
    seen = -1
    while seen != len(sink.arrived):
        seen = len(sink.arrived)
        time.sleep(seconds)


class Udp:
    """A UDP proxy in front of a sink, with one toxic at a time."""

    def __init__(self, client: ToxiproxyClient, sink: Sink) -> None:
        self.client = client
        self.sink = sink
        self.proxy = client.create_proxy("udp", sink.address, protocol="udp")

    def run(self, toxic: str, attributes: dict[str, Any], seed: int) -> list[int]:
        self.client.set_seed(seed)
        self.client.add_toxic("udp", toxic, name="bench", stream="upstream", attributes=attributes)
        self.sink.arrived.clear()
        try:
            send_numbered(self.proxy.address, DATAGRAMS)
            wait_quiet(self.sink)
        finally:
            self.client.remove_toxic("udp", "bench")
        return list(self.sink.arrived)

    def engine_drops(self, since: int) -> int:
        events, _ = self.client.events(since=since, proxy="udp")
        return sum(len(e["dropped"]) for e in events if e["kind"] == "datagrams")


def burst_length(lost: list[bool]) -> float:
    bursts = [len(list(run)) for lost_, run in itertools.groupby(lost) if lost_]
    return sum(bursts) / len(bursts) if bursts else 0.0


def udp_loss(udp: Udp, report: dict[str, Any]) -> None:
    print(f"\nUDP loss over {DATAGRAMS:,} datagrams (target: within 2 points)")
    print(
        f"{'rate':>5} {'corr':>5} {'measured':>9} {'engine':>7} {'burst':>6} {'model':>6}  verdict"
    )
    for index, (rate, correlation) in enumerate([(0.01, 0), (0.05, 0), (0.2, 0), (0.1, 0.5)]):
        _, since = udp.client.events(since=2**62)
        arrived = set(
            udp.run("packet_loss", {"loss_rate": rate, "correlation": correlation}, index)
        )
        lost = [n not in arrived for n in range(DATAGRAMS)]
        measured = sum(lost) / DATAGRAMS
        engine = udp.engine_drops(since) / DATAGRAMS
        stay = rate + correlation * (1 - rate)  # chance a loss follows a loss
        ok = abs(measured - rate) <= TOLERANCE
        print(
            f"{rate:>5.2f} {correlation:>5.1f} {measured:>9.4f} {engine:>7.4f}"
            f" {burst_length(lost):>6.2f} {1 / (1 - stay):>6.2f}  {'PASS' if ok else 'MISS'}"
        )
        report["udp_loss"].append(
            {"rate": rate, "correlation": correlation, "measured": measured, "engine": engine,
             "burst": burst_length(lost), "burst_model": 1 / (1 - stay), "pass": ok}
        )  # fmt: skip


def reordered_share(arrived: list[int]) -> float:
    """The share of datagrams that arrived after a datagram numbered higher than them."""
    highest = -1
    late = 0
    for number in arrived:
        if number < highest:
            late += 1
        highest = max(highest, number)
    return late / len(arrived) if arrived else 0.0


def udp_duplicates_and_order(udp: Udp, report: dict[str, Any]) -> None:
    print(f"\nUDP duplication and reordering over {DATAGRAMS:,} datagrams")
    print(f"{'fault':<28} {'configured':>10} {'duplicated':>10} {'reordered':>9}")
    cases: list[tuple[str, str, dict[str, Any], float | None]] = [
        ("duplicate 5%", "duplicate", {"probability": 0.05}, 0.05),
        ("duplicate 20%", "duplicate", {"probability": 0.2}, 0.2),
        ("reorder 5%", "reorder", {"probability": 0.05}, 0.05),
        ("reorder 20%", "reorder", {"probability": 0.2}, 0.2),
        ("latency 10 +/- 5 ms", "latency", {"latency": 10, "jitter": 5}, None),
    ]
    for index, (label, toxic, attributes, configured) in enumerate(cases):
        arrived = udp.run(toxic, attributes, 100 + index)
        counts = Counter(arrived)
        duplicated = sum(1 for n in counts.values() if n > 1) / DATAGRAMS
        firsts = list(dict.fromkeys(arrived))
        reordered = reordered_share(firsts)
        shown = "-" if configured is None else f"{configured:.2f}"
        print(f"{label:<28} {shown:>10} {duplicated:>10.4f} {reordered:>9.4f}")
        report["udp_order"].append(
            {"fault": label, "configured": configured, "duplicated": duplicated,
             "reordered": reordered}
        )  # fmt: skip


def echo_rate(address: str, seconds: float, window: int = 16) -> float:
    """Echo round trips per second with `window` datagrams in flight."""
    host, _, port = address.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, int(port)))
    sock.settimeout(0.2)
    payload = (0).to_bytes(8, "big") + b"E" + b"-" * 23
    done = 0
    try:
        for _ in range(window):
            sock.send(payload)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            try:
                sock.recv(64)
            except TimeoutError:
                for _ in range(window):  # lost somewhere: fill the window again
                    sock.send(payload)
                continue
            done += 1
            sock.send(payload)
        return done / (time.perf_counter() - started)
    finally:
        sock.close()


def udp_passthrough(udp: Udp, report: dict[str, Any], seconds: float) -> None:
    print(f"\nUDP passthrough: echo round trips per second, 16 in flight, {seconds:g} s each")
    direct, proxied = [], []
    for _ in range(3):  # alternated, so that drift hits both
        direct.append(echo_rate(udp.sink.address, seconds))
        proxied.append(echo_rate(udp.proxy.address, seconds))
    d, p = harness.median(direct), harness.median(proxied)
    print(f"direct {d:>10,.0f}/s   proxied {p:>10,.0f}/s   proxied / direct {p / d:.2f}")
    report["udp_passthrough"] = {"direct": direct, "proxied": proxied, "ratio": p / d}


# --------------------------------------------------------------------------------- TCP, redis
def stall(losses: int, first: float = RTO) -> float:
    return sum(first * 2**i for i in range(losses))


def stall_distribution(rate: float) -> list[tuple[float, float]]:
    """(stall, chance) of one GET whose request and reply are one segment each, each lost
    k times with chance rate^k (1 - rate): both segments' stalls add up."""
    single = [(stall(k), rate**k * (1 - rate)) for k in range(8)]
    return [(a + b, pa * pb) for (a, pa), (b, pb) in itertools.product(single, single)]


def model_quantiles(rate: float, baseline: list[float]) -> dict[float, float]:
    """Latency quantiles the model predicts: a GET of the clean run (each equally likely)
    plus the stall of `stall_distribution`."""
    weight = 1 / len(baseline)
    mixture = sorted(
        (base + extra, weight * chance)
        for base in baseline
        for extra, chance in stall_distribution(rate)
        if chance > 1e-7
    )
    found = {}
    total = 0.0
    wanted = iter(QUANTILES)
    q = next(wanted)
    for value, chance in mixture:
        total += chance
        while total >= q:
            found[q] = value
            q = next(wanted, 2.0)
    return found


def single_try(host: str, port: int) -> redis.Redis:
    """A client that never retries (redis-py 6+ retries three times by default), so that a
    reset is seen, not hidden behind a new connection."""
    return redis.Redis(host=host, port=port, socket_timeout=60, retry=Retry(NoBackoff(), 0))


def gets(address: str, keys: list[str], connections: int) -> tuple[list[float], int]:
    """GET every key over `connections` clients at once: each GET's seconds, and how many
    replies were not the key's own value (garbled or out of order)."""
    host, _, port = address.rpartition(":")
    shares = [keys[i::connections] for i in range(connections)]

    def one(share: list[str]) -> tuple[list[float], int]:
        client = single_try(host, int(port))
        durations, wrong = [], 0
        try:
            client.ping()
            for key in share:
                started = time.perf_counter()
                value = client.get(key)
                durations.append(time.perf_counter() - started)
                wrong += value != key.encode()
        finally:
            client.close()
        return durations, wrong

    with ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(one, shares))
    return [d for ds, _ in results for d in ds], sum(w for _, w in results)


def tcp_under_loss(
    client: ToxiproxyClient, redis_address: str, report: dict[str, Any], commands: int
) -> None:
    lossy = client.create_proxy("redis", redis_address)
    clean = client.create_proxy("redis_clean", redis_address)
    keys = [f"key:{i}" for i in range(commands)]
    writer = redis.Redis(host=lossy.host, port=lossy.port)
    for start in range(0, commands, 1000):
        writer.mset({key: key for key in keys[start : start + 1000]})
    writer.close()
    print(
        f"\nTCP: redis-py GETs under packet_loss both ways, {commands:,} per rate, 20 connections"
    )
    header = " ".join(f"{'p' + format(q * 100, 'g'):>15}" for q in QUANTILES)
    print(f"{'run':<14} {header}  wrong  (measured / model, ms)")
    for proxy in (lossy, clean):  # warm up: connections, caches, the engine's code paths
        gets(proxy.address, keys[:2000], 20)
    baseline, wrong = gets(clean.address, keys, 20)
    cells = " ".join(f"{harness.quantile(baseline, q) * 1000:>15.2f}" for q in QUANTILES)
    print(f"{'no loss':<14} {cells}  {wrong:>5}")
    report["tcp"] = {
        "commands": commands,
        "baseline": {str(q): harness.quantile(baseline, q) for q in QUANTILES},
        "rates": [],
    }
    for index, rate in enumerate((0.01, 0.05, 0.2)):
        client.set_seed(200 + index)
        _, since = client.events(since=2**62)
        for stream in ("upstream", "downstream"):
            attributes = {"loss_rate": rate}
            client.add_toxic(
                "redis", "packet_loss", name=stream, stream=stream, attributes=attributes
            )
        try:
            durations, wrong = gets(lossy.address, keys, 20)
        finally:
            for stream in ("upstream", "downstream"):
                client.remove_toxic("redis", stream)
        model = model_quantiles(rate, baseline)
        cells = " ".join(
            f"{harness.quantile(durations, q) * 1000:>7.1f}/{model[q] * 1000:<7.1f}"
            for q in QUANTILES
        )
        print(f"{'loss ' + format(rate, '.0%'):<14} {cells}  {wrong:>5}")
        stalled = sum(d >= RTO * 0.9 for d in durations) / len(durations)
        stalled_model = 1 - (1 - rate) ** 2
        events, _ = client.events(since=since, proxy="redis")
        losses = Counter(e["losses"] for e in events if e["kind"] == "retransmitted")
        lost = sum(losses.values())
        given_lost = {k: losses[k] / lost if lost else 0.0 for k in (1, 2, 3)}
        given_lost_model = {k: (1 - rate) * rate ** (k - 1) for k in (1, 2, 3)}
        print(
            f"    GETs stalled {stalled:.4f} (model {stalled_model:.4f}); a lost segment lost"
            " k times, measured/model: "
            + ", ".join(f"k={k} {given_lost[k]:.3f}/{given_lost_model[k]:.3f}" for k in (1, 2, 3))
        )
        report["tcp"]["rates"].append(
            {"rate": rate, "measured": {str(q): harness.quantile(durations, q) for q in QUANTILES},
             "model": {str(q): v for q, v in model.items()}, "wrong": wrong,
             "stalled": stalled, "stalled_model": stalled_model,
             "lost_k_times": given_lost, "lost_k_times_model": given_lost_model}
        )  # fmt: skip


def tcp_reset_and_syn(client: ToxiproxyClient, report: dict[str, Any], connections: int) -> None:
    proxy = client.proxies()["redis"]
    conn = single_try(proxy.host, proxy.port)
    conn.ping()
    client.add_toxic(
        "redis", "packet_loss", name="all", attributes={"loss_rate": 1.0, "retries": 3}
    )
    started = time.perf_counter()
    try:
        conn.get("key:0")
        outcome = "answered"
    except redis.ConnectionError as error:
        outcome = type(error.__cause__ or error.__context__ or error).__name__
    took = time.perf_counter() - started
    client.remove_toxic("redis", "all")
    conn.close()
    print(f"\nTCP 100% loss, retries=3: {outcome} after {took:.3f} s (model: {stall(4):.3f} s)")
    client.set_seed(300)
    _, since = client.events(since=2**62)
    for stream in ("upstream", "downstream"):
        attributes = {"loss_rate": 0.2}
        client.add_toxic("redis", "packet_loss", name=stream, stream=stream, attributes=attributes)

    def connect() -> None:
        one = single_try(proxy.host, proxy.port)
        try:
            one.ping()
        finally:
            one.close()

    with ThreadPoolExecutor(25) as pool:
        list(pool.map(lambda _: connect(), range(connections)))
    for stream in ("upstream", "downstream"):
        client.remove_toxic("redis", stream)
    events, _ = client.events(since=since, proxy="redis")
    accepted = sum(e["kind"] == "accepted" for e in events)
    delays = [e["delay_ms"] for e in events if e["kind"] == "syn_lost"]
    held = len(delays) / accepted
    model = 1 - 0.8**2
    print(
        f"TCP new connections at 20% loss both ways: {held:.3f} held back by a lost SYN or"
        f" SYN-ACK over {accepted} (model: {model:.3f}); held 1 s: {delays.count(1000.0)},"
        f" 3 s: {delays.count(3000.0)}, 7 s: {delays.count(7000.0)}"
        f" (model shares of the held: {1 - model:.2f}, {model * (1 - model):.2f},"
        f" {model**2 * (1 - model):.2f})"
    )
    report["tcp_reset"] = {"outcome": outcome, "seconds": took, "model": stall(4)}
    report["tcp_syn"] = {"held": held, "model": model, "connections": accepted, "delays": delays}


@contextmanager
def services() -> Iterator[tuple[ToxiproxyClient, str, Sink]]:
    engine = EngineProcess(seed=1)
    redis_server = LocalProcess(redis_recipe())
    sink = Sink()
    try:
        client = ToxiproxyClient(engine.wait_ready())
        redis_server.start()
        yield client, f"{redis_server.host}:{redis_server.port}", sink
        client.close()
    finally:
        sink.close()
        redis_server.close()
        engine.stop()


def main() -> int:
    global DATAGRAMS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, a smoke test")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    args = parser.parse_args()
    if args.quick:
        DATAGRAMS = 2_000
    commands = 1_000 if args.quick else 10_000
    print(
        f"loss_bench: Python {platform.python_version()}, CPU {harness.cpu_model()},"
        f" {harness.package_versions(['redis'])}"
    )
    report: dict[str, Any] = {"udp_loss": [], "udp_order": []}
    with services() as (client, redis_address, sink):
        udp = Udp(client, sink)
        udp.run("noop", {}, 0)  # warm up
        harness.log("UDP loss...")
        udp_loss(udp, report)
        harness.log("UDP duplication and reordering...")
        udp_duplicates_and_order(udp, report)
        harness.log("UDP passthrough...")
        udp_passthrough(udp, report, 1.0 if args.quick else 3.0)
        harness.log("TCP under loss...")
        tcp_under_loss(client, redis_address, report, commands)
        harness.log("TCP reset and SYN...")
        tcp_reset_and_syn(client, report, 40 if args.quick else 200)
    if args.json:
        harness.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
