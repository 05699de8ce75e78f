"""assert_timeout_propagates with real clients through real faults: redis-py against a real
redis-server, httpx against a real HTTP server, both behind the session's engine.

Each passing case checks the wire side too (the proxy saw the client let go of its
connection); each failing case checks the whole message a user would read. The parts of a
message that cannot be the same from run to run (a measured duration, a connection id) are
the only ones matched loosely (see helpers.PLACEHOLDERS).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import redis

from pytest_chaos.assertions import (
    ChaosAssertionError,
    _judge_call,
    assert_timeout_propagates,
    assert_timeout_propagates_async,
    wire_connections,
)
from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.chaos import Chaos
from tests.assertions.helpers import BODY, assert_message, redis_client, wait_until
from tests.plugin.local_services import LocalService, ServiceUnavailable, postgres_server

BUDGET = 0.5
HTTP_READ_TIMEOUT = 0.2
NO_TIMEOUT_HINT = (
    "Hint: does every network call have a timeout, shorter than the budget? A per-read socket"
    " timeout does not bound a whole request when data keeps trickling in (slicer, bandwidth)."
)


# ------------------------------------------------------------------------------------ redis
def test_redis_with_a_socket_timeout_gives_up_and_closes_its_connection(
    chaos: Chaos, redis_proxy: ProxyInfo
) -> None:
    client = redis_client(redis_proxy, timeout=0.3)
    try:
        with chaos.stall("redis"):
            outcome = assert_timeout_propagates(
                lambda: client.get("key"), budget=BUDGET, chaos=chaos, proxy="redis"
            )
    finally:
        client.close()
    assert isinstance(outcome.error, redis.TimeoutError)
    assert 0.3 * 0.9 <= outcome.elapsed <= BUDGET + 0.25
    # The wire side: the client, not the proxy, let go of the connection, once it gave up.
    [connection] = wire_connections(chaos, "redis")
    assert connection.client_closed_at is not None
    assert connection.client_closed_at >= connection.accepted_at + 0.3 * 0.9


def test_a_pooled_redis_connection_is_closed_when_its_command_times_out(
    chaos: Chaos, pooled_redis: redis.Redis
) -> None:
    """The helper checks connections opened during the call; a connection the pool opened
    earlier is checked here, on the wire: a client that kept it would read the stale reply
    of the timed-out command as the answer to its next one."""
    call_started = time.monotonic()
    with chaos.stall("redis"):
        assert_timeout_propagates(lambda: pooled_redis.get("key"), budget=BUDGET)
    [pooled] = wire_connections(chaos, "redis")
    assert pooled.accepted_at < call_started, "the connection the pool opened in setup"
    assert pooled.client_closed_at is not None
    assert pooled.client_closed_at > call_started


def test_redis_without_a_socket_timeout_never_gives_up(
    chaos: Chaos, redis_proxy: ProxyInfo
) -> None:
    client = redis_client(redis_proxy, timeout=None)
    try:
        with chaos.stall("redis"), pytest.raises(ChaosAssertionError) as raised:
            assert_timeout_propagates(
                lambda: client.get("key"), budget=BUDGET, chaos=chaos, proxy="redis"
            )
    finally:
        client.close()
    assert_message(
        raised.value,
        "The call did not give up within its budget of 0.50s (+0.25s tolerance).\n"
        "- still running after 0.75s\n"
        "- connection redis#<n> (still open) at the proxy\n" + NO_TIMEOUT_HINT,
    )


def test_a_timeout_longer_than_the_budget_fails(chaos: Chaos, redis_proxy: ProxyInfo) -> None:
    client = redis_client(redis_proxy, timeout=1.0)
    try:
        with chaos.stall("redis"), pytest.raises(ChaosAssertionError) as raised:
            assert_timeout_propagates(lambda: client.get("key"), budget=0.2, tolerance=0.1)
    finally:
        client.close()
    assert str(raised.value) == (
        "The call did not give up within its budget of 0.20s (+0.10s tolerance).\n"
        "- still running after 0.30s\n" + NO_TIMEOUT_HINT
    )


def test_a_refused_connection_is_not_a_timeout(chaos: Chaos, redis_proxy: ProxyInfo) -> None:
    client = redis_client(redis_proxy, timeout=0.3)
    try:
        with chaos.dependency_down("redis"), pytest.raises(ChaosAssertionError) as raised:
            assert_timeout_propagates(lambda: client.get("key"), budget=BUDGET)
    finally:
        client.close()
    assert_message(
        raised.value,
        "The call failed, but not with a timeout.\n"
        "- raised ConnectionError: <text> after <s>\n"
        "Hint: a stall should surface as a timeout; another error means the client gave up for"
        " another reason (or the fault was not a stall).",
    )


def test_a_call_that_succeeds_fails_the_helper(chaos: Chaos, redis_proxy: ProxyInfo) -> None:
    client = redis_client(redis_proxy, timeout=0.3)
    try:
        with pytest.raises(ChaosAssertionError) as raised:
            assert_timeout_propagates(client.ping, budget=BUDGET)
    finally:
        client.close()
    assert_message(
        raised.value,
        "The call returned instead of timing out within its budget of 0.50s (+0.25s"
        " tolerance).\n"
        "- returned True after <s>\n"
        "Hint: was the fault active on the proxy the call goes through?",
    )


def test_a_client_that_keeps_its_timed_out_connection_fails(
    chaos: Chaos, redis_proxy: ProxyInfo
) -> None:
    """A hand-rolled client that times out but keeps the socket: the next request on it would
    read the answer meant for this one."""
    sock = socket.socket()

    def get() -> bytes:
        sock.settimeout(0.2)
        sock.connect((redis_proxy.host, redis_proxy.port))
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
        return sock.recv(64)  # times out; the socket stays open

    try:
        with chaos.stall("redis"), pytest.raises(ChaosAssertionError) as raised:
            assert_timeout_propagates(get, budget=BUDGET, chaos=chaos, proxy="redis")
    finally:
        sock.close()
    assert_message(
        raised.value,
        "The call timed out but left its connection open at the proxy.\n"
        "- raised TimeoutError after <s>\n"
        "- connection redis#<n> (still open) at the proxy\n"
        "Hint: does the client close (or return to its pool as broken) a connection whose"
        " request timed out?",
    )


def test_a_timeout_that_fires_too_late_is_reported_with_its_time() -> None:
    """Only reachable when the call ends just after the limit (the helper stops waiting at
    the limit), so the judgement is fed the result directly."""
    result = {"error": redis.TimeoutError("Timeout reading from socket"), "ended": 10.9}
    with pytest.raises(ChaosAssertionError) as raised:
        _judge_call(result, 10.0, 0.5, 0.25, None, None)
    assert str(raised.value) == (
        "The call timed out too late for its budget of 0.50s (+0.25s tolerance).\n"
        "- raised TimeoutError after 0.90s\n"
        "Hint: is the timeout longer than the budget, or retried after it expired?"
    )


# ------------------------------------------------------------------------------------- httpx
def get_within(url: str, deadline: float) -> bytes:
    """httpx with an overall deadline: each read has HTTP_READ_TIMEOUT, and the whole body
    must arrive within `deadline` seconds; past it the response is closed (and with it the
    connection, as it was not read to the end) and TimeoutError raised."""
    started = time.monotonic()
    body = b""
    with (
        httpx.Client(timeout=httpx.Timeout(HTTP_READ_TIMEOUT)) as client,
        client.stream("GET", url) as response,
    ):
        for chunk in response.iter_bytes():
            body += chunk
            if time.monotonic() - started > deadline:
                raise TimeoutError(f"no full response within {deadline}s")
    return body


def test_httpx_body_arrives_whole_without_faults(web_url: str) -> None:
    assert get_within(web_url, deadline=5) == BODY


@pytest.mark.parametrize("trickle", ["slicer", "bandwidth"])
def test_httpx_read_timeout_does_not_bound_a_trickling_response(
    chaos: Chaos, web_url: str, trickle: str
) -> None:
    """20 KB in 200-byte slices 20 ms apart (or at 10 KB/s) take about 2 s, yet no single read
    waits 0.2 s: httpx's timeout never fires."""
    if trickle == "slicer":
        fault = chaos.slicer("web", 200, delay=20_000)
    else:
        fault = chaos.bandwidth("web", 10)

    def get() -> httpx.Response:
        return httpx.get(web_url, timeout=httpx.Timeout(HTTP_READ_TIMEOUT))

    with fault, pytest.raises(ChaosAssertionError) as raised:
        assert_timeout_propagates(get, budget=BUDGET, chaos=chaos, proxy="web")
    assert_message(
        raised.value,
        "The call did not give up within its budget of 0.50s (+0.25s tolerance).\n"
        "- still running after 0.75s\n"
        "- connection web#<n> (still open) at the proxy\n" + NO_TIMEOUT_HINT,
    )


