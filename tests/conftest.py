from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pytest_chaos.engine import EngineThread
from tests.servers import echo_server

# For tests/plugin: pytest accepts pytest_plugins only in a conftest it loads before the run
# starts (this one), not in tests/plugin/conftest.py.
pytest_plugins = ["pytester"]


@pytest.fixture
def engine() -> Iterator[EngineThread]:
    """A fresh engine in a background thread of the test process, seeded for repeatability."""
    running = EngineThread(seed=1234)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def api(engine: EngineThread) -> Iterator[httpx.Client]:
    """An HTTP client for the engine's API."""
    with httpx.Client(base_url=engine.engine.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def echo() -> Iterator[str]:
    """`host:port` of a real TCP echo server on loopback, shared by the whole run: it is
    stateless (each connection is echoed on its own thread), and stopping one takes 0.5 s."""
    with echo_server() as (host, port):
        yield f"{host}:{port}"
