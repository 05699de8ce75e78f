"""How to run one kind of local server: `Recipe`, the built-in recipes for Redis and
PostgreSQL, and readiness checks (standard library only: they talk the wire protocol)."""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_chaos.services.base import Service


# ---------------------------------------------------------------------------- readiness checks
def tcp_ready(service: Service) -> bool:
    """Ready when a TCP connection to the service's port is accepted."""
    try:
        with socket.create_connection((service.host, service.port), timeout=1):
            return True
    except OSError:
        return False


def redis_ready(service: Service) -> bool:
    """Ready when Redis answers PING with PONG (raw socket, no client library needed)."""
    try:
        with socket.create_connection((service.host, service.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def postgres_ready(service: Service) -> bool:
    """Ready when PostgreSQL answers a startup message with an authentication request (not
    with "the database system is starting up")."""
    params = b"user\0postgres\0database\0postgres\0\0"
    startup = struct.pack("!ii", 8 + len(params), 196608) + params
    try:
        with socket.create_connection((service.host, service.port), timeout=1) as sock:
            sock.sendall(startup)
            answer = sock.recv(1)
            with contextlib.suppress(OSError):
                sock.sendall(b"X\0\0\0\x04")  # Terminate
            return answer == b"R"
    except OSError:
        return False


# ------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """How to run one kind of local server.

    `command` and each of `init` (run once, before the first start, e.g. `initdb`) may use the
    placeholders `{host}`, `{port}`, `{data_dir}` and `{directory}`; their first element is a
    binary looked up on PATH, then in `search_path` (glob patterns allowed, newest last).
    `ready(service)` returns True once the server serves; it is polled until `ready_timeout`.
    `stop_signal` is the graceful shutdown signal used by `stop()`. A `refuses_root` server
    (PostgreSQL) runs as the `postgres` (or `nobody`) account when pytest runs as root.
    """

    name: str
    command: Sequence[str]
    ready: Callable[[Service], bool] = tcp_ready
    init: Sequence[Sequence[str]] = ()
    search_path: Sequence[str] = ()
    stop_signal: signal.Signals = signal.SIGTERM
    ready_timeout: float = 20.0
    stop_timeout: float = 10.0
    refuses_root: bool = False
    env: Mapping[str, str] = field(default_factory=dict)


def redis_recipe(name: str = "redis") -> Recipe:
    """A throwaway `redis-server`: loopback only, data directory `{data_dir}`, no snapshots."""
    command = [
        "redis-server",
        "--port", "{port}",
        "--bind", "{host}",
        "--dir", "{data_dir}",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
    ]  # fmt: skip
    return Recipe(name, command, ready=redis_ready)


def postgres_recipe(name: str = "postgres") -> Recipe:
    """A throwaway PostgreSQL cluster made by `initdb` (trust auth, user `postgres`, database
    `postgres`, no fsync) in `{data_dir}`, which survives `restart()`."""
    initdb = [
        "initdb",
        "--pgdata", "{data_dir}",
        "--username", "postgres",
        "--auth", "trust",
        "--encoding", "UTF8",
        "--locale", "C",
        "--no-sync",
        "--no-instructions",
    ]  # fmt: skip
    command = [
        "postgres",
        "-D", "{data_dir}",
        "-p", "{port}",
        "-c", "listen_addresses={host}",
        "-c", "unix_socket_directories={directory}",
        "-c", "fsync=off",
        "-c", "full_page_writes=off",
    ]  # fmt: skip
    return Recipe(
        name,
        command,
        ready=postgres_ready,
        init=[initdb],
        search_path=["/usr/lib/postgresql/*/bin"],
        stop_signal=signal.SIGINT,  # "fast shutdown": does not wait for clients to leave
        refuses_root=True,
    )
