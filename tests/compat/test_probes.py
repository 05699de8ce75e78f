"""What differential probes of upstream Toxiproxy 2.12.0 and the engine found, kept as checks
against the served engine: slicer limits, refused upstreams, racing creates, names that need
percent-encoding, and upstream's byte counters over a proxy's life.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.engine.api_helpers import (
    add_toxic,
    assert_error,
    assert_refused,
    concurrently,
    connect,
    create_proxy,
    echo_round_trip,
    exchange,
    late_dials,
    read_until_closed,
    statuses,
    wait_until,
)
from tests.servers import free_port

CLIENTS = 20


class Sink:
    """A TCP server recording, per connection, the size of every read (a write's pieces)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.reads: list[list[bytes]] = []
        threading.Thread(target=self._accept, name="sink", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            reads: list[bytes] = []
            self.reads.append(reads)
            threading.Thread(target=self._read, args=(conn, reads), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, reads: list[bytes]) -> None:
        with conn:
            while data := conn.recv(65536):
                reads.append(data)
            reads.append(b"")  # the end of the stream


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.sock.close()


def slicer(average: int, variation: int, delay: int) -> dict[str, Any]:
    attributes = {"average_size": average, "size_variation": variation, "delay": delay}
    return {"type": "slicer", "stream": "upstream", "attributes": attributes}


def sliced(api: httpx.Client, sink: Sink, listen: str, payload: bytes) -> list[bytes]:
    """The reads the sink saw of `payload`, sent through the proxy as one write."""
    with connect(listen) as sock:
        sock.sendall(payload)
    wait_until(lambda: bool(sink.reads) and sink.reads[-1][-1:] == [b""])
    return sink.reads[-1][:-1]


# -- slicer: upstream accepts a variation up to the average, and crashes beyond it
@pytest.mark.parametrize(("average", "variation", "delay"), [(1000, 1000, 20000), (1, 0, 0)])
def test_slicer_within_limits_slices_intact(
    api: httpx.Client, sink: Sink, average: int, variation: int, delay: int
) -> None:
    proxy = create_proxy(api, "sl", sink.address)
    toxic = add_toxic(api, "sl", **slicer(average, variation, delay))
    assert toxic["attributes"] == slicer(average, variation, delay)["attributes"]
    payload = bytes(range(256)) * 20

    reads = sliced(api, sink, proxy["listen"], payload)

    assert b"".join(reads) == payload
    assert len(reads) > 1  # cut into pieces (one write of 5120 bytes otherwise)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (slicer(10, 20, 20000), "size_variation of slicer must be at most average_size (10)"),
        (slicer(100, 150, 0), "size_variation of slicer must be at most average_size (100)"),
        (slicer(0, 0, 0), "average_size of slicer must be at least 1 (bytes)"),
    ],
)
def test_slicer_beyond_limits_is_refused(
    api: httpx.Client, dead: int, attributes: dict[str, Any], message: str
) -> None:
    # Upstream takes these, then panics on the first write and the whole server exits.
    create_proxy(api, "sl", f"127.0.0.1:{dead}")

    response = api.post("/proxies/sl/toxics", json=attributes)

    assert response.status_code == 400
    assert message in response.json()["error"]
    assert api.get("/proxies/sl/toxics").json() == []


# -- a refused upstream: the client's dial succeeds, then it reads a clean end
def test_a_refused_upstream_is_a_prompt_fin_and_never_a_failed_dial(
    api: httpx.Client, dead: int
) -> None:
    proxy = create_proxy(api, "refused", f"127.0.0.1:{dead}")

    clients = late_dials(proxy["listen"], 200)
    try:
        started = time.monotonic()
        for sock in clients:
            assert sock.recv(10) == b""  # a FIN: a reset would raise ConnectionResetError
        # At once, not after the drain's grace period (5 s).
        assert time.monotonic() - started < 2.5
    finally:
        for sock in clients:
            sock.close()


