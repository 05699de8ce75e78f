"""What a long-lived engine keeps: closed connections are freed at once, not left to the
cyclic garbage collector (whose pauses would delay every timer of the loop)."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from pytest_chaos.engine import EngineThread
from pytest_chaos.engine.connection import Connection
from tests.engine.api_helpers import add_toxic, connect, create_proxy


@pytest.fixture
def collector_off() -> Iterator[None]:
    """The cyclic collector off, so whatever only it could free stays to be counted."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def _left_for_the_collector() -> int:
    return sum(1 for thing in gc.get_objects() if isinstance(thing, Connection))


@pytest.mark.parametrize("toxic", [None, "latency"])
def test_closed_connections_are_freed_without_the_cyclic_collector(
    engine: EngineThread, api: httpx.Client, echo: str, collector_off: None, toxic: str | None
) -> None:
    listen = create_proxy(api, "p", echo)["listen"]
    if toxic is not None:
        add_toxic(api, "p", type=toxic, attributes={"latency": 1})
    for _ in range(40):
        with connect(listen) as sock:
            sock.sendall(b"x")
            assert sock.recv(10) == b"x"
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(10) == b""
    # The engine lets go of each once both its sockets are gone (a loop turn or two later).
    deadline = time.monotonic() + 5
    while (left := _left_for_the_collector()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == 0
    assert not engine.engine.collection.get("p").connections
