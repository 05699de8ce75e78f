"""Faults really reach real clients: redis-py against a real redis-server, psycopg against a
real PostgreSQL, through the session's backend (the embedded engine unless told otherwise),
driven by markers and the `chaos` fixture.

Nothing here is mocked: each test measures what the client itself experiences (how long a
command takes, which exception it raises and what caused it), so each fails if its fault does
not reach the client. Upper bounds are generous because the machines are shared; lower bounds
are the fault's own numbers (less a clock allowance, see CLOCK_GRANULARITY_SECONDS).

PostgreSQL: the tests start their own throwaway cluster with `initdb` + `postgres` (under a
second on this kind of machine) rather than use whatever listens on 127.0.0.1:5432. A private
cluster on a free port has a known configuration (trust auth, a `test` database), can be run by
parallel workers side by side, and leaves nothing behind. Only when the binaries are missing do
the tests fall back to the machine's server on 127.0.0.1:5432, and skip if that is not there.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.backends.server import ToxiproxyServer
from pytest_chaos.chaos import Chaos
from tests.plugin import local_services
from tests.plugin.local_services import LocalService

# Generous upper bound for "the fault's delay, plus the machine being slow".
SLACK_SECONDS = 2.5
# The engine on uvloop (its default) reads a millisecond-granular cached clock, so a latency
# toxic can release a reply up to about a millisecond early (reported to the plugin's owners).
# Remove this allowance once the engine never undercuts a latency.
CLOCK_GRANULARITY_SECONDS = 0.002
CLIENT_TIMEOUT_SECONDS = 0.5
MACHINE_POSTGRES = LocalService("postgres", "127.0.0.1", 5432)


def error_chain(error: BaseException) -> list[BaseException]:
    """`error` and the errors behind it: client libraries wrap the socket's OSError in their
    own exception, explicitly (`from`) or implicitly (raised while handling it)."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def assert_caused_by(error: BaseException, kind: type[BaseException]) -> None:
    chain = error_chain(error)
    assert any(isinstance(e, kind) for e in chain), (
        f"expected a {kind.__name__} behind the client's error; the chain was: "
        + " <- ".join(f"{type(e).__name__}({e})" for e in chain)
    )


def at_least(seconds: float) -> float:
    return seconds - CLOCK_GRANULARITY_SECONDS


def assert_proxy_is_clean(toxiproxy: ToxiproxyServer, name: str) -> None:
    proxy = toxiproxy.proxies()[name]
    assert proxy.enabled, f"proxy {name} left disabled"
    assert proxy.toxics == (), f"toxics left on proxy {name}: {proxy.toxics}"


@contextlib.contextmanager
def elapsed() -> Iterator[list[float]]:
    """`with elapsed() as took:` ... then `took[0]` is the block's wall-clock duration."""
    took: list[float] = []
    started = time.perf_counter()
    try:
        yield took
    finally:
        took.append(time.perf_counter() - started)


# ------------------------------------------------------------------------------------ redis
@pytest.fixture(scope="module")
def redis_upstream() -> Iterator[LocalService]:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(local_services.redis_server())
        except local_services.ServiceUnavailable as missing:
            pytest.skip(f"no local Redis: {missing}")
        yield server


