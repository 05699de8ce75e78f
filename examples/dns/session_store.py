"""The code under test: a session store on Redis, reached by its production host name
(`sessions.internal`), written two ways.

- `PooledSessionStore` keeps one redis-py client, whose connection pool keeps its connections
  open: once connected it never resolves the name again, so it rides out a DNS outage.
- `ConnectPerRequestStore` opens a new connection for every request (a common shape in
  short-lived workers and serverless handlers): every request resolves the name first, so
  every request fails while DNS does.
"""

from __future__ import annotations

from typing import Any

import redis

HOST = "sessions.internal"  # the name the store is configured with
TIMEOUT = 0.5  # seconds, to connect and per reply


def client(url: str, **options: Any) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=None, **options
    )


class PooledSessionStore:
    """Sessions through one long-lived client (its pool resolves only to connect)."""

    def __init__(self, url: str) -> None:
        self.redis = client(url)

    def save(self, session_id: str, user: str) -> None:
        self.redis.set(f"session:{session_id}", user, ex=3600)

    def user_of(self, session_id: str) -> str | None:
        value = self.redis.get(f"session:{session_id}")
        return value.decode() if value is not None else None

    def close(self) -> None:
        self.redis.close()


class ConnectPerRequestStore:
    """Sessions through a new connection per request (it resolves the name every time)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def save(self, session_id: str, user: str) -> None:
        with client(self.url, single_connection_client=True) as connection:
            connection.set(f"session:{session_id}", user, ex=3600)

    def user_of(self, session_id: str) -> str | None:
        with client(self.url, single_connection_client=True) as connection:
            value = connection.get(f"session:{session_id}")
        return value.decode() if value is not None else None
