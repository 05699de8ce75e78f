"""Real dependencies for the assertion tests: a throwaway redis-server and a small HTTP server
on free loopback ports, each behind a proxy of the session's engine.

Every server and thread started here is stopped when its fixture ends; a test that leaves an
`assert_timeout_propagates` worker running past its faults fails in teardown.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator

import pytest
import redis
import stamina

from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.chaos import Chaos
from tests.assertions.helpers import BODY, redis_client
from tests.plugin import local_services
from tests.plugin.local_services import LocalService

WORKER_THREAD = "assert_timeout_propagates"
WORKER_RELEASE_SECONDS = 10.0
MACHINE_REDIS = LocalService("redis", "127.0.0.1", 6379)


@pytest.fixture(scope="session")
def redis_upstream() -> Iterator[LocalService]:
    """A private redis-server; the machine's own on 127.0.0.1:6379 only if the binary is
    missing (and a skip if that is not there either)."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(local_services.redis_server())
        except local_services.ServiceUnavailable as missing:
            probe = redis.Redis(host=MACHINE_REDIS.host, port=MACHINE_REDIS.port, socket_timeout=1)
            try:
                probe.ping()
            except redis.RedisError:
                pytest.skip(f"no local Redis: {missing}, and none on {MACHINE_REDIS.address}")
            finally:
                probe.close()
            server = MACHINE_REDIS
        yield server


@pytest.fixture
def redis_proxy(chaos: Chaos, redis_upstream: LocalService) -> ProxyInfo:
    """The proxy "redis" in front of the test Redis."""
    return chaos.proxy("redis", upstream=redis_upstream.address)


@pytest.fixture
def cache(redis_proxy: ProxyInfo) -> Iterator[redis.Redis]:
    """A client that connects on first use (inside the test body, under its faults); a 1 s
    timeout, no retries of its own."""
    client = redis_client(redis_proxy, timeout=1.0)
    yield client
    client.close()


@pytest.fixture
def pooled_redis(redis_proxy: ProxyInfo) -> Iterator[redis.Redis]:
    """A client already connected before the test body, as a pooled connection in an app would
    be; a 0.3 s timeout, no retries of its own."""
    client = redis_client(redis_proxy, timeout=0.3)
    assert client.ping() is True
    yield client
    client.close()


class _BodyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@pytest.fixture(scope="session")
def http_upstream() -> Iterator[str]:
    """`host:port` of a real threaded HTTP server answering every GET with BODY."""
    server = _HTTPServer(("127.0.0.1", 0), _BodyHandler)
    thread = threading.Thread(target=server.serve_forever, name="http upstream", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def web_proxy(chaos: Chaos, http_upstream: str) -> ProxyInfo:
    """The proxy "web" in front of the HTTP server."""
    return chaos.proxy("web", upstream=http_upstream)


@pytest.fixture
def web_url(web_proxy: ProxyInfo) -> str:
    return f"http://{web_proxy.host}:{web_proxy.port}/body"


@pytest.fixture
def stamina_active() -> Iterator[None]:
    """stamina retrying with real waits (not its testing mode), restored afterwards."""
    was_active, was_testing = stamina.is_active(), stamina.is_testing()
    stamina.set_active(True)
    stamina.set_testing(False)
    yield
    stamina.set_active(was_active)
    stamina.set_testing(was_testing)


@pytest.fixture(autouse=True)
def _workers_released() -> Iterator[None]:
    """Set up before `chaos`, so torn down after it: by then every fault is reverted, and a
    call that `assert_timeout_propagates` left running must have ended."""
    yield
    stuck = []
    for thread in threading.enumerate():
        if thread.name == WORKER_THREAD:
            thread.join(WORKER_RELEASE_SECONDS)
            if thread.is_alive():
                stuck.append(thread)
    assert not stuck, f"{len(stuck)} call(s) still running after the faults were reverted"
