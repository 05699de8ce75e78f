"""Fixtures for the Redis cache chaos suite.

Redis comes from the local `redis-server` binary, started once per session on a free port in
a temporary directory and always stopped. Set CHAOS_REDIS_UPSTREAM=host:port to use a Redis
that is already running instead (in CI: the address at which the Toxiproxy server reaches it,
e.g. `redis:6379` for a service container).

The code under test never talks to Redis directly: it is given the address of the proxy
"redis", which the faults act on.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis
from user_service import UserDatabase, UserService, cache_client

from pytest_chaos.chaos import Chaos
from pytest_chaos.client import ProxyInfo

READY_TIMEOUT_SECONDS = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_upstream() -> Iterator[str]:
    """`host:port` of the real Redis, as the proxy server reaches it."""
    external = os.environ.get("CHAOS_REDIS_UPSTREAM")
    if external:
        yield external
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (or set CHAOS_REDIS_UPSTREAM=host:port)")
    directory = tempfile.mkdtemp(prefix="chaos-example-redis-")
    port = _free_port()
    # No persistence, loopback only, files in a directory of its own.
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
    command += ["--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C reaches pytest only; pytest stops the server
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not _answers_ping(port):  # ready when it answers, not after a guessed sleep
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}", pytrace=False)
            time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_proxy(chaos: Chaos, redis_upstream: str) -> ProxyInfo:
    """The proxy "redis" in front of the real Redis: the name every marker targets."""
    return chaos.proxy("redis", upstream=redis_upstream)


@pytest.fixture
def cache(redis_proxy: ProxyInfo) -> Iterator[redis.Redis]:
    """The application's cache client, connected through the proxy, on an empty cache.
    This runs during setup, before any marker's fault is applied."""
    client = cache_client(redis_proxy.host, redis_proxy.port)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def database() -> UserDatabase:
    return UserDatabase(query_seconds=0.05)


@pytest.fixture
def users(cache: redis.Redis, database: UserDatabase) -> UserService:
    return UserService(cache, database)
