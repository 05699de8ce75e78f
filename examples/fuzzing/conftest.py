"""Fixtures for the fuzzing example: Redis and PostgreSQL started by pytest-chaos (from the
local binaries, as ../pytest.ini sets `chaos_services = local`), each behind a proxy of its
name, a `prices` table with one row, and that price's last known copy in Redis.

The fixtures are session-scoped: Hypothesis runs a test's body many times with one set of
fixtures, and `chaos.apply` reverts each example's faults, so nothing else needs resetting.
"""

from __future__ import annotations

import psycopg
import pytest
import redis
from catalogue import CENTS, SKU
from prices import Settings

from pytest_chaos.services import (
    RunningService,
    postgres_service,
    redis_service,
    service_fixture,
)

redis_server = service_fixture(redis_service(), name="redis_server")
postgres_server = service_fixture(postgres_service(), name="postgres_server")


@pytest.fixture(scope="session")
def shop(redis_server: RunningService, postgres_server: RunningService) -> Settings:
    """The settings of the service under test, pointed at the proxies `redis` and `postgres`,
    with the price of `espresso` in the database and its last known copy in the cache."""
    direct = f"host={postgres_server.service.host} port={postgres_server.service.port}"
    with psycopg.connect(f"{direct} user=postgres dbname=postgres", autocommit=True) as db:
        db.execute("CREATE TABLE prices (sku text PRIMARY KEY, cents integer NOT NULL)")
        db.execute("INSERT INTO prices VALUES (%s, %s)", (SKU, CENTS))
    cache = redis.Redis(host=redis_server.service.host, port=redis_server.service.port)
    with cache:
        cache.set(f"price:{SKU}", CENTS)
    return Settings(
        database=(
            f"host={postgres_server.host} port={postgres_server.port} user=postgres"
            " dbname=postgres sslmode=disable gssencmode=disable"
        ),
        cache_host=redis_server.host,
        cache_port=redis_server.port,
    )
