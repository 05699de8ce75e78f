"""Byte-for-byte transparency: random data, random chunking, both directions, with toxics
added, updated and removed mid-stream. Nothing may be lost, duplicated or reordered."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_chaos.engine import EngineThread
from tests.engine.api_helpers import add_toxic, connect, create_proxy
from tests.servers import echo_server

# Toxics that delay or reshape data but never drop it, slow enough that data is in flight
# inside them when the next change arrives.
GENTLE_TOXICS: list[tuple[str, dict[str, int]]] = [
    ("latency", {"latency": 30, "jitter": 20}),
    ("slicer", {"average_size": 3000, "size_variation": 2000, "delay": 200}),
    ("bandwidth", {"rate": 3_000}),
    ("noop", {}),
    ("slow_close", {"delay": 5}),
    ("limit_data", {"bytes": 10_000_000}),
]


@pytest.fixture(scope="module")
def shared_proxy() -> Iterator[tuple[httpx.Client, str]]:
    running = EngineThread(seed=99)
    running.start()
    try:
        with echo_server() as (host, port), httpx.Client(base_url=running.engine.url) as api:
            proxy = create_proxy(api, "echo", f"{host}:{port}")
            yield api, proxy["listen"]
    finally:
        running.stop()


def _add(api: httpx.Client, index: int, stream: str) -> str:
    type_, attributes = GENTLE_TOXICS[index]
    add_toxic(api, "echo", type=type_, stream=stream, attributes=attributes)
    return f"{type_}_{stream}"


def _change(api: httpx.Client, draw: st.DataObject, present: list[str]) -> None:
    """Add a toxic, or update or remove one that is present (as chosen by Hypothesis)."""
    action = draw.draw(st.sampled_from(["add", "update", "remove"] if present else ["add"]))
    if action == "add":
        index = draw.draw(st.sampled_from(range(len(GENTLE_TOXICS))))
        stream = draw.draw(st.sampled_from(["upstream", "downstream"]))
        if f"{GENTLE_TOXICS[index][0]}_{stream}" not in present:
            present.append(_add(api, index, stream))
        return
    name = draw.draw(st.sampled_from(present))
    if action == "update":
        type_ = name.rsplit("_", 1)[0]
        attributes = dict(GENTLE_TOXICS[[t for t, _ in GENTLE_TOXICS].index(type_)][1])
        response = api.patch(f"/proxies/echo/toxics/{name}", json={"attributes": attributes})
    else:
        present.remove(name)
        response = api.delete(f"/proxies/echo/toxics/{name}")
    assert response.status_code in (200, 204), response.text


def _read_all(sock: socket.socket, size: int, into: list[bytes]) -> None:
    received = 0
    while received < size:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return  # the test body failed and closed the socket; its error is the one to see
        if not chunk:
            break
        into.append(chunk)
        received += len(chunk)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.binary(min_size=1, max_size=150_000),
    cuts=st.lists(st.integers(min_value=1, max_value=40_000), min_size=1, max_size=12),
    initial=st.lists(
        st.tuples(
            st.sampled_from(range(len(GENTLE_TOXICS))), st.sampled_from(["upstream", "downstream"])
        ),
        max_size=4,
        unique=True,
    ),
    draw=st.data(),
)
def test_every_byte_arrives_once_and_in_order(
    shared_proxy: tuple[httpx.Client, str],
    data: bytes,
    cuts: list[int],
    initial: list[tuple[int, str]],
    draw: st.DataObject,
) -> None:
    api, listen = shared_proxy
    present = [_add(api, index, stream) for index, stream in initial]
    received: list[bytes] = []
    try:
        with connect(listen, timeout=20) as sock:
            reader = threading.Thread(target=_read_all, args=(sock, len(data), received))
            reader.start()
            offset = 0
            for cut in cuts:
                sock.sendall(data[offset : offset + cut])
                offset += cut
                _change(api, draw, present)
            sock.sendall(data[offset:])
            _change(api, draw, present)
            reader.join(timeout=30)
            assert not reader.is_alive(), "the echo never completed"
    finally:
        api.post("/reset")
    assert b"".join(received) == data
