"""Fixtures for the HTTP fault tests: a real HTTP server (uvicorn), reached through a proxy of
the session's engine named `api`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_chaos.chaos import Chaos
from tests.http.servers import Upstream, uvicorn_server


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """uvicorn with the test app (`tests.http.servers.make_app`), for the whole session."""
    with uvicorn_server() as server:
        yield server


@pytest.fixture
def api_url(chaos: Chaos, upstream: Upstream) -> str:
    """The base URL of the proxy `api` in front of the server; the server's record of what it
    served starts empty."""
    proxy = chaos.proxy("api", upstream=upstream.address)
    upstream.served.clear()
    return f"http://{proxy.host}:{proxy.port}"
