"""Fixtures for the user API chaos suite.

Redis and PostgreSQL are services declared with `pytest_chaos.services`: started once per
session (from the local binaries, as ../pytest.ini sets `chaos_services = local`; in
containers with `--chaos-services container`), each on a free port, behind a proxy of the same
name, and always stopped. The application never talks to them directly: its cache client and
its store are given the addresses of the proxies "redis" and "postgres", which every fault
acts on. The API itself runs on a thread in this process, one fresh instance (breaker closed,
cache empty, no pooled connections) per test.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg import sql

from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.backends.server import ToxiproxyServer
from pytest_chaos.services import (
    RunningService,
    postgres_service,
    redis_service,
    service_fixture,
)
from user_api.app import UserApi, serve
from user_api.cache import UserCache
from user_api.store import Connection, StoreSettings, UserStore

DATABASE = "user_api"
USERS = 1000  # ids 1..1000 exist; 1001 and up do not

redis_server = service_fixture(redis_service(), name="redis_server")
postgres_server = service_fixture(postgres_service(), name="postgres_server")


@pytest.fixture(scope="session", autouse=True)
def _needs_the_engine(toxiproxy: ToxiproxyServer) -> None:
    """The suite reads what the proxy saw (connection attempts, traffic while a breaker is
    open), which only the pytest-chaos engine records."""
    if toxiproxy.client.engine() is None:
        pytest.skip(
            f"the user_api suite needs the pytest-chaos engine's events; the"
            f" {toxiproxy.backend} backend at {toxiproxy.url} is a plain Toxiproxy"
        )


@pytest.fixture(scope="session")
def postgres_upstream(postgres_server: RunningService) -> RunningService:
    """PostgreSQL with the `user_api` database and its `users` table filled (kept across
    restarts: the data directory survives them)."""
    with psycopg.connect(_admin_conninfo(postgres_server, "postgres"), autocommit=True) as db:
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with psycopg.connect(_admin_conninfo(postgres_server), autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL)"
        )
        connection.execute(
            "INSERT INTO users SELECT g, 'user ' || g, 'user' || g || '@example.com'"
            " FROM generate_series(1, %s) AS g",
            (USERS,),
        )
    return postgres_server


def _admin_conninfo(server: RunningService, dbname: str = DATABASE) -> str:
    """Straight to the server, around the proxy."""
    host, port = server.service.host, server.service.port
    return (
        f"host={host} port={port} user=postgres dbname={dbname}"
        " connect_timeout=5 application_name=admin"
    )


@pytest.fixture
def admin(postgres_upstream: RunningService) -> Iterator[Connection]:
    """A connection straight to PostgreSQL, around the proxy: the DBA's console."""
    with psycopg.connect(_admin_conninfo(postgres_upstream), autocommit=True) as connection:
        yield connection


@pytest.fixture
def redis_proxy(redis_server: RunningService) -> ProxyInfo:
    return redis_server.proxy


@pytest.fixture
def postgres_proxy(postgres_upstream: RunningService) -> ProxyInfo:
    return postgres_upstream.proxy


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
