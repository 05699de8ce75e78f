#!/usr/bin/env python3
"""Benchmark the engine's HTTP-aware toxics: fidelity and cost.

Run from the project root with the project's virtualenv:

    .venv/bin/python benchmarks/http_bench.py [--quick] [--json PATH]

The engine (`python -m pytest_chaos serve`) and the upstream (uvicorn, one worker) run in
processes of their own; this script is the client. It measures, in one run:

- the error rate of `http_error` against its configured probability, over 2,000 requests per
  probability (target: within 3 percentage points);
- the delay accuracy of `http_delay`: the shortest round trip with a 50 ms delay less the
  delay (never below 0: no request is released early), and each round trip's time beyond the
  delay and the median round trip through the same proxy without it;
- requests per second, keep-alive, 8 connections: direct to uvicorn, through a proxy with no
  toxic (the plain TCP path) and through a proxy whose connections are read as HTTP (an
  `http_error` that matches nothing: every request parsed, judged and recorded), as ratios
  against direct measured in the same run, rounds interleaved.

Only 127.0.0.1 is contacted. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, also under `python -m`
import harness
from harness import BenchError, TokenSupervisor

from pytest_chaos._ports import free_port

HOST = "127.0.0.1"
READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
UPSTREAM_CMD = "_upstream"
PROBABILITIES = (0.1, 0.3, 0.5, 0.9)
DELAY_MS = 50
CONNECTIONS = 8
STARTUP_SECONDS = 20.0
REQUEST = b"GET /item HTTP/1.1\r\nHost: bench\r\n\r\n"


# ------------------------------------------------------------------------------ upstream
async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The upstream: a fixed small answer, as cheap as uvicorn can serve it."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def run_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(
        upstream_app,
        host=HOST,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
    )


# -------------------------------------------------------------------------------- client
class Client:
    """One keep-alive connection speaking HTTP/1.1 through h11, blocking."""

    def __init__(self, port: int) -> None:
        import h11

        self.h11 = h11
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = h11.Connection(h11.CLIENT)

    def get(self, path: str = "/item") -> int:
        h11 = self.h11
        data = self.reader.send(h11.Request(method="GET", target=path, headers=[("host", "b")]))
        data += self.reader.send(h11.EndOfMessage())
        self.sock.sendall(data)
        status = 0
        while not isinstance(event := self.reader.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise BenchError("the connection closed mid-answer")
                self.reader.receive_data(chunk)
            elif isinstance(event, h11.Response):
                status = event.status_code
        self.reader.start_next_cycle()
        return status

    def close(self) -> None:
        self.sock.close()


async def load(port: int, seconds: float) -> float:
    """Requests per second over `CONNECTIONS` keep-alive connections for `seconds`, each
    connection sending its next request once the previous answer is in (answers counted by
    their fixed size, framed once with h11 beforehand)."""
    probe = Client(port)
    try:
        probe.sock.sendall(REQUEST)
        answer = b""
        while not answer.endswith(b"ok"):
            answer += probe.sock.recv(65536)
    finally:
        probe.close()
    size = len(answer)
    done = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.monotonic() < deadline:
                writer.write(REQUEST)
                await reader.readexactly(size)
                done += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(CONNECTIONS)))
    return done / (time.monotonic() - started)


# ------------------------------------------------------------------------------- engine
class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
        return json.loads(raw) if raw.strip() else None

    def proxy(self, name: str, upstream_port: int) -> int:
        shown = self.call("POST", "/proxies", {"name": name, "upstream": f"{HOST}:{upstream_port}"})
        return int(shown["listen"].rsplit(":", 1)[1])

    def toxic(self, proxy: str, type_: str, name: str, **attributes: Any) -> None:
        body = {"type": type_, "name": name, "attributes": attributes}
        self.call("POST", f"/proxies/{proxy}/toxics", body)

    def remove(self, proxy: str, name: str) -> None:
        self.call("DELETE", f"/proxies/{proxy}/toxics/{name}")


def start_engine(supervisor: TokenSupervisor, log_path: Path) -> Api:
    import subprocess

    log_file = log_path.open("w+")
    command = [sys.executable, "-m", "pytest_chaos", "serve", "--host", HOST, "--port", "0"]
    supervisor.spawn([*command, "--seed", "7"], stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        found = READY.search(log_path.read_text())
        if found:
            return Api(found.group(1))
        time.sleep(0.05)
    raise BenchError(f"the engine did not start: {log_path.read_text()[-2000:]}")


def start_upstream(supervisor: TokenSupervisor) -> int:
    port = free_port()
    supervisor.spawn([sys.executable, __file__, UPSTREAM_CMD, str(port)])
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            Client(port).close()
            return port
        except OSError:
            time.sleep(0.05)
    raise BenchError("uvicorn did not start")


# --------------------------------------------------------------------------- measurements
def error_rates(api: Api, port: int, requests: int) -> dict[str, float]:
    rates: dict[str, float] = {}
    for index, probability in enumerate(PROBABILITIES):
        name = f"error_{index}"
        api.toxic("http", "http_error", name, status=503, probability=probability)
        client = Client(port)
        try:
            failed = sum(client.get() == 503 for _ in range(requests))
        finally:
            client.close()
            api.remove("http", name)
        rates[f"{probability:.2f}"] = failed / requests
    return rates


def round_trips(port: int, samples: int) -> list[float]:
    client = Client(port)
    try:
        client.get()
        found = []
        for _ in range(samples):
            started = time.perf_counter()
            client.get()
            found.append(time.perf_counter() - started)
        return found
    finally:
        client.close()


def delay_excess(api: Api, port: int, samples: int) -> tuple[float, list[float]]:
    """The shortest delayed round trip less the delay (never below 0 if no request was
    released early), and each delayed round trip's time beyond the delay and the undelayed
    median round trip, in ms."""
    plain = harness.median(round_trips(port, samples))
    api.toxic("http", "http_delay", "delay", ms=DELAY_MS)
    try:
        delayed = round_trips(port, samples)
    finally:
        api.remove("http", "delay")
    return min(delayed) * 1000 - DELAY_MS, [(t - plain) * 1000 - DELAY_MS for t in delayed]


def throughput(ports: dict[str, int], seconds: float, rounds: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(rounds):
        for name, port in ports.items():
            found[name].append(asyncio.run(load(port, seconds)))
    return found


def bench(supervisor: TokenSupervisor, workdir: Path, args: argparse.Namespace) -> int:
    quick = args.quick
    upstream = start_upstream(supervisor)
    api = start_engine(supervisor, workdir / "engine.log")
    plain = api.proxy("plain", upstream)
    http = api.proxy("http", upstream)
    api.toxic("http", "http_error", "never", match="/never")
    report: dict[str, Any] = {
        "machine": f"{platform.python_implementation()} {platform.python_version()},"
        f" CPU {harness.cpu_model()}",
    }
    print(f"# http_bench: {report['machine']}")

    requests = 400 if quick else 2000
    harness.log(f"error rates over {requests} requests...")
    rates = error_rates(api, http, requests)
    report["error_rates"] = rates
    print(f"\nhttp_error rate over {requests} requests (target: within 0.03 of the probability)")
    print("| probability | measured | difference |\n| --- | --- | --- |")
    for probability, rate in rates.items():
        verdict = "ok" if abs(rate - float(probability)) <= 0.03 else "MISS"
        print(f"| {probability} | {rate:.3f} | {rate - float(probability):+.3f} ({verdict}) |")

    samples = 50 if quick else 200
    harness.log(f"delay accuracy over {samples} requests...")
    shortest, excess = delay_excess(api, http, samples)
    quantiles = [harness.quantile(excess, q) for q in (0.5, 0.95, 0.99)]
    report["delay_ms"] = {
        "shortest_round_trip_less_delay": shortest,
        **dict(zip(("excess_p50", "excess_p95", "excess_p99"), quantiles, strict=True)),
    }
    print(f"\nhttp_delay of {DELAY_MS} ms over {samples} requests (ms): the shortest round trip")
    print("less the delay (>= 0: never early), and the time beyond the delay and the median")
    print("round trip without it")
    print("| shortest - delay | beyond p50 | beyond p95 | beyond p99 |")
    print("| --- | --- | --- | --- |")
    print(f"| {shortest:+.2f} | " + " | ".join(f"{value:+.2f}" for value in quantiles) + " |")

    seconds, rounds = (1.0, 1) if quick else (4.0, 3)
    harness.log(f"requests per second, {rounds} rounds of {seconds:g} s per path...")
    rates_per_path = throughput(
        {"direct": upstream, "plain TCP proxy": plain, "HTTP-aware proxy": http}, seconds, rounds
    )
    medians = {name: harness.median(values) for name, values in rates_per_path.items()}
    report["requests_per_second"] = rates_per_path
    direct = medians["direct"]
    print(f"\nrequests per second, {CONNECTIONS} keep-alive connections (median of {rounds})")
    print("| path | req/s | / direct | / plain TCP proxy |\n| --- | --- | --- | --- |")
    for name, value in medians.items():
        print(
            f"| {name} | {value:,.0f} | {value / direct:.2f} |"
            f" {value / medians['plain TCP proxy']:.2f} |"
        )
    if args.json is not None:
        harness.write_json(args.json, report)
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == UPSTREAM_CMD:
        run_upstream(int(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    return harness.run_supervised(
        TokenSupervisor,
        lambda supervisor, workdir: bench(supervisor, workdir, args),
        needs="pytest_chaos.engine",
        tmp_prefix="http-bench-",
    )


if __name__ == "__main__":
    sys.exit(main())
