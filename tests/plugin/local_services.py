"""Real dependencies started from local binaries, for tests that need the real thing.

Each server runs on a free loopback port in its own temporary directory, is waited for by
talking to it (never by sleeping a fixed time), and is always stopped, with its directory
removed, when the context manager exits. A server that cannot be started raises
`ServiceUnavailable` (binary missing) or `ServiceError` (it started but failed), with its log.
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

READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.02
PORT_ATTEMPTS = 3
PR_SET_PDEATHSIG = 1


class ServiceUnavailable(Exception):
    """The service's binaries are not installed on this machine."""


class ServiceError(Exception):
    """The service was found but did not start; the message carries the end of its log."""


@dataclass(frozen=True)
class LocalService:
    """A running server: where to reach it, and where its files and log are."""

    name: str
    host: str
    port: int
    directory: Path | None = None  # None: a server this module did not start
    pid: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def free_port() -> int:
    """A loopback port that was free a moment ago; callers retry if someone takes it first."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------ redis
def find_redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("redis-server is not on PATH")
    return binary


@contextlib.contextmanager
def redis_server() -> Iterator[LocalService]:
    """A throwaway redis-server: no persistence, loopback only, stopped on exit."""
    binary = find_redis_server()
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
                "--daemonize", "no",
                "--logfile", str(log),
            ]  # fmt: skip
            process = _spawn(command, death_signal=signal.SIGTERM)
            try:
                _wait_until_ready(process, partial(_redis_answers_ping, port), log, "redis-server")
            except ServiceError:
                _stop(process, signal.SIGTERM)
                if attempt + 1 < PORT_ATTEMPTS and _port_was_taken(log):
                    continue
                raise
            try:
                yield LocalService("redis", "127.0.0.1", port, directory, process.pid)
            finally:
                _stop(process, signal.SIGTERM)
            return


def _redis_answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# --------------------------------------------------------------------------------- postgres
def find_postgres_binaries() -> Path:
    """The directory holding `initdb` and `postgres`: PATH first, then Debian's layout."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: _version_key(path.parent.parent.name),
        reverse=True,
    )
    if not candidates:
        raise ServiceUnavailable("initdb is neither on PATH nor under /usr/lib/postgresql/*/bin")
    return candidates[0].parent


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@contextlib.contextmanager
def postgres_server(database: str = "test") -> Iterator[LocalService]:
    """A throwaway PostgreSQL cluster (trust auth, user `postgres`, no fsync) with `database`.

    PostgreSQL refuses to run as root; as root, the cluster is created and run by the
    `postgres` (or else `nobody`) account, which then owns the temporary directory.
    """
    bindir = find_postgres_binaries()
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
            # SIGINT is PostgreSQL's "fast shutdown": it does not wait for clients to leave.
            process = _spawn(command, death_signal=signal.SIGINT, log=log, account=account)
            try:
                _wait_until_ready(process, partial(_postgres_accepts, port), log, "postgres")
            except ServiceError:
                _stop(process, signal.SIGINT)
                if attempt + 1 < PORT_ATTEMPTS and _port_was_taken(log):
                    continue
                raise
            try:
                _create_database(port, database)
                yield LocalService("postgres", "127.0.0.1", port, directory, process.pid)
            finally:
                _stop(process, signal.SIGINT)
            return


def _postgres_accepts(port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(
            f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"
        ):
            return True
    except psycopg.OperationalError:
        return False


def _create_database(port: int, database: str) -> None:
    import psycopg
    from psycopg import sql

    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def _unprivileged_account() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceUnavailable("running as root, and there is no postgres or nobody account")


def _as(account: pwd.struct_passwd | None) -> dict[str, int]:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


# ---------------------------------------------------------------------------------- process
@contextlib.contextmanager
def _temporary_directory(name: str) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=f"pytest-chaos-{name}-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _spawn(
    command: list[str],
    *,
    death_signal: signal.Signals,
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
            # Not in pytest's process group: a Ctrl-C must reach us, and we stop the server.
            start_new_session=True,
            preexec_fn=_die_with_parent(death_signal),
            **_as(account),  # type: ignore[arg-type]
        )
    finally:
        if log is not None:
            output.close()  # type: ignore[union-attr]


def _die_with_parent(death_signal: signal.Signals) -> Callable[[], None] | None:
    """On Linux, have the kernel signal the server if pytest dies without cleaning up
    (SIGKILL, a crash), so no server outlives the run."""
    if not sys.platform.startswith("linux"):
        return None

    def set_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)

    return set_death_signal


def _wait_until_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, what: str
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not ready():
        if process.poll() is not None:
            raise ServiceError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise ServiceError(
                f"{what} not ready after {READY_TIMEOUT_SECONDS:.0f}s:\n{_tail(log)}"
            )
        time.sleep(POLL_INTERVAL_SECONDS)


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
