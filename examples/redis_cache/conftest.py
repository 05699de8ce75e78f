"""Fixtures for the Redis cache chaos suite.

Redis is a service declared with `pytest_chaos.services`: started once per session (from the
local `redis-server` binary here, see `chaos_services` in ../pytest.ini; in a container when
Docker is the provider), on a free port, reached through a proxy of the same name, and always
stopped. Set CHAOS_EXTERNAL_REDIS=host:port to use a Redis that is already running instead (in
CI: the address at which the Toxiproxy server reaches it, e.g. `redis:6379` for a service
container); process faults (`chaos.kill("redis")`) are then refused, network faults still work.

The code under test never talks to Redis directly: it is given the address of the proxy
"redis", which the faults act on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from user_service import UserDatabase, UserService, cache_client

from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.services import RunningService, redis_service, service_fixture

# The fixture `redis_server` (a RunningService) and the proxy "redis" in front of it.
redis_server = service_fixture(redis_service(), name="redis_server")


@pytest.fixture
def redis_process(redis_server: RunningService) -> RunningService:
    """Redis as a server this session started, for the process faults (kill, pause,
    restart); an external Redis (CHAOS_EXTERNAL_REDIS) takes network faults only."""
    if redis_server.provider == "external":
        pytest.skip(
            f"Redis is an external address ({redis_server.direct}); process faults need a"
            " server that pytest-chaos started"
        )
    return redis_server


@pytest.fixture
def redis_proxy(redis_server: RunningService) -> ProxyInfo:
    """The proxy "redis" in front of the real Redis: the name every marker targets."""
    return redis_server.proxy


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
