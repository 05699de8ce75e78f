"""The code under test: a user lookup with Redis as a cache-aside in front of a slow database.

`UserService.get_user` is written to survive its cache: every Redis call has a short timeout
and no retries, and any Redis error means "not cached", never "request failed". A slow,
hung, refusing or resetting Redis costs at most one cache timeout plus the database query.

`count_active_sessions` is deliberately fragile, the way a lot of real code is: it makes its
own client without a timeout, so a Redis that accepts the connection and never answers blocks
it (and the request calling it) for ever. The tests show both behaviours.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# What one cache call may cost before we give up on the cache: far below the database's
# latency, or the cache would be a liability rather than a speed-up.
CACHE_TIMEOUT_SECONDS = 0.1
CACHE_TTL_SECONDS = 300


@dataclass(frozen=True)
class User:
    id: int
    name: str
    email: str


class UserDatabase:
    """Stands in for the system of record: always right, always slow."""

    def __init__(self, query_seconds: float = 0.05) -> None:
        self.query_seconds = query_seconds
        self.queries = 0
        self._lock = threading.Lock()

    def load_user(self, user_id: int) -> User:
        time.sleep(self.query_seconds)
        with self._lock:
            self.queries += 1
        return User(id=user_id, name=f"user {user_id}", email=f"user{user_id}@example.com")


def cache_client(host: str, port: int) -> redis.Redis:
    """A Redis client fit for a cache: a short timeout, and no retries (a retry against a
    struggling cache only doubles the time lost before falling back)."""
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=CACHE_TIMEOUT_SECONDS,
        socket_connect_timeout=CACHE_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )


class UserService:
    def __init__(self, cache: redis.Redis, database: UserDatabase) -> None:
        self.cache = cache
        self.database = database

    def get_user(self, user_id: int) -> User:
        key = f"user:{user_id}"
        try:
            cached = self.cache.get(key)
        except redis.RedisError as error:
            log.warning("cache unavailable for %s, reading the database: %s", key, error)
            # Do not write back either: a cache that just failed would likely cost a
            # second timeout for nothing.
            return self.database.load_user(user_id)
        if cached is not None:
            return User(**json.loads(cached))
        user = self.database.load_user(user_id)
        try:
            self.cache.set(key, json.dumps(asdict(user)), ex=CACHE_TTL_SECONDS)
        except redis.RedisError as error:
            log.warning("could not cache %s: %s", key, error)
        return user


def count_active_sessions(host: str, port: int) -> int:
    """Deliberately fragile: no timeout (`socket_timeout=None`), so it waits for ever on a
    Redis that does not answer. Left as is so the chaos suite can show the failure mode."""
    client = redis.Redis(host=host, port=port, socket_timeout=None)
    try:
        return int(client.scard("sessions:active"))
    finally:
        client.close()
