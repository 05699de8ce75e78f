"""`packet_loss` on TCP over real sockets: loss shows as stalls and resets, never as missing,
duplicated or reordered bytes; lost SYNs hold the connection back."""

from __future__ import annotations

import socket
import struct
import threading
import time

import httpx
import pytest

from tests.engine.api_helpers import (
    add_toxic,
    connect,
    create_proxy,
    events,
    exchange,
    remove_toxic,
    round_trip_seconds,
    wait_for_event,
)
from tests.servers import recv_exactly

# A seed with which the first connection's first SYN is lost and a retransmission gets through.
SYN_LOST_ONCE_SEED = 2


@pytest.fixture
def proxied(api: httpx.Client, echo: str) -> str:
    return str(create_proxy(api, "echo", echo)["listen"])


def test_a_lost_segment_stalls_the_reply_for_the_rto(api: httpx.Client, proxied: str) -> None:
    with connect(proxied) as sock:
        baseline = round_trip_seconds(sock)
        add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 1.0, "retries": 20})
        sock.sendall(b"ping")
        time.sleep(0.5)
        # Stalled, not dropped: removing the toxic delivers the held reply, intact.
        remove_toxic(api, "echo", "packet_loss_downstream")
        assert recv_exactly(sock, 4) == b"ping"
        add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 1.0, "retries": 1})
        started = time.perf_counter()
        sock.sendall(b"gone")
        with pytest.raises(ConnectionResetError):
            sock.recv(4)
        gave_up_after = time.perf_counter() - started
    assert baseline < 0.1
    # Two transmissions lost: 200 ms, then 400 ms; then the reset.
    assert 0.6 <= gave_up_after < 5.0
    retransmitted = wait_for_event(api, "retransmitted", gave_up=True)
    assert retransmitted["losses"] == 2
    assert retransmitted["direction"] == "downstream"
    closed = wait_for_event(api, "closed")
    assert closed["reset"] is True
    assert closed["by"] == "toxic packet_loss_downstream (gave up after 2 losses of a segment)"


def test_bytes_arrive_intact_and_in_order_under_heavy_loss(api: httpx.Client, proxied: str) -> None:
    add_toxic(
        api,
        "echo",
        type="packet_loss",
        stream="upstream",
        attributes={"loss_rate": 0.3, "correlation": 0.3, "rto_min": 2},
    )
    add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 0.3, "rto_min": 2})
    payload = bytes(range(256)) * 800  # 200 KB: about 140 segments each way
    with connect(proxied, timeout=30) as sock:
        sent = threading.Thread(target=sock.sendall, args=(payload,))
        sent.start()
        echoed = recv_exactly(sock, len(payload))
        sent.join()
    assert echoed == payload
    lost = [e for e in events(api) if e["kind"] == "retransmitted"]
    assert {e["direction"] for e in lost} == {"upstream", "downstream"}
    assert all(not e["gave_up"] for e in lost)


def test_a_lost_syn_holds_the_connection_back(api: httpx.Client, proxied: str) -> None:
    add_toxic(
        api,
        "echo",
        type="packet_loss",
        stream="upstream",
        attributes={"loss_rate": 1.0, "syn_retries": 0},
    )
    started = time.perf_counter()
    with connect(proxied) as sock:
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            sock.recv(5)
    waited = time.perf_counter() - started
    # One SYN lost, no retry allowed: reset after the initial RTO of 1 s, never dialled.
    assert 1.0 <= waited < 6.0
    lost = wait_for_event(api, "syn_lost")
    assert (lost["losses"], lost["delay_ms"], lost["gave_up"]) == (1, 1000.0, True)
    assert lost["toxics"] == ["packet_loss_upstream"]
    assert not [e for e in events(api) if e["kind"] == "upstream_connected"]


def test_connections_open_before_the_toxic_have_no_handshake_to_lose(
    api: httpx.Client, proxied: str
) -> None:
    with connect(proxied) as sock:
        assert exchange(sock, b"a") == b"a"
        add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 0.0})
        assert round_trip_seconds(sock) < 0.5
    assert not [e for e in events(api) if e["kind"] == "syn_lost"]


