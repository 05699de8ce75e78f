"""The cache in front of the store: Redis, cache-aside, and never a reason to fail a request.

The client has a short timeout on connecting and on every read, and no retries of its own: a
retry against a struggling cache only doubles the time lost before going to the store.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from user_api.store import User

CACHE_TIMEOUT_SECONDS = 0.1
CACHE_TTL_SECONDS = 300


class UserCache:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = CACHE_TIMEOUT_SECONDS,
        ttl: int = CACHE_TTL_SECONDS,
    ) -> None:
        self.ttl = ttl
        self.client = redis.Redis(
            host=host,
            port=port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def get(self, user_id: int) -> User | None:
        """The cached user, or None. Raises redis.RedisError (or ValueError for an entry that
        does not decode) when the cache cannot say: the caller treats that as a miss."""
        cached = self.client.get(_key(user_id))
        return None if cached is None else User(**json.loads(cached))

    def put(self, user: User) -> None:
        self.client.set(_key(user.id), json.dumps(asdict(user)), ex=self.ttl)

    def close(self) -> None:
        self.client.close()


def _key(user_id: int) -> str:
    return f"user:{user_id}"
