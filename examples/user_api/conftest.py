"""Fixtures for the user API chaos suite.

Redis and PostgreSQL are started once per session from the local binaries (`services.py`,
over `pytest_chaos.services`), each on a free port in a temporary directory, and always
stopped. The application never talks to them directly: its cache client and its store are
given the addresses of the proxies "redis" and "postgres", which every fault acts on. The API
itself runs on a thread in this process, one fresh instance (breaker closed, cache empty, no
pooled connections) per test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from pytest_chaos.backends import ToxiproxyServer
from pytest_chaos.chaos import Chaos
from pytest_chaos.client import ProxyInfo
from user_api.app import UserApi, serve
from user_api.cache import UserCache
from user_api.services import Server, ServiceUnavailable, postgres_server, redis_server
from user_api.store import Connection, StoreSettings, UserStore

DATABASE = "user_api"
USERS = 1000  # ids 1..1000 exist; 1001 and up do not


@pytest.fixture(scope="session", autouse=True)
def _needs_the_engine(toxiproxy: ToxiproxyServer) -> None:
    """The suite reads what the proxy saw (connection attempts, traffic while a breaker is
    open), which only the pytest-chaos engine records, and its services listen on this
    machine's loopback, which a Toxiproxy in a container cannot reach."""
    if toxiproxy.client.engine() is None:
        pytest.skip(
            f"the user_api suite needs the pytest-chaos engine's events; the"
            f" {toxiproxy.backend} backend at {toxiproxy.url} is a plain Toxiproxy"
        )


@pytest.fixture(scope="session")
def redis_upstream() -> Iterator[Server]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(redis_server())
        except ServiceUnavailable as error:
            pytest.skip(str(error))
        yield server


@pytest.fixture(scope="session")
def postgres_upstream() -> Iterator[Server]:
    """PostgreSQL with the `users` table filled, as the proxy server reaches it."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(postgres_server(DATABASE))
        except ServiceUnavailable as error:
            pytest.skip(str(error))
        with psycopg.connect(_admin_conninfo(server), autocommit=True) as connection:
            connection.execute(
                "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL,"
                " email text NOT NULL)"
            )
            connection.execute(
                "INSERT INTO users SELECT g, 'user ' || g, 'user' || g || '@example.com'"
                " FROM generate_series(1, %s) AS g",
                (USERS,),
            )
        yield server


def _admin_conninfo(server: Server) -> str:
    return (
        f"host={server.host} port={server.port} user=postgres dbname={DATABASE}"
        " connect_timeout=5 application_name=admin"
    )


@pytest.fixture
def admin(postgres_upstream: Server) -> Iterator[Connection]:
    """A connection straight to PostgreSQL, around the proxy: the DBA's console."""
    with psycopg.connect(_admin_conninfo(postgres_upstream), autocommit=True) as connection:
        yield connection


@pytest.fixture
def redis_proxy(chaos: Chaos, redis_upstream: Server) -> ProxyInfo:
    return chaos.proxy("redis", upstream=redis_upstream.address)


@pytest.fixture
def postgres_proxy(chaos: Chaos, postgres_upstream: Server) -> ProxyInfo:
    return chaos.proxy("postgres", upstream=postgres_upstream.address)


@pytest.fixture
def store_settings(postgres_proxy: ProxyInfo) -> StoreSettings:
    """The production settings, pointed at the proxy (tests may `dataclasses.replace`)."""
    return StoreSettings(host=postgres_proxy.host, port=postgres_proxy.port, dbname=DATABASE)


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[UserStore]:
    store = UserStore(store_settings)
    yield store
    store.close()


@pytest.fixture
def cache(redis_proxy: ProxyInfo) -> Iterator[UserCache]:
    """The API's cache client through the proxy, on an empty cache."""
    cache = UserCache(redis_proxy.host, redis_proxy.port)
    cache.client.flushdb()
    yield cache
    cache.close()


@pytest.fixture
def api(cache: UserCache, store: UserStore) -> UserApi:
    return UserApi(cache, store)


@pytest.fixture
def http(api: UserApi) -> Iterator[httpx.Client]:
    """A client of the running API. Its timeout is far above every budget checked here, so
    a test fails on its own assertion rather than on the client's timeout."""
    with serve(api) as url, httpx.Client(base_url=url, timeout=10.0) as client:
        yield client
