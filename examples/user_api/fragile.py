"""Deliberately fragile store code, the way a lot of real code is written. Each function
looks careful, and each fails in a way the chaos suite catches (see test_fragile.py).
Neither is used by the API.
"""

from __future__ import annotations

import threading

import psycopg
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from user_api.store import SELECT_USER, User

# The same connection settings as the real store: timeouts that look like enough.
SETTINGS = "connect_timeout=2 options='-c statement_timeout=400' sslmode=disable gssencmode=disable"


class SharedConnectionStore:
    """One connection for the whole process, with `connect_timeout` and `statement_timeout`,
    and no client-side deadline on a query.

    `statement_timeout` is enforced by the server: it cancels a slow query, and the
    cancellation is an answer like any other. When the network stalls, that answer is lost
    with the result, and the call waits for ever.
    """

    def __init__(self, conninfo: str) -> None:
        self._lock = threading.Lock()
        self.connection = psycopg.connect(f"{conninfo} {SETTINGS}", autocommit=True)

    def load_user(self, user_id: int) -> User | None:
        with self._lock:
            row = self.connection.execute(SELECT_USER, (user_id,)).fetchone()
        return None if row is None else User(*row)

    def close(self) -> None:
        with self._lock:  # after any call still in flight
            self.connection.close()


@retry(
    stop=stop_after_attempt(8),
    retry=retry_if_exception_type(psycopg.OperationalError),
    reraise=True,
)
def load_user_retrying_without_backoff(conninfo: str, user_id: int) -> User | None:
    """Retries a failed connection up to 8 times, at once: tenacity's default `wait` is
    `wait_none()`. Against a store that is down, every caller hammers it 8 times in a few
    milliseconds, just when it can least afford it."""
    with psycopg.connect(f"{conninfo} {SETTINGS}", autocommit=True) as connection:
        row = connection.execute(SELECT_USER, (user_id,)).fetchone()
    return None if row is None else User(*row)
