"""Fixtures for the Redis cache chaos suite.

Redis comes from the local `redis-server` binary, started once per session with
`pytest_chaos.services` on a free port in a temporary directory, and always stopped. Set
CHAOS_REDIS_UPSTREAM=host:port to use a Redis that is already running instead (in CI: the
address at which the Toxiproxy server reaches it, e.g. `redis:6379` for a service container).

The code under test never talks to Redis directly: it is given the address of the proxy
"redis", which the faults act on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from user_service import UserDatabase, UserService, cache_client

from pytest_chaos.chaos import Chaos
from pytest_chaos.client import ProxyInfo
from pytest_chaos.services import BinaryNotFound, LocalProcess, redis_recipe


@pytest.fixture(scope="session")
def redis_upstream() -> Iterator[str]:
    """`host:port` of the real Redis, as the proxy server reaches it."""
    external = os.environ.get("CHAOS_REDIS_UPSTREAM")
    if external:
        yield external
        return
    server = LocalProcess(redis_recipe())  # no persistence, loopback only, a directory of its own
    try:
        server.start()  # ready when it answers PING, not after a guessed sleep
    except BinaryNotFound:
        pytest.skip("redis-server is not installed (or set CHAOS_REDIS_UPSTREAM=host:port)")
    try:
        yield server.address
    finally:
        server.close()


@pytest.fixture
def redis_proxy(chaos: Chaos, redis_upstream: str) -> ProxyInfo:
    """The proxy "redis" in front of the real Redis: the name every marker targets."""
    return chaos.proxy("redis", upstream=redis_upstream)


@pytest.fixture
def cache(redis_proxy: ProxyInfo) -> Iterator[redis.Redis]:
    """The application's cache client, connected through the proxy, on an empty cache.
    This runs during setup, before any marker's fault is applied."""
    client = cache_client(redis_proxy.host, redis_proxy.port)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def database() -> UserDatabase:
    return UserDatabase(query_seconds=0.05)


@pytest.fixture
def users(cache: redis.Redis, database: UserDatabase) -> UserService:
    return UserService(cache, database)