def test_httpx_with_an_overall_deadline_gives_up_and_closes(chaos: Chaos, web_url: str) -> None:
    with chaos.slicer("web", 200, delay=20_000):
        outcome = assert_timeout_propagates(
            lambda: get_within(web_url, deadline=BUDGET), budget=BUDGET, chaos=chaos, proxy="web"
        )
    assert isinstance(outcome.error, TimeoutError)
    [connection] = wire_connections(chaos, "web")
    assert connection.client_closed_at is not None


@pytest.mark.asyncio
async def test_async_httpx_under_asyncio_timeout_gives_up_and_closes(
    chaos: Chaos, web_url: str
) -> None:
    async def get() -> httpx.Response:
        async with httpx.AsyncClient(timeout=httpx.Timeout(HTTP_READ_TIMEOUT)) as client:
            async with asyncio.timeout(BUDGET):
                return await client.get(web_url)

    with chaos.slicer("web", 200, delay=20_000):
        outcome = await assert_timeout_propagates_async(
            get, budget=BUDGET, chaos=chaos, proxy="web"
        )
    assert isinstance(outcome.error, TimeoutError)
    [connection] = wire_connections(chaos, "web")
    assert connection.client_closed_at is not None


@pytest.mark.asyncio
async def test_async_httpx_without_a_deadline_is_reported_then_cancelled(
    chaos: Chaos, web_url: str
) -> None:
    async def get() -> httpx.Response:
        async with httpx.AsyncClient(timeout=httpx.Timeout(HTTP_READ_TIMEOUT)) as client:
            return await client.get(web_url)

    with chaos.slicer("web", 200, delay=20_000), pytest.raises(ChaosAssertionError) as raised:
        await assert_timeout_propagates_async(get, budget=BUDGET, chaos=chaos, proxy="web")
    assert_message(
        raised.value,
        "The call did not give up within its budget of 0.50s (+0.25s tolerance).\n"
        "- still running after 0.75s\n"
        "- connection web#<n> (still open) at the proxy\n" + NO_TIMEOUT_HINT,
    )
    # Cancelled once reported: the client closed its connection on the way out.
    assert wait_until(lambda: wire_connections(chaos, "web")[0].client_closed_at is not None)


# --------------------------------------------------------------------------------- postgres
@pytest.fixture(scope="module")
def postgres_upstream() -> Iterator[LocalService]:
    try:
        with postgres_server() as server:
            yield server
    except ServiceUnavailable as missing:
        pytest.skip(str(missing))


def test_a_postgres_statement_timeout_counts_as_a_timeout(
    chaos: Chaos, postgres_upstream: LocalService
) -> None:
    """PostgreSQL's statement_timeout ends a query with SQLSTATE 57014, which psycopg raises as
    QueryCanceled: the server side of a timeout budget."""
    proxy = chaos.proxy("postgres", upstream=postgres_upstream.address)
    with psycopg.connect(
        host=proxy.host,
        port=proxy.port,
        user="postgres",
        dbname="test",
        connect_timeout=5,
        options="-c statement_timeout=200",
    ) as connection:
        outcome = assert_timeout_propagates(
            lambda: connection.execute("SELECT pg_sleep(5)"), budget=BUDGET
        )
    assert isinstance(outcome.error, psycopg.errors.QueryCanceled)
    assert outcome.elapsed < BUDGET + 0.25
