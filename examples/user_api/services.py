"""Redis and PostgreSQL from the local binaries, for the suite, through
`pytest_chaos.services`: throwaway servers on free loopback ports, each in a temporary
directory of its own, waited for by talking to them, always stopped and removed (and killed by
the kernel if pytest dies without cleaning up).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg import sql

from pytest_chaos.services import (
    BinaryNotFound,
    LocalProcess,
    Recipe,
    postgres_recipe,
    redis_recipe,
)


class ServiceUnavailable(Exception):
    """The server's binaries are not installed here."""


Server = LocalProcess


@contextlib.contextmanager
def redis_server() -> Iterator[Server]:
    """redis-server without persistence, on loopback only."""
    with _running(redis_recipe()) as server:
        yield server


@contextlib.contextmanager
def postgres_server(database: str) -> Iterator[Server]:
    """A PostgreSQL cluster of its own (user `postgres`, trust auth on loopback, no fsync:
    nothing here must survive a crash) with an empty `database`."""
    with _running(postgres_recipe()) as server:
        conninfo = f"host={server.host} port={server.port} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        yield server


@contextlib.contextmanager
def _running(recipe: Recipe) -> Iterator[Server]:
    server = LocalProcess(recipe)
    try:
        server.start()
    except BinaryNotFound as missing:
        raise ServiceUnavailable(str(missing)) from None
    try:
        yield server
    finally:
        server.close()