def test_the_rto_grows_with_the_latency_toxics_round_trip(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="latency", stream="upstream", attributes={"latency": 150})
    with connect(proxied) as sock:
        assert exchange(sock, b"x") == b"x"
        add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 1.0, "retries": 0})
        sock.sendall(b"y")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    lost = wait_for_event(api, "retransmitted")
    # RTT (150 ms of latency one way, none back) + TCP_RTO_MIN.
    assert lost["rto_ms"] == 350.0


def test_the_toxic_uses_one_generator_per_seeded_connection(
    api: httpx.Client, proxied: str
) -> None:
    """The same seed gives the n-th connection the same losses."""

    def losses_of_one_connection() -> list[int]:
        api.post("/seed", json={"seed": 99}).raise_for_status()
        since = events(api)[-1]["seq"]
        with connect(proxied) as sock:
            for _ in range(30):
                assert exchange(sock, b"q") == b"q"
        # The server's FIN crosses the toxic after the client has left, and may be lost too:
        # wait for the close, which comes after it, and count this connection's events only
        # (a FIN still stalled would otherwise be counted in the next connection's window).
        (accepted,) = [e for e in events(api, since=since) if e["kind"] == "accepted"]
        connection = accepted["connection"]
        wait_for_event(api, "closed", connection=connection)
        got = [
            e
            for e in events(api, since=since)
            if e["kind"] == "retransmitted" and e["connection"] == connection
        ]
        return [e["losses"] for e in got]

    add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 0.3, "rto_min": 1})
    first = losses_of_one_connection()
    assert first == losses_of_one_connection()
    assert first


def test_a_client_that_gives_up_during_a_syn_wait_leaves_nothing(
    api: httpx.Client, proxied: str
) -> None:
    add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 1.0})
    sock = connect(proxied)
    # The client aborts (RST) long before the 127 s the SYN retries would take.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    closed = wait_for_event(api, "closed", timeout=2.0)
    assert closed["by"] == "client"
    assert not [e for e in events(api) if e["kind"] in ("syn_lost", "upstream_connected")]
    response = api.get("/metrics")
    assert 'toxiproxy_chaos_active_connections{proxy="echo"} 0.0' in response.text


def test_syn_delays_do_not_hold_other_connections(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 1.0, "syn_retries": 3})
    held = connect(proxied)
    try:
        api.delete("/proxies/echo/toxics/packet_loss_downstream").raise_for_status()
        with connect(proxied) as sock:
            assert round_trip_seconds(sock) < 0.5
    finally:
        held.close()


def test_a_reset_reaches_a_client_blocked_in_recv(api: httpx.Client, proxied: str) -> None:
    with connect(proxied) as sock:
        assert exchange(sock, b"a") == b"a"
        add_toxic(
            api,
            "echo",
            type="packet_loss",
            attributes={"loss_rate": 1.0, "retries": 0, "rto_min": 50},
        )
        sock.sendall(b"b")
        with pytest.raises((ConnectionResetError, socket.timeout)) as raised:
            sock.recv(1)
    assert raised.type is ConnectionResetError


def test_a_flood_sent_while_the_dial_is_held_arrives_whole(api: httpx.Client, proxied: str) -> None:
    """More than the connection keeps before its links exist (its reads then pause) reaches
    the server intact once the dial completes: the paused reads resume."""
    payload = bytes(range(256)) * 4096  # 1 MiB: past EARLY_HIGH_WATER, and the socket buffers
    add_toxic(api, "echo", type="packet_loss", attributes={"loss_rate": 0.5, "syn_retries": 6})
    api.post("/seed", json={"seed": SYN_LOST_ONCE_SEED}).raise_for_status()
    with connect(proxied, timeout=30) as sock:
        sent = threading.Thread(target=sock.sendall, args=(payload,))
        sent.start()
        # The held handshake stays held; the bytes then go through no loss (far quicker).
        time.sleep(0.3)
        remove_toxic(api, "echo", "packet_loss_downstream")
        echoed = recv_exactly(sock, len(payload))
        sent.join()
    assert echoed == payload
    # The dial was held back by a lost SYN while the client sent (the seed makes sure).
    lost = wait_for_event(api, "syn_lost")
    assert lost["losses"] >= 1
    assert not lost["gave_up"]
