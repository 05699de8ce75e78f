"""Fixtures for the steady-state suite.

- `catalog`: the catalog (catalog.py) on a thread of this process, its cache client given the
  address of the proxy "redis" in front of a Redis the plugin starts (from the local binary,
  as ../pytest.ini sets `chaos_services = local`); `fragile_catalog` is the same code without
  a cache timeout or fallback. Each test gets an empty cache.
- `orders`: orders_app.py run by uvicorn in its own process, behind the proxy "orders";
  `bare_orders`: the same endpoint on a bare standard-library server (bare_server.py). Both
  are declared as services with a local `Recipe`, once per test: a graceful-shutdown test
  ends with the server gone, and (since the tests request `chaos` first) the plugin does not
  start it again only to stop it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from catalog import CACHE_TIMEOUT_SECONDS, cache_client, serve

from pytest_chaos.services import (
    Recipe,
    RunningService,
    ServiceDefinition,
    redis_service,
    service_fixture,
)

HERE = Path(__file__).resolve().parent

catalog_redis = service_fixture(redis_service(), name="catalog_redis")

orders = service_fixture(
    ServiceDefinition(
        "orders",
        local=Recipe(
            "orders",
            [
                sys.executable, "-m", "uvicorn",
                "--app-dir", str(HERE),
                "--host", "{host}", "--port", "{port}",
                "--timeout-graceful-shutdown", "5",
                "--no-access-log",
                "orders_app:app",
            ],
        ),
        provider="local",  # a process of this project, whatever chaos_services says
    ),
    scope="function",
)  # fmt: skip

bare_orders = service_fixture(
    ServiceDefinition(
        "bare_orders",
        local=Recipe("bare_orders", [sys.executable, str(HERE / "bare_server.py"), "{port}"]),
        provider="local",
    ),
    scope="function",
)


def _catalog(redis_service: RunningService, *, fragile: bool) -> Iterator[httpx.Client]:
    proxy = redis_service.proxy
    cache = cache_client(proxy.host, proxy.port, timeout=None if fragile else CACHE_TIMEOUT_SECONDS)
    cache.flushdb()
    try:
        with serve(cache, fragile=fragile) as url, httpx.Client(base_url=url, timeout=5) as client:
            yield client
    finally:
        cache.close()


@pytest.fixture
def catalog(catalog_redis: RunningService) -> Iterator[httpx.Client]:
    """An HTTP client of the catalog (keep-alive, safe to share between threads)."""
    yield from _catalog(catalog_redis, fragile=False)


@pytest.fixture
def fragile_catalog(catalog_redis: RunningService) -> Iterator[httpx.Client]:
    """The same, for the catalog whose cache reads have no timeout and no fallback."""
    yield from _catalog(catalog_redis, fragile=True)