def test_a_client_that_speaks_before_the_refusal_still_reads_a_fin(
    api: httpx.Client, dead: int
) -> None:
    # Upstream resets about half of these: it closes a socket holding unread data.
    proxy = create_proxy(api, "refused", f"127.0.0.1:{dead}")
    for _ in range(10):
        with connect(proxy["listen"]) as sock:
            sock.sendall(b"hello")
            assert read_until_closed(sock) == b""


# -- racing clients see upstream's outcomes
def test_concurrent_creates_of_one_name_give_one_201(api: httpx.Client, echo: str) -> None:
    # As a user sees it. Whether an unserialised create lets a second one in depends on timing
    # here; tests/engine/test_api_concurrency.py forces the interleaving that shows it.
    ports = [free_port() for _ in range(CLIENTS)]
    requests = [
        ("POST", "/proxies", {"name": "dup", "listen": f"127.0.0.1:{port}", "upstream": echo})
        for port in ports
    ]

    responses = concurrently(str(api.base_url), requests)

    assert statuses(responses) == {201: 1, 409: CLIENTS - 1}
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "proxy already exists")
    winner = next(r.json()["listen"] for r in responses if r.status_code == 201)
    assert list(api.get("/proxies").json()) == ["dup"]
    for port in ports:
        if f"127.0.0.1:{port}" != winner:
            assert_refused(f"127.0.0.1:{port}")  # no hidden listener
    assert echo_round_trip(winner) == b"ping"

    assert api.delete("/proxies/dup").status_code == 204
    assert_refused(winner)


def test_concurrent_toxic_adds_of_one_name_give_one_200(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)
    requests = [
        ("POST", "/proxies/p/toxics", {"name": "same", "type": "latency"}) for _ in range(CLIENTS)
    ]

    responses = concurrently(str(api.base_url), requests)

    assert statuses(responses) == {200: 1, 409: CLIENTS - 1}
    assert [toxic["name"] for toxic in api.get("/proxies/p/toxics").json()] == ["same"]


# -- names a client must percent-encode
@pytest.mark.parametrize("name", ["a?b", "a#b", "a b", "a%2Fb"])
def test_names_needing_percent_encoding_are_reachable(
    api: httpx.Client, echo: str, name: str
) -> None:
    proxy = create_proxy(api, name, echo)
    path = f"/proxies/{quote(name, safe='')}"

    assert api.get(path).json() == proxy
    assert echo_round_trip(proxy["listen"]) == b"ping"
    added = api.post(f"{path}/toxics", json={"name": name, "type": "latency"})
    assert added.status_code == 200, added.text
    toxic_path = f"{path}/toxics/{quote(name, safe='')}"
    assert api.get(toxic_path).json()["name"] == name
    assert api.delete(toxic_path).status_code == 204
    assert api.delete(path).status_code == 204
    assert api.get("/proxies").json() == {}


# -- upstream's byte counters over a proxy's life
def upstream_counters(api: httpx.Client, proxy: str) -> dict[tuple[str, str], float]:
    """(family, direction) -> value of upstream's counters for `proxy`, from `/metrics`."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(api.get("/metrics").text):
        if family.name.startswith("toxiproxy_proxy_"):
            for sample in family.samples:
                if sample.labels["proxy"] == proxy:
                    found[(sample.name, sample.labels["direction"])] = sample.value
    return found


def test_upstream_counters_count_a_connection_and_outlive_the_proxy(
    api: httpx.Client, echo: str
) -> None:
    proxy = create_proxy(api, "lifecycle", echo)
    with connect(proxy["listen"]) as sock:
        assert exchange(sock, b"x" * 500) == b"x" * 500
    expected = {
        (f"toxiproxy_proxy_{family}_bytes_total", direction): 500.0
        for family in ("received", "sent")
        for direction in ("upstream", "downstream")
    }
    wait_until(lambda: upstream_counters(api, "lifecycle") == expected)

    assert api.delete("/proxies/lifecycle").status_code == 204

    # As upstream: a label set, once seen, stays for the life of the server.
    assert upstream_counters(api, "lifecycle") == expected
