"""Each toxic's effect, measured from a real client over real sockets."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.engine.api_helpers import (
    add_toxic,
    connect,
    create_proxy,
    read_until_closed,
    remove_toxic,
    round_trip_seconds,
)
from tests.servers import recv_exactly


@pytest.fixture
def proxied(api: httpx.Client, echo: str) -> str:
    return str(create_proxy(api, "echo", echo)["listen"])


def test_latency_delays_each_round_trip(api: httpx.Client, proxied: str) -> None:
    with connect(proxied) as sock:
        baseline = round_trip_seconds(sock)
        add_toxic(api, "echo", type="latency", attributes={"latency": 150})
        delayed = round_trip_seconds(sock)
        remove_toxic(api, "echo", "latency_downstream")
        after = round_trip_seconds(sock)
    assert baseline < 0.1
    assert 0.15 <= delayed < 0.6
    assert after < 0.1


def test_latency_on_both_streams_adds_up(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="latency", stream="upstream", attributes={"latency": 100})
    add_toxic(api, "echo", type="latency", stream="downstream", attributes={"latency": 100})
    with connect(proxied) as sock:
        assert 0.2 <= round_trip_seconds(sock) < 0.7


def test_latency_keeps_throughput(api: httpx.Client, proxied: str) -> None:
    """Queued chunks are delayed from their own arrival, so delays do not add up."""
    add_toxic(api, "echo", type="latency", attributes={"latency": 200})
    with connect(proxied) as sock:
        started = time.perf_counter()
        for _ in range(20):
            sock.sendall(b"x" * 1000)
            time.sleep(0.01)
        recv_exactly(sock, 20_000)
        elapsed = time.perf_counter() - started
    # Serial delays would take 20 * 0.2 s = 4 s.
    assert 0.2 <= elapsed < 1.5


def test_bandwidth_paces_delivery(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="bandwidth", attributes={"rate": 100})  # 100 KB/s
    with connect(proxied) as sock:
        started = time.perf_counter()
        sock.sendall(b"b" * 60_000)
        recv_exactly(sock, 60_000)
        elapsed = time.perf_counter() - started
    assert 0.5 <= elapsed < 3.0


def test_bandwidth_keeps_its_rate_and_sends_the_first_byte_on_time(
    api: httpx.Client, proxied: str
) -> None:
    add_toxic(api, "echo", type="bandwidth", attributes={"rate": 100})  # 100 KB/s
    with connect(proxied) as sock:
        round_trip_seconds(sock)  # the upstream is dialled: timing starts at the first byte
        started = time.perf_counter()
        sock.sendall(b"b" * 100_000)
        recv_exactly(sock, 1)
        first_byte = time.perf_counter() - started
        recv_exactly(sock, 99_999)
        elapsed = time.perf_counter() - started
    # 100,000 bytes at 100,000 B/s: 1 s, never less (a few % of timer rounding), more only by
    # what a busy machine adds. The first byte leaves after 5 ms of the rate, not 100 ms.
    assert 0.97 <= elapsed < 1.5
    assert first_byte < 0.05


def test_bandwidth_zero_stalls_until_removed(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="bandwidth", attributes={"rate": 0})
    with connect(proxied) as sock:
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        remove_toxic(api, "echo", "bandwidth_downstream")
        sock.settimeout(5)
        assert recv_exactly(sock, 4) == b"held"


def test_timeout_zero_drops_data_but_keeps_the_connection(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="timeout", stream="upstream", attributes={"timeout": 0})
    with connect(proxied) as sock:
        sock.sendall(b"lost")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)


def test_timeout_closes_after_idle_time(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="timeout", stream="upstream", attributes={"timeout": 300})
    with connect(proxied) as sock:
        started = time.perf_counter()
        sock.sendall(b"lost")
        assert sock.recv(10) == b""
        elapsed = time.perf_counter() - started
    assert 0.25 <= elapsed < 2.0


def test_removing_timeout_closes_the_connection(api: httpx.Client, proxied: str) -> None:
    with connect(proxied) as sock:
        round_trip_seconds(sock)  # the connection is established before the toxic arrives
        add_toxic(api, "echo", type="timeout", stream="upstream", attributes={"timeout": 0})
        sock.sendall(b"lost")
        remove_toxic(api, "echo", "timeout_upstream")
        assert sock.recv(10) == b""


def test_reset_peer_resets_the_connection(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="reset_peer", stream="upstream", attributes={"timeout": 100})
    with connect(proxied) as sock:
        started = time.perf_counter()
        sock.sendall(b"boom")
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
        elapsed = time.perf_counter() - started
    assert 0.09 <= elapsed < 2.0


def test_slicer_splits_into_small_writes(api: httpx.Client, proxied: str) -> None:
    add_toxic(
        api,
        "echo",
        type="slicer",
        attributes={"average_size": 10, "size_variation": 5, "delay": 2000},
    )
    payload = bytes(range(256)) * 2
    with connect(proxied) as sock:
        sock.sendall(payload)
        reads = []
        while sum(map(len, reads)) < len(payload):
            reads.append(sock.recv(65536))
    assert b"".join(reads) == payload
    # 512 bytes in slices of 5..15 bytes, 2 ms apart: a reader sees many small reads.
    assert len(reads) >= 20
    assert max(map(len, reads)) < 200


def test_slicer_with_variation_equal_to_the_average_slices_correctly(
    api: httpx.Client, proxied: str
) -> None:
    """Upstream accepts size_variation == average_size; only a larger variation is refused."""
    toxic = add_toxic(
        api, "echo", type="slicer", attributes={"average_size": 1000, "size_variation": 1000}
    )
    payload = bytes(range(256)) * 400
    with connect(proxied) as sock:
        sock.sendall(payload)
        received = recv_exactly(sock, len(payload))
    assert toxic["attributes"] == {"average_size": 1000, "size_variation": 1000, "delay": 0}
    assert received == payload


def test_limit_data_forwards_the_limit_then_closes(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="limit_data", attributes={"bytes": 100})
    with connect(proxied) as sock:
        sock.sendall(b"z" * 1000)
        received = read_until_closed(sock)
    assert received == b"z" * 100


def test_slow_close_delays_the_close(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="slow_close", attributes={"delay": 300})
    with connect(proxied) as sock:
        assert round_trip_seconds(sock) < 0.2
        started = time.perf_counter()
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""
        elapsed = time.perf_counter() - started
    assert 0.28 <= elapsed < 2.0


def test_noop_passes_everything(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="noop")
    with connect(proxied) as sock:
        sock.sendall(b"n" * 100_000)
        assert recv_exactly(sock, 100_000) == b"n" * 100_000


def test_toxicity_zero_leaves_connections_alone(api: httpx.Client, proxied: str) -> None:
    toxic = add_toxic(api, "echo", type="latency", toxicity=0, attributes={"latency": 1000})
    assert toxic["toxicity"] == 0
    with connect(proxied) as sock:
        assert round_trip_seconds(sock) < 0.5


def test_a_reset_peer_with_toxicity_zero_does_not_reset(api: httpx.Client, proxied: str) -> None:
    """Upstream turns every close into a reset even when the toxic did not roll; we do not."""
    add_toxic(api, "echo", type="reset_peer", toxicity=0, attributes={"timeout": 0})
    with connect(proxied) as sock:
        assert round_trip_seconds(sock) < 0.5
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""


def test_latency_never_releases_data_early(api: httpx.Client, proxied: str) -> None:
    """A coarse loop clock (uvloop's is cached to the millisecond) must not shorten a delay."""
    add_toxic(api, "echo", type="latency", attributes={"latency": 30})
    with connect(proxied) as sock:
        samples = []
        for i in range(60):
            samples.append(round_trip_seconds(sock))
            time.sleep(0.001 * (i % 7))  # idle gaps put arrivals at every phase of the clock
    assert min(samples) >= 0.030