def redis_client(
    proxy: ProxyInfo, *, timeout: float | None = CLIENT_TIMEOUT_SECONDS
) -> redis.Redis:
    """A client that gives up after `timeout` and never retries, so one fault is one error.

    redis-py 6+ retries three times by default and deprecates `retry_on_timeout` (passing it
    at all warns); a `Retry` with zero retries means the same in every version from 5 on.
    """
    return redis.Redis(
        host=proxy.host,
        port=proxy.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def assert_redis_answers_quickly(proxy: ProxyInfo) -> None:
    client = redis_client(proxy, timeout=CLIENT_TIMEOUT_SECONDS)
    try:
        with elapsed() as took:
            assert client.ping() is True
        assert took[0] < CLIENT_TIMEOUT_SECONDS
    finally:
        client.close()


@pytest.fixture
def redis_proxy(
    chaos: Chaos, toxiproxy: ToxiproxyServer, redis_upstream: LocalService
) -> Iterator[ProxyInfo]:
    """The real Redis behind the proxy "redis". After the test, no fault may be left over:
    the proxy is clean and a brand-new connection answers at full speed."""
    proxy = chaos.proxy("redis", upstream=redis_upstream.address)
    yield proxy
    # Markers' faults end with the test body and context managers with their block, so by
    # this teardown nothing may remain.
    assert_proxy_is_clean(toxiproxy, "redis")
    assert_redis_answers_quickly(proxy)


@pytest.fixture
def cache(redis_proxy: ProxyInfo) -> Iterator[redis.Redis]:
    """A client already connected during setup, as a pooled connection in an app would be.
    Setup runs before markers apply, so this PING is fast even under a fault marker."""
    client = redis_client(redis_proxy)
    assert client.ping() is True
    yield client
    client.close()


@pytest.mark.latency("redis", 200)
def test_latency_delays_every_redis_command(cache: redis.Redis) -> None:
    cache.set("greeting", "hello")
    for _ in range(2):
        with elapsed() as took:
            assert cache.get("greeting") == b"hello"
        assert at_least(0.2) <= took[0] < 0.2 + SLACK_SECONDS


def test_latency_context_manager_delays_only_its_block(chaos: Chaos, cache: redis.Redis) -> None:
    with chaos.latency("redis", 300), elapsed() as slow:
        assert cache.ping() is True
    with elapsed() as fast:
        assert cache.ping() is True  # same connection, fault reverted
    assert at_least(0.3) <= slow[0] < 0.3 + SLACK_SECONDS
    assert fast[0] < 0.3


@pytest.fixture
def setup_ping_seconds(redis_proxy: ProxyInfo) -> float:
    client = redis_client(redis_proxy, timeout=5)
    try:
        with elapsed() as took:
            client.ping()
        return took[0]
    finally:
        client.close()


@pytest.mark.latency("redis", 400)
def test_markers_apply_to_the_test_body_not_its_setup(
    setup_ping_seconds: float, cache: redis.Redis
) -> None:
    assert setup_ping_seconds < 0.4
    with elapsed() as took:
        cache.ping()
    assert took[0] >= at_least(0.4)


@pytest.mark.stall("redis")
def test_stall_makes_a_client_with_a_timeout_give_up(cache: redis.Redis) -> None:
    with elapsed() as took, pytest.raises(redis.TimeoutError):
        cache.get("anything")
    assert CLIENT_TIMEOUT_SECONDS * 0.9 <= took[0] < CLIENT_TIMEOUT_SECONDS + SLACK_SECONDS


@pytest.mark.dependency_down("redis", mode="refuse")
def test_dependency_down_refuses_a_new_redis_connection(redis_proxy: ProxyInfo) -> None:
    client = redis_client(redis_proxy, timeout=5)
    with elapsed() as took, pytest.raises(redis.ConnectionError) as raised:
        client.ping()
    assert_caused_by(raised.value, ConnectionRefusedError)
    assert took[0] < 5, "a refusal is immediate, not a timeout"
    client.close()


@pytest.mark.reset_peer("redis")
def test_reset_peer_resets_the_redis_connection(cache: redis.Redis) -> None:
    with pytest.raises(redis.ConnectionError) as raised:
        cache.get("anything")
    assert_caused_by(raised.value, ConnectionResetError)


@pytest.mark.parametrize(
    ("mode", "error", "cause"),
    [
        ("reset", redis.ConnectionError, ConnectionResetError),
        ("blackhole", redis.TimeoutError, TimeoutError),
    ],
)
def test_down_modes_reach_a_connected_client(
    chaos: Chaos, cache: redis.Redis, mode: str, error: type[Exception], cause: type[Exception]
) -> None:
    """A live connection: a reset one gets an RST on its next command, a blackholed one
    hangs until the client's own timeout."""
    with chaos.dependency_down("redis", mode=mode), pytest.raises(error) as raised:
        cache.get("anything")
    assert_caused_by(raised.value, cause)


def test_refuse_cuts_a_connected_client_off(chaos: Chaos, cache: redis.Redis) -> None:
    """refuse closes live connections: the next command fails (whether the client sees the
    close, or a reset because its command raced the close), and reconnecting is refused."""
    with chaos.dependency_down("redis", mode="refuse"):
        with pytest.raises(redis.ConnectionError):
            cache.get("anything")
        with pytest.raises(redis.ConnectionError) as raised:
            cache.get("anything")
        assert_caused_by(raised.value, ConnectionRefusedError)
    assert cache.get("anything") is None  # the same client reconnects once the fault is gone


@pytest.mark.slicer("redis", 8, size_variation=3, delay=1000)
def test_slicer_delivers_a_reply_in_pieces_intact(cache: redis.Redis) -> None:
    value = bytes(range(256)) * 8  # 2 KiB: about 256 writes of ~8 bytes, 1 ms apart
    cache.set("blob", value)
    with elapsed() as took:
        assert cache.get("blob") == value
    assert 0.15 <= took[0] < 0.26 + SLACK_SECONDS, "the reply was not sliced"


@pytest.mark.limit_data("redis", 1000)
def test_limit_data_cuts_a_large_reply_short(cache: redis.Redis) -> None:
    cache.set("blob", b"x" * 50_000)
    with pytest.raises(redis.ConnectionError):
        cache.get("blob")


@pytest.mark.bandwidth("redis", 100)
def test_bandwidth_slows_a_large_reply(cache: redis.Redis) -> None:
    cache.set("blob", b"x" * 50_000)
    with elapsed() as took:
        assert len(cache.get("blob") or b"") == 50_000
    # 50 KB at 100 KB/s is half a second; a little less for what the first chunk carries.
    assert 0.4 <= took[0] < 0.5 + SLACK_SECONDS


# --------------------------------------------------------------------------------- postgres
@pytest.fixture(scope="module")
def postgres_upstream() -> Iterator[LocalService]:
    """Our own cluster (see the module's docstring for why), else the machine's, else skip."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(local_services.postgres_server())
        except local_services.ServiceUnavailable as missing:
            server = machine_postgres(because=str(missing))
        yield server


def machine_postgres(because: str) -> LocalService:
    try:
        psycopg.connect(_dsn(MACHINE_POSTGRES.host, MACHINE_POSTGRES.port)).close()
    except psycopg.OperationalError as unreachable:
        pytest.skip(f"no PostgreSQL: {because}, and none on 127.0.0.1:5432 ({unreachable})")
    return MACHINE_POSTGRES


def _dsn(host: str, port: int, connect_timeout: int = 3) -> str:
    return f"host={host} port={port} user=postgres dbname=test connect_timeout={connect_timeout}"


@pytest.fixture
def postgres_proxy(
    chaos: Chaos, toxiproxy: ToxiproxyServer, postgres_upstream: LocalService
) -> Iterator[ProxyInfo]:
    proxy = chaos.proxy("postgres", upstream=postgres_upstream.address)
    yield proxy
    assert_proxy_is_clean(toxiproxy, "postgres")
    with psycopg.connect(_dsn(proxy.host, proxy.port)) as fresh:
        assert fresh.execute("SELECT 1").fetchone() == (1,)


@pytest.fixture
def database(postgres_proxy: ProxyInfo) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(_dsn(postgres_proxy.host, postgres_proxy.port)) as connection:
        yield connection


@pytest.mark.latency("postgres", 200)
def test_latency_delays_a_postgres_query(database: psycopg.Connection[tuple[object, ...]]) -> None:
    with elapsed() as took:
        assert database.execute("SELECT 1").fetchone() == (1,)
    assert at_least(0.2) <= took[0] < 0.2 + SLACK_SECONDS


@pytest.mark.dependency_down("postgres")
def test_dependency_down_refuses_a_postgres_connection(postgres_proxy: ProxyInfo) -> None:
    with elapsed() as took, pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(_dsn(postgres_proxy.host, postgres_proxy.port))
    assert "refused" in str(raised.value).lower(), str(raised.value)
    assert took[0] < 3, "a refusal is immediate, not a connect timeout"


@pytest.mark.dependency_down("postgres", mode="blackhole")
def test_connect_timeout_bounds_a_blackholed_postgres(postgres_proxy: ProxyInfo) -> None:
    # libpq (and psycopg) round connect_timeout up to 2 seconds.
    with elapsed() as took, pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(_dsn(postgres_proxy.host, postgres_proxy.port, connect_timeout=2))
    assert "timeout" in str(raised.value).lower(), str(raised.value)
    assert 1.8 <= took[0] < 2 + SLACK_SECONDS
