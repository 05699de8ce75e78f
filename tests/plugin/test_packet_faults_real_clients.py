"""Packet faults reach real clients: redis-py against a real redis-server under `packet_loss`
(stalls as the model says, never a wrong or reordered reply, a reset at 100%), and over UDP a
UDP echo and dnspython against the plugin's DNS server, through a UDP proxy, under each fault.

Counts are small and bounds generous; the precise figures are in benchmarks/loss_bench.py.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator

import dns.exception
import dns.message
import dns.query
import dns.resolver
import pytest
import redis

from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.chaos import Chaos
from pytest_chaos.events import Datagrams, Retransmitted, SessionClosed
from tests.plugin.test_real_clients import (
    SLACK_SECONDS,
    assert_caused_by,
    assert_proxy_is_clean,
    elapsed,
    redis_client,
)
from tests.plugin.test_real_clients import redis_upstream as redis_upstream  # a fixture
from tests.servers import udp_echo_server


# ------------------------------------------------------------------------------- TCP: redis
def store(client: redis.Redis, count: int, tag: str) -> None:
    for i in range(count):
        client.set(f"{tag}:{i}", f"value {i}")


def timed_commands(client: redis.Redis, count: int, tag: str) -> list[tuple[float, float]]:
    """GET `count` distinct keys (see `store`); every reply must be the right one, in order.
    Returns each GET's (start, end) on the engine's clock (time.monotonic)."""
    spans = []
    for i in range(count):
        started = time.monotonic()
        assert client.get(f"{tag}:{i}") == f"value {i}".encode()
        spans.append((started, time.monotonic()))
    return spans


@pytest.fixture
def two_redis_proxies(
    chaos: Chaos, redis_upstream: object
) -> Iterator[tuple[ProxyInfo, ProxyInfo]]:
    address = redis_upstream.address  # type: ignore[attr-defined]
    lossy = chaos.proxy("redis", upstream=address)
    clean = chaos.proxy("redis_clean", upstream=address)
    yield lossy, clean
    assert_proxy_is_clean(chaos.server, "redis")


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2])
def test_redis_under_packet_loss_stalls_as_the_model_says_and_never_garbles(
    chaos: Chaos, two_redis_proxies: tuple[ProxyInfo, ProxyInfo], rate: float
) -> None:
    lossy_proxy, clean_proxy = two_redis_proxies
    # Connected before the loss starts: no SYN to lose, the stalls are the data's.
    lossy = redis_client(lossy_proxy, timeout=10)
    clean = redis_client(clean_proxy, timeout=10)
    assert lossy.ping()
    assert clean.ping()
    store(lossy, 30, "key")
    with chaos.packet_loss("redis", rate, stream="both"):
        spans = timed_commands(lossy, 30, "key")
    baseline = timed_commands(clean, 30, "key")
    lossy.close()
    clean.close()

    stalls = [e for e in chaos.events("redis") if isinstance(e, Retransmitted)]
    assert all(not e.gave_up and e.rto_ms == 200.0 for e in stalls)
    stalled_gets = 0
    for started, ended in spans:
        mine = [e for e in stalls if started <= e.time <= ended]
        # A command waits for every stall of its request and of its reply.
        assert ended - started >= sum(e.stalled_ms for e in mine) / 1000 - 0.002
        stalled_gets += bool(mine)
    durations = [end - start for start, end in spans]
    clean_durations = [end - start for start, end in baseline]
    # Side by side: the same commands through a proxy without loss are never stalled, and the
    # lossy run took at least the stalls it saw.
    assert sum(d >= 0.19 for d in clean_durations) <= 2  # (a busy machine may stall one)
    assert sum(durations) >= 0.19 * stalled_gets
    assert statistics.median(durations) < 0.19  # most commands lose nothing, even at 20%


def test_redis_under_total_loss_ends_with_a_reset(
    chaos: Chaos, two_redis_proxies: tuple[ProxyInfo, ProxyInfo]
) -> None:
    lossy_proxy, _ = two_redis_proxies
    client = redis_client(lossy_proxy, timeout=10)
    assert client.ping()
    with (
        chaos.packet_loss("redis", 1.0, retries=2),
        elapsed() as took,
        pytest.raises(redis.ConnectionError) as raised,
    ):
        client.get("anything")
    client.close()
    assert_caused_by(raised.value, ConnectionResetError)
    # 200 + 400 + 800 ms of retransmission timeouts, then the reset.
    assert 1.4 - 0.002 <= took[0] < 1.4 + SLACK_SECONDS
    closed = [e for e in chaos.events("redis") if e.kind == "closed"]
    assert closed[-1].reset  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ UDP: echo and DNS
@pytest.fixture(scope="module")
def udp_upstream() -> Iterator[str]:
    with udp_echo_server() as (host, port):
        yield f"{host}:{port}"


@pytest.fixture
def udp_echo(chaos: Chaos, udp_upstream: str) -> Iterator[socket.socket]:
    """A UDP client connected to the UDP proxy `udp_echo` in front of a UDP echo server."""
    proxy = chaos.proxy("udp_echo", upstream=udp_upstream, protocol="udp")
    assert proxy.protocol == "udp"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((proxy.host, proxy.port))
    sock.settimeout(2)
    yield sock
    sock.close()
    assert_proxy_is_clean(chaos.server, "udp_echo")


def send_numbered(sock: socket.socket, count: int, *, wait: float = 0.2) -> list[bytes]:
    for number in range(count):
        sock.send(number.to_bytes(8, "big"))
    sock.settimeout(wait)
    got = []
    while True:
        try:
            got.append(sock.recv(64))
        except TimeoutError:
            return got


def numbers(replies: list[bytes]) -> list[int]:
    return [int.from_bytes(reply, "big") for reply in replies]


def test_udp_echo_passes_untouched(udp_echo: socket.socket) -> None:
    assert numbers(send_numbered(udp_echo, 50)) == list(range(50))


def test_udp_latency_delays_each_datagram(chaos: Chaos, udp_echo: socket.socket) -> None:
    with chaos.latency("udp_echo", 150), elapsed() as took:
        udp_echo.send(b"slow")
        assert udp_echo.recv(8) == b"slow"
    assert 0.15 - 0.002 <= took[0] < 0.15 + SLACK_SECONDS


def test_udp_jitter_reorders_datagrams(chaos: Chaos, udp_echo: socket.socket) -> None:
    with chaos.latency("udp_echo", 60, jitter=50):
        got = numbers(send_numbered(udp_echo, 60, wait=0.4))
    assert sorted(got) == list(range(60))
    assert got != list(range(60))


def test_udp_loss_loses_the_datagrams_the_events_name(
    chaos: Chaos, udp_echo: socket.socket
) -> None:
    with chaos.packet_loss("udp_echo", 0.3, stream="upstream"):
        got = numbers(send_numbered(udp_echo, 100))
    runs = [e for e in chaos.events("udp_echo") if isinstance(e, Datagrams)]
    dropped = {n for e in runs if e.direction == "upstream" for n in e.dropped}
    assert set(got) == set(range(100)) - dropped
    assert 10 <= len(dropped) <= 50


def test_udp_duplicates_arrive_twice(chaos: Chaos, udp_echo: socket.socket) -> None:
    with chaos.duplicate("udp_echo", 1.0):
        got = numbers(send_numbered(udp_echo, 5))
    assert got == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_udp_reorder_lets_the_next_datagram_overtake(chaos: Chaos, udp_echo: socket.socket) -> None:
    with chaos.reorder("udp_echo", 0.5, delay=500):
        got = numbers(send_numbered(udp_echo, 40, wait=0.6))
    assert sorted(got) == list(range(40))
    assert got != list(range(40))
    runs = [e for e in chaos.events("udp_echo") if isinstance(e, Datagrams)]
    assert any(e.reordered for e in runs)


def test_udp_corrupt_flips_one_bit(chaos: Chaos, udp_echo: socket.socket) -> None:
    with chaos.corrupt("udp_echo", 1.0):
        udp_echo.send(b"\x00" * 16)
        received = udp_echo.recv(64)
    assert sum(bin(byte).count("1") for byte in received) == 1


def test_udp_bandwidth_in_datagrams_per_second_paces(chaos: Chaos, udp_echo: socket.socket) -> None:
    with chaos.bandwidth("udp_echo", 20, unit="datagrams/s"), elapsed() as took:
        got = send_numbered(udp_echo, 10, wait=0.5)
    assert len(got) == 10
    assert took[0] >= 0.45  # 10 datagrams at 20 per second, then the read's own wait


def test_udp_down_refuses_or_swallows(chaos: Chaos, udp_echo: socket.socket) -> None:
    with chaos.dependency_down("udp_echo"):
        udp_echo.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            udp_echo.recv(8)
    with chaos.dependency_down("udp_echo", mode="blackhole"):
        udp_echo.send(b"anyone?")
        udp_echo.settimeout(0.3)
        with pytest.raises(TimeoutError):
            udp_echo.recv(8)
    udp_echo.send(b"back")
    udp_echo.settimeout(2)
    assert udp_echo.recv(8) == b"back"


@pytest.fixture
def dns_proxy(chaos: Chaos) -> ProxyInfo:
    """A UDP proxy in front of the plugin's DNS server (dnspython's), which knows db.internal."""
    chaos.resolve("db.internal", to="127.0.0.1")
    return chaos.proxy("dns", upstream=chaos.dns_server.nameserver, protocol="udp")


def resolver(
    proxy: ProxyInfo, *, timeout: float = 0.3, lifetime: float = 3.0
) -> dns.resolver.Resolver:
    resolving = dns.resolver.Resolver(configure=False)
    resolving.nameservers = [proxy.host]
    resolving.port = proxy.port
    resolving.timeout = timeout
    resolving.lifetime = lifetime
    return resolving


def addresses(answer: dns.resolver.Answer) -> list[str]:
    return [record.address for record in answer]


def test_dnspython_through_a_udp_proxy_under_each_fault(chaos: Chaos, dns_proxy: ProxyInfo) -> None:
    resolving = resolver(dns_proxy)
    assert addresses(resolving.resolve("db.internal", "A")) == ["127.0.0.1"]

    with chaos.latency("dns", 200), elapsed() as took:
        assert addresses(resolving.resolve("db.internal", "A")) == ["127.0.0.1"]
    assert took[0] >= 0.2 - 0.002

    # A lost answer is asked again after the resolver's timeout; loss of all of them times out.
    with chaos.packet_loss("dns", 1.0), pytest.raises(dns.resolver.LifetimeTimeout):
        resolver(dns_proxy, lifetime=1.0).resolve("db.internal", "A")

    with chaos.duplicate("dns", 1.0):
        assert addresses(resolving.resolve("db.internal", "A")) == ["127.0.0.1"]

    # A flipped bit: dnspython rejects the answer (or reads a different one), never hangs.
    query = dns.message.make_query("db.internal", "A")
    clean = dns.query.udp(query, dns_proxy.host, port=dns_proxy.port, timeout=1).to_wire()
    with chaos.corrupt("dns", 1.0):
        try:
            response = dns.query.udp(query, dns_proxy.host, port=dns_proxy.port, timeout=1)
        except dns.exception.DNSException as error:
            outcome = type(error).__name__
        else:
            outcome = "changed" if response.to_wire() != clean else "same"
    assert outcome != "same"


def test_a_udp_session_shows_in_the_timeline(chaos: Chaos, udp_echo: socket.socket) -> None:
    with chaos.packet_loss("udp_echo", 1.0):
        udp_echo.send(b"lost")
        udp_echo.settimeout(0.2)
        with pytest.raises(TimeoutError):
            udp_echo.recv(8)
    text = str(chaos.timeline())
    assert "applied  packet_loss('udp_echo', rate=1.0)" in text
    assert "udp_echo#" in text
    assert "downstream 1 datagrams in, 0 out, dropped #0" in text
    assert not [e for e in chaos.events("udp_echo") if isinstance(e, SessionClosed)]
