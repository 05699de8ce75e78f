"""The engine's own Python work for one short proxied connection, without sockets.

A connection's whole life goes through the engine's real `Proxy`, `Connection`, `Link` and
`EventLog` code: accepted, the upstream dialled, a request one way and an answer the other,
a FIN from each side, closed, its sockets gone. Transports and the dial are stand-ins that
do nothing, so what is measured is only the engine's bookkeeping: the part a new connection
adds on top of the system calls every proxy makes (what `engine_bench.py`'s "new
connections" row measures end to end, noisily on a shared machine).

Two figures, plain and with do-nothing toxics (latency 0 on both streams):

- microseconds of process CPU per connection (best of the repetitions);
- with `--callgrind`: instructions per connection, counted by valgrind's callgrind: exact and
  the same on every run, so a change of a few percent shows through any amount of machine
  noise (about a minute per figure; needs `valgrind`, a Debian package).

    .venv/bin/python benchmarks/connection_cost.py
    .venv/bin/python benchmarks/connection_cost.py --callgrind
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_chaos.engine.connection import SideProtocol
from pytest_chaos.engine.events import EventLog
from pytest_chaos.engine.proxy import Proxy
from pytest_chaos.engine.tasks import TaskSet

TOXIC_STREAMS = ("upstream", "downstream")
WARM_UP = 2_000
CALLGRIND_CONNECTIONS = 2_000


class StandInTransport:
    """A transport that accepts every call and does nothing; closing it reports the socket
    gone on the next `settle()`, as a loop reports it on a later turn."""

    def __init__(self, peer: tuple[str, int], lost: list[asyncio.BaseProtocol]) -> None:
        self.peer = peer
        self.protocol: asyncio.BaseProtocol | None = None
        self._lost = lost
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def write_eof(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        if not self._closing and self.protocol is not None:
            self._closing = True
            self._lost.append(self.protocol)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class StandInLoop:
    """What a connection asks of its loop: a dial that connects at once."""

    def __init__(self, lost: list[asyncio.BaseProtocol]) -> None:
        self._lost = lost

    async def create_connection(
        self, factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> tuple[StandInTransport, asyncio.BaseProtocol]:
        protocol = factory()
        transport = StandInTransport((host, port), self._lost)
        transport.protocol = protocol
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return transport, protocol


class InlineTasks(TaskSet):
    """Runs a spawned coroutine to its end at once (the stand-in dial never waits)."""

    def spawn(self, coro: Any, name: str, loop: asyncio.AbstractEventLoop | None = None) -> Any:
        try:
            coro.send(None)
        except StopIteration:
            return None
        raise RuntimeError(f"{name} waited: the stand-ins should never make it wait")


class Bench:
    """One proxy to `127.0.0.1:6379` (never dialled), with or without do-nothing toxics."""

    def __init__(self, toxics: bool) -> None:
        self.lost: list[asyncio.BaseProtocol] = []
        proxy = Proxy(
            "bench",
            "127.0.0.1:0",
            "127.0.0.1:6379",
            events=EventLog(),
            seed=None,
            tasks=InlineTasks(),
            connection_ids=itertools.count(1),
        )
        proxy.loop = StandInLoop(self.lost)  # type: ignore[assignment]
        proxy.listen, proxy.enabled = "127.0.0.1:40000", True
        for stream in TOXIC_STREAMS if toxics else ():
            proxy.add_toxic(
                {"name": f"zero_{stream}", "type": "latency", "stream": stream, "attributes": {}}
            )
        self.proxy = proxy

    def connection(self) -> None:
        """One connection's life: PING up, PONG down, FIN both ways, both sockets gone."""
        client_side = SideProtocol(self.proxy._new_connection(), "client")
        client = StandInTransport(("127.0.0.1", 45678), self.lost)
        client.protocol = client_side
        client_side.connection_made(client)  # type: ignore[arg-type]
        server = client_side.connection.server
        assert server is not None, "the stand-in dial did not connect"
        server_side = server.protocol  # type: ignore[attr-defined]
        client_side.data_received(b"PING\r\n")
        server_side.data_received(b"+PONG\r\n")
        client_side.eof_received()
        server_side.eof_received()
        while self.lost:
            self.lost.pop().connection_lost(None)

    def run(self, count: int) -> float:
        """Seconds of process CPU for `count` connections."""
        started = time.process_time()
        for _ in range(count):
            self.connection()
        return time.process_time() - started


def check_life_cycle() -> None:
    """Refuse to measure a life that is not the real one (events as a socket's life has)."""
    bench = Bench(toxics=True)
    bench.connection()
    kinds = [event["kind"] for event in bench.proxy.events.since(0)]
    wanted = ["accepted", "upstream_connected", "toxics_active", "data", "half_closed"]
    if not set(wanted) <= set(kinds) or kinds[-1] != "closed" or bench.proxy.connections:
        raise SystemExit(f"the stand-in connection did not live a whole life: {kinds}")


def cpu_figures(count: int, repeat: int) -> dict[str, float]:
    """Best-of-`repeat` microseconds of CPU per connection, plain and with toxics."""
    figures = {}
    for label, toxics in (("plain", False), ("do-nothing toxics", True)):
        bench = Bench(toxics)
        bench.run(WARM_UP)
        figures[label] = min(bench.run(count) for _ in range(repeat)) / count * 1e6
    return figures


def callgrind_figures() -> dict[str, float]:
    """Instructions per connection: (connections + warm-up) minus warm-up alone."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install -y valgrind)")
    figures = {}
    for label, flag in (("plain", []), ("do-nothing toxics", ["--toxics"])):
        counts = []
        for connections in (0, CALLGRIND_CONNECTIONS):
            command = [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                str(Path(__file__).resolve()),
                "--inner",
                str(connections),
                *flag,
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            found = re.search(r"Collected : (\d+)", done.stderr)
            if found is None:
                raise SystemExit(f"callgrind printed no count:\n{done.stderr[-2000:]}")
            counts.append(int(found.group(1)))
        figures[label] = (counts[1] - counts[0]) / CALLGRIND_CONNECTIONS
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="connections per repetition")
    parser.add_argument("--repeat", type=int, default=7, help="repetitions (the best counts)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions too")
    parser.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--toxics", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Start-up objects out of the collector's way, as the engine's serve process does.
    gc.collect()
    gc.freeze()
    if args.inner is not None:  # one callgrind run: warm up, then `inner` connections
        bench = Bench(args.toxics)
        bench.run(WARM_UP + args.inner)
        return 0
    check_life_cycle()
    cpu = cpu_figures(args.count, args.repeat)
    print("one short connection's life in the engine's Python (stand-in sockets)")
    print(f"  CPU per connection, plain:             {cpu['plain']:7.1f} us")
    toxic_cpu = cpu["do-nothing toxics"]
    ratio = toxic_cpu / cpu["plain"]
    print(f"  CPU per connection, do-nothing toxics: {toxic_cpu:7.1f} us  ({ratio:.2f}x plain)")
    if args.callgrind:
        counts = callgrind_figures()
        plain, toxic = counts["plain"], counts["do-nothing toxics"]
        print(f"  instructions per connection, plain:             {plain:9,.0f}")
        print(
            f"  instructions per connection, do-nothing toxics: {toxic:9,.0f}"
            f"  ({toxic / plain:.2f}x plain)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
