"""Redis and PostgreSQL from the local binaries, for the suite: throwaway servers on free
loopback ports, each in a temporary directory of its own, always stopped and removed.

Readiness is checked by talking to the server, never by sleeping a fixed time. On Linux the
kernel also signals a server if pytest dies without cleaning up (PR_SET_PDEATHSIG), so no
server outlives the run. PostgreSQL refuses to run as root: as root, the cluster is created
and run by the `postgres` (or else `nobody`) account, which then owns the directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.02
PORT_ATTEMPTS = 3  # a free port can be taken between finding it and binding it
PR_SET_PDEATHSIG = 1


class ServiceUnavailable(Exception):
    """The server's binaries are not installed here."""


class ServiceError(Exception):
    """The server was found but did not start; the message ends with its log."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------ redis
@contextlib.contextmanager
def redis_server() -> Iterator[Server]:
    """redis-server without persistence, on loopback only."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("redis-server is not on PATH")
    with _temporary_directory("redis") as directory:
        log = directory / "redis.log"
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            command = [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
                "--logfile", str(log),
            ]  # fmt: skip
            process = _spawn(command, stop_signal=signal.SIGTERM)
            try:
                _wait_until_ready(process, partial(_redis_answers, port), log, "redis-server")
            except ServiceError:
                _stop(process, signal.SIGTERM)
                if attempt + 1 < PORT_ATTEMPTS and _port_was_taken(log):
                    continue
                raise
            try:
                yield Server("127.0.0.1", port)
            finally:
                _stop(process, signal.SIGTERM)
            return


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# --------------------------------------------------------------------------------- postgres
def postgres_binaries() -> Path:
    """The directory of `initdb` and `postgres`: PATH first, then Debian's layout."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version)
    if not found:
        raise ServiceUnavailable("initdb is neither on PATH nor in /usr/lib/postgresql/*/bin")
    return found[-1].parent


def _version(initdb: Path) -> list[int]:
    return [int(part) for part in initdb.parent.parent.name.split(".") if part.isdigit()]


@contextlib.contextmanager
def postgres_server(database: str) -> Iterator[Server]:
    """A PostgreSQL cluster of its own (user `postgres`, trust auth on loopback, no fsync:
    nothing here must survive a crash) with an empty `database`."""
    bindir = postgres_binaries()
    account = _unprivileged_account()
    with _temporary_directory("postgres") as directory:
        if account is not None:
            os.chown(directory, account.pw_uid, account.pw_gid)
        data, log = directory / "data", directory / "postgres.log"
        initdb = [
            str(bindir / "initdb"),
            "--pgdata", str(data),
            "--username", "postgres",
            "--auth", "trust",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        done = subprocess.run(initdb, capture_output=True, text=True, check=False, **_as(account))
        if done.returncode != 0:
            raise ServiceError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            command = [
                str(bindir / "postgres"),
                "-D", str(data),
                "-p", str(port),
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={directory}",
                "-c", "fsync=off",
                "-c", "full_page_writes=off",
                "-c", "synchronous_commit=off",
                "-c", "logging_collector=off",
            ]  # fmt: skip
            # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to leave.
            process = _spawn(command, stop_signal=signal.SIGINT, log=log, account=account)
            try:
                _wait_until_ready(process, partial(_postgres_answers, port), log, "postgres")
            except ServiceError:
                _stop(process, signal.SIGINT)
                if attempt + 1 < PORT_ATTEMPTS and _port_was_taken(log):
                    continue
                raise
            try:
                admin = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
                    )
                yield Server("127.0.0.1", port)
            finally:
                _stop(process, signal.SIGINT)
            return


def _postgres_answers(port: int) -> bool:
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"
    try:
        with psycopg.connect(dsn):
            return True
    except psycopg.OperationalError:
        return False


def _unprivileged_account() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceUnavailable("running as root, and there is no postgres or nobody account")


def _as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


# ---------------------------------------------------------------------------------- process
@contextlib.contextmanager
def _temporary_directory(name: str) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=f"chaos-example-{name}-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _spawn(
    command: list[str],
    *,
    stop_signal: signal.Signals,
    log: Path | None = None,
    account: pwd.struct_passwd | None = None,
) -> subprocess.Popen[bytes]:
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
            # Out of pytest's process group: a Ctrl-C reaches pytest, which stops the server.
            start_new_session=True,
            preexec_fn=_die_with_parent(stop_signal),
            **_as(account),
        )
    finally:
        if log is not None:
            output.close()  # type: ignore[union-attr]


def _die_with_parent(stop_signal: signal.Signals) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None

    def set_death_signal() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(stop_signal), 0, 0, 0)

    return set_death_signal


def _wait_until_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, what: str
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not ready():
        if process.poll() is not None:
            raise ServiceError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            seconds = f"{READY_TIMEOUT_SECONDS:.0f}s"
            raise ServiceError(f"{what} not ready after {seconds}:\n{_tail(log)}")
        time.sleep(POLL_SECONDS)


def _stop(process: subprocess.Popen[bytes], stop_signal: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _port_was_taken(log: Path) -> bool:
    return "already in use" in _tail(log).lower()


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
