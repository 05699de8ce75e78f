"""The system of record: users in PostgreSQL, behind a deadline, retries and a breaker.

Every way of waiting on PostgreSQL is bounded:

- connecting: `connect_timeout` (whole seconds, and libpq's minimum is 2);
- a query, on the server: `statement_timeout`, which cancels a slow query;
- a query, on the client: a deadline that shuts the socket down. psycopg has no client-side
  query timeout, and `statement_timeout` cannot help when the network, not the query, is
  slow: the server's "canceled" answer is lost the same way its result was.

A failure is either *fast* (refused, reset, closed: `StoreUnavailable`), which is retried
with exponential backoff, or *slow* (`StoreTimeout`), which is not: the time is already spent,
and a retry would only multiply it.

Every attempt goes through a circuit breaker (retry outside, breaker inside, as Polly and
resilience4j arrange them). After `breaker_fail_max` failed attempts in a row it opens: every
caller, including retries already under way, is turned away at once, without touching the
store, until `reset_timeout` has passed and one probe succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import pybreaker
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

SELECT_USER = "SELECT id, name, email FROM users WHERE id = %s"

Connection = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    email: str


class StoreError(Exception):
    """The store could not answer; the API says 503."""

    reason = "unavailable"


class StoreUnavailable(StoreError):
    """A fast failure (refused, reset, closed): worth a retry."""


class StoreTimeout(StoreError, TimeoutError):
    """No answer within a deadline: the time is gone, so it is not retried."""

    reason = "timeout"


class StoreCircuitOpen(StoreError):
    """The breaker is open (or this attempt's failure just opened it): no more attempts."""

    reason = "circuit open"


@dataclass(frozen=True)
class StoreSettings:
    host: str
    port: int
    dbname: str = "user_api"
    user: str = "postgres"
    connect_timeout: int = 2  # seconds; libpq rounds anything lower up to 2
    query_timeout: float = 0.5  # the client's deadline for one query
    statement_timeout_ms: int = 400  # the server's, a little shorter: slow queries say so
    attempts: int = 4
    initial_wait: float = 0.05  # then doubling: 0.05 s, 0.1 s, 0.2 s
    max_wait: float = 0.4
    # Failed attempts in a row that open the breaker: more than one request's attempts, so
    # a single failed request does not open it, a second one does.
    breaker_fail_max: int = 5
    breaker_reset_timeout: float = 1.0
    max_idle_connections: int = 4

    def conninfo(self) -> str:
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            application_name="user_api",
            connect_timeout=self.connect_timeout,
            options=f"-c statement_timeout={self.statement_timeout_ms}",
            # One attempt is one TCP connection: with the default `prefer`, libpq retries a
            # failed connection once more without TLS (or GSS encryption).
            sslmode="disable",
            gssencmode="disable",
        )


class UserStore:
    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.retrying = Retrying(
            stop=stop_after_attempt(settings.attempts),
            wait=wait_exponential(multiplier=settings.initial_wait, max=settings.max_wait),
            retry=retry_if_exception_type(StoreUnavailable),
            reraise=True,
        )
        self.breaker = ConcurrentCircuitBreaker(
            fail_max=settings.breaker_fail_max,
            reset_timeout=settings.breaker_reset_timeout,
            name="postgres",
        )
        self._pool = _Pool(self._connect, settings.max_idle_connections)

    def load_user(self, user_id: int) -> User | None:
        """The user, or None if there is none; StoreError if the store cannot say."""
        user: User | None = self.retrying(self._guarded_attempt, user_id)
        return user

    def _guarded_attempt(self, user_id: int) -> User | None:
        """One attempt through the breaker. An open breaker (StoreCircuitOpen) is not
        retried: the next attempt would be turned away too."""
        try:
            user: User | None = self.breaker.call(self.load_user_once, user_id)
        except pybreaker.CircuitBreakerError as error:
            raise StoreCircuitOpen(str(error)) from None
        return user

    def load_user_once(self, user_id: int) -> User | None:
        """One attempt: a pooled (or new) connection, one query under the deadline."""
        connection = self._pool.take()
        deadline = Deadline(connection, self.settings.query_timeout)
        try:
            with deadline, _translated_errors():
                row = connection.execute(SELECT_USER, (user_id,)).fetchone()
        except BaseException:
            self._pool.discard(connection)
            raise
        if deadline.expired:  # it fired just as the answer came: the socket is shut down
            self._pool.discard(connection)
        else:
            self._pool.give_back(connection)
        return None if row is None else User(*row)

    def close(self) -> None:
        self._pool.close()

    def _connect(self) -> Connection:
        with _translated_errors():
            try:
                return psycopg.connect(self.settings.conninfo(), autocommit=True)
            except pg_errors.ConnectionTimeout as error:
                # psycopg 3.3's ConnectionTimeout and connect()'s frame (which holds the
                # half-made connection) reference each other through the traceback: the
                # socket stays open until the garbage collector happens to run. Dropping
                # the traceback breaks the cycle, and the socket is closed now.
                raise error.with_traceback(None) from None


class ConcurrentCircuitBreaker(pybreaker.CircuitBreaker):
    """pybreaker's breaker, without its lock around the guarded call.

    pybreaker holds one lock for the whole of every call (danielfm/pybreaker#3), so calls
    through a breaker run one at a time: behind one call hung on a stalled store, every
    other request waits its turn, and the fourth answers after four deadlines. Here the call
    runs outside the lock; the state changes (open, half_open, close) still take it. The
    price: failure counts may race, and more than one probe may pass while half-open.
    """

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.state.call(func, *args, **kwargs)


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except (pg_errors.ConnectionTimeout, pg_errors.QueryCanceled) as error:
        raise StoreTimeout(str(error).strip()) from error
    except psycopg.OperationalError as error:
        raise StoreUnavailable(str(error).strip()) from error


class Deadline:
    """Shuts a connection's socket down if the block outlives `seconds`.

    A blocked psycopg call then fails at once ("server closed the connection"), and the
    block raises StoreTimeout instead. Shutting down a duplicate of the descriptor wakes the
    waiting thread; closing the connection from another thread would not be safe.
    """

    def __init__(self, connection: Connection, seconds: float) -> None:
        self.connection = connection
        self.seconds = seconds
        self.expired = False
        self._finished = False
        self._lock = threading.Lock()  # after __exit__, the deadline has fired or never will
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: object, tb: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._finished = True
        if kind is not None and issubclass(kind, StoreError) and self.expired:
            raise StoreTimeout(f"no answer from the store within {self.seconds:g}s") from None

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            self._shut_down()

    def _shut_down(self) -> None:
        with contextlib.suppress(OSError, psycopg.Error):
            duplicate = socket.socket(fileno=os.dup(self.connection.fileno()))
            try:
                duplicate.shutdown(socket.SHUT_RDWR)
            finally:
                duplicate.close()


class _Pool:
    """Idle connections for reuse. A connection that saw any error is closed, never reused."""

    def __init__(self, connect: Callable[[], Connection], max_idle: int) -> None:
        self._connect = connect
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def take(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def give_back(self, connection: Connection) -> None:
        healthy = (
            not connection.closed and connection.info.transaction_status == TransactionStatus.IDLE
        )
        with self._lock:
            if healthy and len(self._idle) < self._max_idle:
                self._idle.append(connection)
                return
        self.discard(connection)

    def discard(self, connection: Connection) -> None:
        with contextlib.suppress(psycopg.Error, OSError):
            connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            self.discard(connection)
