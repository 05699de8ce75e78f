#!/usr/bin/env python3
"""How faithful DNS faults are, and what the in-process layer costs a lookup.

Run from the project root with the project's virtualenv:

    .venv/bin/python benchmarks/dns_bench.py [--quick] [--json PATH]

1. Failure rate: `dns_failure(probability=p)` for p in 0.1, 0.3, 0.5, 0.9; 2,000 lookups
   each, in-process (`socket.gethostbyname`) and at the DNS server (dnspython over UDP). The
   observed share of failed lookups must be within 3 percentage points of p (PASS/MISS).
2. Delay: `dns_failure(delay=50, probability=0)`: each lookup's time minus the same lookup's
   time without the fault, in-process and at the server (p50, p95, p99, worst; the target is
   a delay never shorter than configured and a p99 excess under 5 ms in-process).
3. Overhead per lookup of the in-process layer, against the same call without it (same run,
   alternating blocks with and without the layer; `added` is the median of the per-pair
   differences):
   - a name the plugin does not know (`localhost`, answered by /etc/hosts): what every other
     lookup in the process pays while the layer is installed;
   - a numeric address (`127.0.0.1`), which the layer passes through at once;
   - a name mapped with `chaos.resolve` answered by the layer, against `localhost` answered
     by glibc from /etc/hosts (the cheapest real answer).

No query leaves the machine: the mapped and faulted names are answered by the plugin, and
`localhost` by /etc/hosts. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import platform
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, also under `python -m`
import dns.resolver
import harness

from pytest_chaos.dns.session import DnsSession
from pytest_chaos.faults import DnsFailure

PROBABILITIES = (0.1, 0.3, 0.5, 0.9)
LOOKUPS = 2_000
TOLERANCE = 0.03  # 3 percentage points
DELAY_MS = 50
NAME = "db.internal"


def rate_in_process(session: DnsSession, probability: float, lookups: int, seed: int) -> float:
    active = session.add_fault(DnsFailure(NAME, probability=probability), seed=seed, ordinal=0)
    failed = 0
    try:
        for _ in range(lookups):
            try:
                socket.gethostbyname(NAME)
            except socket.gaierror:
                failed += 1
    finally:
        session.remove_fault(active)
    return failed / lookups


def resolver_for(session: DnsSession) -> dns.resolver.Resolver:
    server = session.server()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.host]
    resolver.port = server.port
    resolver.lifetime = 5
    return resolver


def rate_at_server(session: DnsSession, probability: float, lookups: int, seed: int) -> float:
    resolver = resolver_for(session)
    active = session.add_fault(DnsFailure(NAME, probability=probability), seed=seed, ordinal=0)
    failed = 0
    try:
        for _ in range(lookups):
            try:
                resolver.resolve(NAME, "A")
            except dns.resolver.NXDOMAIN:
                failed += 1
    finally:
        session.remove_fault(active)
    return failed / lookups


def timed(call: Callable[[], Any], times: int) -> list[float]:
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return durations


def delays(session: DnsSession, samples: int) -> dict[str, list[float]]:
    """Per layer: each delayed lookup's time minus the median undelayed one, in ms."""
    resolver = resolver_for(session)
    layers: dict[str, Callable[[], Any]] = {
        "in-process": lambda: socket.gethostbyname(NAME),
        "server": lambda: resolver.resolve(NAME, "A"),
    }
    found = {}
    for layer, call in layers.items():
        plain = harness.median(timed(call, samples))
        active = session.add_fault(
            DnsFailure(NAME, delay=DELAY_MS, probability=0), seed=1, ordinal=0
        )
        try:
            slow = timed(call, samples)
        finally:
            session.remove_fault(active)
        found[layer] = [(d - plain) * 1000 - DELAY_MS for d in slow]
    return found


