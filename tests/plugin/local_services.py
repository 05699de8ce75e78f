"""Real Redis and PostgreSQL servers for tests, started with `pytest_chaos.services`.

Each server runs on a free loopback port in its own temporary directory, is waited for by
talking to it, and is always stopped, with its directory removed, when the context manager
exits. A missing binary raises `ServiceUnavailable`, so a test module can skip with the
reason; any other failure raises `pytest_chaos.services.ServiceError` with the server's log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_chaos.services import BinaryNotFound, LocalProcess, Recipe
from pytest_chaos.services import postgres_recipe as _postgres_recipe
from pytest_chaos.services import redis_recipe as _redis_recipe


class ServiceUnavailable(Exception):
    """The service's binaries are not installed on this machine."""


@dataclass(frozen=True)
class LocalService:
    """A running server: where to reach it, and where its files are."""

    name: str
    host: str
    port: int
    directory: Path | None = None  # None: a server this module did not start
    pid: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.contextmanager
def redis_server() -> Iterator[LocalService]:
    """A throwaway Redis (no persistence) on a free loopback port."""
    with _running(_redis_recipe()) as service:
        yield service


@contextlib.contextmanager
def postgres_server(database: str = "test") -> Iterator[LocalService]:
    """A throwaway PostgreSQL cluster (trust auth, user `postgres`, no fsync) with `database`."""
    with _running(_postgres_recipe()) as service:
        _create_database(service.port, database)
        yield service


@contextlib.contextmanager
def _running(recipe: Recipe) -> Iterator[LocalService]:
    process = LocalProcess(recipe)
    try:
        process.start()
    except BinaryNotFound as missing:
        raise ServiceUnavailable(str(missing)) from None
    try:
        yield LocalService(recipe.name, process.host, process.port, process.directory, process.pid)
    finally:
        process.close()


def _create_database(port: int, database: str) -> None:
    import psycopg
    from psycopg import sql

    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
