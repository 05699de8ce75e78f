"""The code under test: a price lookup that falls back to the last known price.

`PriceService.price(sku)` reads the price from PostgreSQL, the system of record, and keeps a
copy in Redis. When PostgreSQL fails (refused, reset, cut off, or silent past its deadline),
it answers with the last known price from Redis; when Redis fails too, it says the price is
unavailable. It never raises, and every wait has a bound: 0.25 s to connect to PostgreSQL and
0.25 s for the query, 0.1 s for each Redis call.

`FragilePriceService` has the bug this folder is about. Its fallback was written with a slow
cache in mind: it catches `redis.TimeoutError` and nothing else, so a cache that is *down*
(refused, reset, cut off) raises `redis.ConnectionError` out of it. The fallback only runs once
PostgreSQL has failed, so the bug needs two faults at the same time: PostgreSQL failing, and
Redis failing fast. Every test of a single fault passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import psycopg
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


@dataclass(frozen=True)
class Price:
    sku: str
    cents: int | None
    source: str  # "database", "last known" or "unavailable"


@dataclass(frozen=True)
class Settings:
    """Where the dependencies are (their proxies), and how long each wait may take."""

    database: str  # libpq conninfo
    cache_host: str
    cache_port: int
    connect_timeout: float = 0.25
    query_timeout: float = 0.25
    cache_timeout: float = 0.1


class PriceService:
    """Prices from PostgreSQL, or the last known one from Redis; never an exception."""

    # What the fallback treats as "the cache failed too".
    cache_errors: tuple[type[Exception], ...] = (redis.RedisError,)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def price(self, sku: str) -> Price:
        async with self._cache() as cache:
            try:
                cents = await self._from_database(sku)
            except (psycopg.Error, TimeoutError):
                return await self._last_known(cache, sku)
            await self._remember(cache, sku, cents)
            return Price(sku, cents, "database")

    async def _from_database(self, sku: str) -> int | None:
        async with asyncio.timeout(self.settings.connect_timeout):
            connection = await psycopg.AsyncConnection.connect(
                self.settings.database, autocommit=True
            )
        async with connection:
            async with asyncio.timeout(self.settings.query_timeout):
                cursor = await connection.execute("SELECT cents FROM prices WHERE sku = %s", (sku,))
                row = await cursor.fetchone()
        return None if row is None else int(row[0])

    async def _remember(self, cache: redis.asyncio.Redis, sku: str, cents: int | None) -> None:
        # Keeping the copy is best effort: the answer is already known.
        with contextlib.suppress(redis.RedisError):
            await cache.set(f"price:{sku}", "" if cents is None else str(cents))

    async def _last_known(self, cache: redis.asyncio.Redis, sku: str) -> Price:
        try:
            cached = await cache.get(f"price:{sku}")
        except self.cache_errors:
            return Price(sku, None, "unavailable")
        if not cached:
            return Price(sku, None, "unavailable")
        return Price(sku, int(cached), "last known")

    def _cache(self) -> redis.asyncio.Redis:
        # No retries: a retry against a failing cache only doubles the time lost.
        return redis.asyncio.Redis(
            host=self.settings.cache_host,
            port=self.settings.cache_port,
            socket_timeout=self.settings.cache_timeout,
            socket_connect_timeout=self.settings.cache_timeout,
            retry=Retry(NoBackoff(), 0),
        )


class FragilePriceService(PriceService):
    """The same service with the fallback's bug: only a *slow* cache is expected there."""

    cache_errors = (redis.TimeoutError,)


def lookup(service: PriceService, sku: str) -> Price:
    """`service.price(sku)` from synchronous code (a test), on an event loop of its own."""
    return asyncio.run(service.price(sku))