def per_call(call: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def overheads(blocks: int, calls: int) -> dict[str, dict[str, float]]:
    """Seconds per call with and without the layer, in alternating blocks of `calls` calls
    (the layer installed for one block, removed for the next): medians of each, and the
    median of the per-pair differences, which cancels most of the machine's drift."""
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "unknown name (localhost)": (
            lambda: socket.getaddrinfo("localhost", 80),
            lambda: socket.getaddrinfo("localhost", 80),
        ),
        "numeric address": (
            lambda: socket.getaddrinfo("127.0.0.1", 80),
            lambda: socket.getaddrinfo("127.0.0.1", 80),
        ),
        "mapped name vs localhost": (
            lambda: socket.getaddrinfo(NAME, 80),
            lambda: socket.getaddrinfo("localhost", 80),
        ),
    }
    session = DnsSession()
    found: dict[str, dict[str, float]] = {}
    try:
        for name, (with_layer, without_layer) in cases.items():
            withs, withouts, added = [], [], []
            for _ in range(blocks):
                without = per_call(without_layer, calls)
                handle = session.add_name(NAME, addresses=("127.0.0.1",), source="bench")
                try:
                    with_ = per_call(with_layer, calls)
                finally:
                    handle.revert()
                withs.append(with_)
                withouts.append(without)
                added.append(with_ - without)
            found[name] = {
                "with": harness.median(withs),
                "without": harness.median(withouts),
                "added": harness.median(added),
            }
    finally:
        session.close()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, a smoke test")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    args = parser.parse_args()
    lookups = 500 if args.quick else LOOKUPS
    samples = 40 if args.quick else 200
    blocks, calls = (10, 500) if args.quick else (60, 1_000)

    print(
        f"dns_bench: Python {platform.python_version()}, {platform.libc_ver()[0]}"
        f" {platform.libc_ver()[1]}, CPU {harness.cpu_model()}"
    )
    report: dict[str, Any] = {"rates": [], "delays": {}, "overhead": {}}
    session = DnsSession()
    session.add_name(NAME, addresses=("127.0.0.1",), source="bench")
    try:
        harness.log("failure rates...")
        print(f"\nfailure rate over {lookups} lookups per layer (target: within 3 points)")
        print(f"{'probability':>11}  {'in-process':>10}  {'server':>8}  verdict")
        for index, probability in enumerate(PROBABILITIES):
            local = rate_in_process(session, probability, lookups, seed=index)
            remote = rate_at_server(session, probability, lookups, seed=index)
            ok = max(abs(local - probability), abs(remote - probability)) <= TOLERANCE
            print(
                f"{probability:>11.2f}  {local:>10.3f}  {remote:>8.3f}  {'PASS' if ok else 'MISS'}"
            )
            report["rates"].append(
                {"probability": probability, "in_process": local, "server": remote, "pass": ok}
            )
        harness.log("delays...")
        print(f"\ndelay {DELAY_MS} ms: time beyond it per lookup, ms ({samples} lookups)")
        print(f"{'layer':>10}  {'min':>6}  {'p50':>6}  {'p95':>6}  {'p99':>6}  {'max':>6}")
        for layer, excess in delays(session, samples).items():
            row = [min(excess), *(harness.quantile(excess, q) for q in (0.5, 0.95, 0.99))]
            row.append(max(excess))
            print(f"{layer:>10}  " + "  ".join(f"{value:>+6.2f}" for value in row))
            report["delays"][layer] = excess
    finally:
        session.close()
    harness.log("overhead...")
    print(f"\nin-process layer, per lookup ({blocks} alternating blocks of {calls} calls)")
    print(f"{'case':>26}  {'with':>8}  {'without':>8}  {'added':>8}  ratio")
    for name, figures in overheads(blocks, calls).items():
        added = figures["added"]
        print(
            f"{name:>26}  {figures['with'] * 1e6:>6.2f}us  {figures['without'] * 1e6:>6.2f}us"
            f"  {added * 1e6:>+6.2f}us  {figures['with'] / figures['without']:.2f}"
        )
        report["overhead"][name] = figures
    if args.json:
        harness.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
