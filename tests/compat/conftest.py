"""Upstream Toxiproxy's own checks, run against the engine the way upstream runs them against an
external server: one `pytest-chaos serve -proxy-metrics` process (per test worker) on a free
port, driven over real sockets, with every proxy deleted before and after each test (what
upstream's `WithServer` does to its in-process server)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.compat.clients import GO_CLIENT_HEADERS, delete_every_proxy
from tests.engine.served import Served, serve
from tests.servers import echo_server, free_port


@pytest.fixture(scope="session")
def served() -> Iterator[Served]:
    """The engine in its own process, as `toxiproxy-server -proxy-metrics` would run."""
    with serve("-port", "0", "-proxy-metrics") as running:
        yield running


@pytest.fixture(scope="session")
def client(served: Served) -> Iterator[httpx.Client]:
    """One client for the session: making one takes 0.1 s (its TLS context)."""
    with httpx.Client(base_url=served.url, timeout=10, headers=GO_CLIENT_HEADERS) as client:
        yield client


@pytest.fixture
def api(client: httpx.Client) -> Iterator[httpx.Client]:
    """A client of the served engine, which has no proxy when the test starts or ends."""
    delete_every_proxy(client)
    yield client
    delete_every_proxy(client)


@pytest.fixture(scope="session")
def echo() -> Iterator[str]:
    """`host:port` of a real TCP echo server, shared: it keeps no state between connections."""
    with echo_server() as (host, port):
        yield f"{host}:{port}"


@pytest.fixture
def dead() -> int:
    """A loopback port nothing listens on: an upstream that refuses every dial."""
    return free_port()
