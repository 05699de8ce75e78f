"""One event loop serves the API and every proxy: no toxic may starve the others.

The engine runs as `pytest-chaos serve` in its own process here, as the plugin runs it: an
engine thread in the test process would share the GIL with the threads measuring it.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx

from tests.engine.api_helpers import add_toxic, connect, create_proxy, round_trip_seconds
from tests.engine.served import serve
from tests.servers import echo_server

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PROMPT_SECONDS = 0.2
# A loop that never yields stalls every request for the whole transfer (13 s for 1 MiB
# before the fix); one sample up to this long is the shared machine, not the engine.
STALL_SECONDS = 1.0


class Prompts:
    """Measures, in a thread, how long API requests and latency round trips take."""

    def __init__(self, api: httpx.Client, timed_listen: str) -> None:
        self.api = api
        self.timed_listen = timed_listen
        self.api_seconds: list[float] = []
        self.round_trips: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._measure)

    def _measure(self) -> None:
        with connect(self.timed_listen) as timed_sock:
            while not self.done.is_set():
                started = time.perf_counter()
                assert self.api.get("/proxies/timed").status_code == 200
                self.api_seconds.append(time.perf_counter() - started)
                self.round_trips.append(round_trip_seconds(timed_sock))

    def __enter__(self) -> Prompts:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.thread.join(60)


def _through(listen: str, payload: bytes, prompts: Prompts) -> bytes:
    """Send `payload` and read it back; measure promptness while it flows."""
    with connect(listen, timeout=60) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        received = sock.recv(1)
        # Blocking calls that hold no GIL while a million tiny segments come in: the measuring
        # thread must not wait for this process's GIL instead of for the engine. (The test's
        # timeout bounds them.)
        sock.settimeout(None)
        with prompts:
            while len(received) < len(payload):
                more = sock.recv(len(payload) - len(received), socket.MSG_WAITALL)
                if not more:
                    break
                received += more
        sender.join()
    return received


def test_a_one_byte_slicer_leaves_the_api_and_other_proxies_prompt() -> None:
    with (
        serve("-port", "0") as served,
        echo_server() as (host, port),
        httpx.Client(base_url=served.url, timeout=30) as api,
    ):
        sliced = create_proxy(api, "sliced", f"{host}:{port}")
        timed = create_proxy(api, "timed", f"{host}:{port}")
        add_toxic(api, "sliced", type="slicer", attributes={"average_size": 1})
        add_toxic(api, "timed", type="latency", attributes={"latency": 20})
        prompts = Prompts(api, timed["listen"])

        received = _through(sliced["listen"], PAYLOAD, prompts)

    assert received == PAYLOAD
    assert len(prompts.round_trips) >= 10
    api_seconds = sorted(prompts.api_seconds)
    assert _p90(api_seconds) < PROMPT_SECONDS, api_seconds[-5:]
    assert api_seconds[-1] < STALL_SECONDS, api_seconds[-5:]
    round_trips = sorted(prompts.round_trips)
    assert round_trips[0] >= 0.020
    assert _p90(round_trips) < 0.020 + PROMPT_SECONDS, round_trips[-5:]
    assert round_trips[-1] < 0.020 + STALL_SECONDS, round_trips[-5:]


def _p90(ordered: list[float]) -> float:
    return ordered[int(len(ordered) * 0.9)]


def test_a_one_byte_slicer_writes_each_byte_on_its_own(api: httpx.Client, echo: str) -> None:
    """The slices really are separate writes: a reader sees many small reads."""
    proxy = create_proxy(api, "sliced", echo)
    add_toxic(api, "sliced", type="slicer", attributes={"average_size": 1, "delay": 1000})
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"0123456789")
        reads = []
        while sum(map(len, reads)) < 10:
            reads.append(sock.recv(10))
    assert b"".join(reads) == b"0123456789"
    assert len(reads) >= 5
