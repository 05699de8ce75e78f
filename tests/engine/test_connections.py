"""Connection life cycle through the engine: half-close, refused dials, resets, seeds, events."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pytest_chaos.engine import EngineThread
from tests.engine.api_helpers import (
    add_toxic,
    assert_refused,
    connect,
    create_proxy,
    events,
    late_dials,
    read_until_closed,
    remove_toxic,
    round_trip_seconds,
    wait_for_event,
    wait_until,
)
from tests.servers import free_port, recv_exactly


class _ReplyAfterEof(socketserver.BaseRequestHandler):
    """Reads until the client half-closes, then answers with the byte count and closes."""

    def handle(self) -> None:
        total = 0
        while data := self.request.recv(65536):
            total += len(data)
        self.request.sendall(f"got {total}".encode())


class _ResetAtOnce(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(10)
        self.request.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.request.close()


def _serve(handler: type[socketserver.BaseRequestHandler]) -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def reply_after_eof() -> Iterator[str]:
    yield from _serve(_ReplyAfterEof)


@pytest.fixture
def resets_at_once() -> Iterator[str]:
    yield from _serve(_ResetAtOnce)


def test_half_close_is_propagated(api: httpx.Client, reply_after_eof: str) -> None:
    """Upstream Toxiproxy tears the connection down on the client's FIN; we pass the FIN on."""
    proxy = create_proxy(api, "halfclose", reply_after_eof)
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"q" * 5000)
        sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert reply == b"got 5000"
    closed = wait_for_event(api, "closed", proxy="halfclose")
    assert closed["by"] == "client"
    assert closed["reset"] is False
    assert closed["bytes"] == {
        "upstream": {"in": 5000, "out": 5000},
        "downstream": {"in": 8, "out": 8},
    }


def test_half_close_waits_for_data_held_by_toxics(api: httpx.Client, reply_after_eof: str) -> None:
    proxy = create_proxy(api, "halfclose", reply_after_eof)
    add_toxic(api, "halfclose", type="latency", stream="upstream", attributes={"latency": 200})
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"q" * 300)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b"got 300"


def _send_and_receive(listen: str) -> bytes:
    with connect(listen) as sock:
        sock.sendall(b"hello")
        return sock.recv(10)


def test_a_refused_upstream_closes_the_client_promptly_and_is_recorded(api: httpx.Client) -> None:
    upstream = f"127.0.0.1:{free_port()}"
    proxy = create_proxy(api, "nothing", upstream)
    started = time.perf_counter()
    # As upstream: the client's connection is accepted, then closed with a FIN.
    assert _send_and_receive(proxy["listen"]) == b""
    assert time.perf_counter() - started < 1.0
    failed = wait_for_event(api, "upstream_failed", proxy="nothing")
    assert failed["upstream"] == upstream
    assert failed["error"] == "Connection refused (errno 111)"
    closed = wait_for_event(api, "closed", proxy="nothing")
    assert closed["by"] == "proxy: upstream dial failed"
    assert closed["reset"] is False
    assert closed["error"] == "Connection refused (errno 111)"
    assert closed["connection"] == failed["connection"]


def test_a_draining_client_is_let_go_when_its_proxy_is_deleted(
    engine: EngineThread, api: httpx.Client
) -> None:
    create_proxy(api, "nothing", f"127.0.0.1:{free_port()}")
    proxy = engine.engine.collection.proxies["nothing"]
    with connect(proxy.listen) as sock:
        assert sock.recv(10) == b""  # the FIN; this client keeps its side open
        wait_until(lambda: len(proxy.connections) == 1)  # its socket is still read

        assert api.delete("/proxies/nothing").status_code == 204

        assert proxy.connections == set()


DIALS = 500


def test_a_refused_upstream_never_fails_the_clients_dial(api: httpx.Client) -> None:
    """Upstream never fails a dial: it accepts, then closes. A reset sent at once can land
    before a non-blocking connect() is checked, and the client's dial fails with it."""
    proxy = create_proxy(api, "nothing", f"127.0.0.1:{free_port()}")
    clients = late_dials(proxy["listen"], DIALS)
    try:
        for sock in clients:
            assert sock.recv(10) == b""  # a FIN, not a reset
    finally:
        for sock in clients:
            sock.close()
    wait_until(
        lambda: sum(e["kind"] == "upstream_failed" for e in events(api, proxy="nothing")) == DIALS,
        failure=f"not all {DIALS} refusals were recorded",
    )


def test_a_client_that_speaks_first_still_reads_a_clean_end(api: httpx.Client) -> None:
    """What the client sent before the refusal is read and dropped: closing a socket with
    unread data would turn the FIN into a reset."""
    proxy = create_proxy(api, "nothing", f"127.0.0.1:{free_port()}")
    for _ in range(20):
        with connect(proxy["listen"]) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 100)
            assert read_until_closed(sock) == b""


def test_a_reset_from_the_server_reaches_the_client_as_a_reset(
    api: httpx.Client, resets_at_once: str
) -> None:
    proxy = create_proxy(api, "resetting", resets_at_once)
    with connect(proxy["listen"]) as sock:
        sock.sendall(b"hi")
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    closed = wait_for_event(api, "closed", proxy="resetting")
    assert closed["by"] == "server"
    assert closed["reset"] is True


def test_disabling_a_proxy_closes_live_connections(api: httpx.Client, echo: str) -> None:
    proxy = create_proxy(api, "echo", echo)
    with connect(proxy["listen"]) as sock:
        round_trip_seconds(sock)
        assert api.post("/proxies/echo", json={"enabled": False}).status_code == 200
        assert sock.recv(10) == b""
    assert_refused(proxy["listen"])


def test_toxics_apply_to_live_connections(api: httpx.Client, echo: str) -> None:
    proxy = create_proxy(api, "echo", echo)
    with connect(proxy["listen"]) as sock:
        assert round_trip_seconds(sock) < 0.1
        add_toxic(api, "echo", type="latency", attributes={"latency": 200})
        assert round_trip_seconds(sock) >= 0.2
        response = api.patch(
            "/proxies/echo/toxics/latency_downstream", json={"attributes": {"latency": 400}}
        )
        assert response.status_code == 200
        assert round_trip_seconds(sock) >= 0.4
        remove_toxic(api, "echo", "latency_downstream")
        assert round_trip_seconds(sock) < 0.1


def test_removing_a_stalling_toxic_does_not_hang_the_api(api: httpx.Client, echo: str) -> None:
    """Upstream can hang the API while a peer is dead; here removal never waits on a peer."""
    proxy = create_proxy(api, "echo", echo)
    sock = connect(proxy["listen"])
    try:
        add_toxic(api, "echo", type="bandwidth", attributes={"rate": 0})
        # A client that sends a lot and never reads: every buffer on the way fills up.
        sock.setblocking(False)
        try:
            for _ in range(2000):
                sock.send(b"f" * 65536)
        except BlockingIOError:
            pass
        started = time.perf_counter()
        assert api.delete("/proxies/echo/toxics/bandwidth_downstream").status_code == 204
        assert api.delete("/proxies/echo").status_code == 204
        assert time.perf_counter() - started < 1.0
    finally:
        sock.close()


def test_events_record_the_whole_connection(api: httpx.Client, echo: str) -> None:
    proxy = create_proxy(api, "echo", echo)
    add_toxic(api, "echo", type="latency", attributes={"latency": 1})
    with connect(proxy["listen"]) as sock:
        round_trip_seconds(sock, b"x" * 10)
    closed = wait_for_event(api, "closed", proxy="echo")
    seen = [e for e in events(api, proxy="echo") if e.get("connection") == closed["connection"]]
    kinds = [e["kind"] for e in seen]
    assert kinds[:3] == ["accepted", "upstream_connected", "toxics_active"]
    assert kinds[-1] == "closed"
    assert seen[2]["toxics"] == {"upstream": [], "downstream": ["latency_downstream"]}
    assert closed["by"] == "client"
    # Data events are stamped when their last byte arrived, so only the others are in order.
    times = [e["time"] for e in seen if e["kind"] != "data"]
    assert times == sorted(times)
    data = [e for e in seen if e["kind"] == "data"]
    assert sum(e["bytes"] for e in data if e["direction"] == "upstream") == 10
    assert sum(e["bytes"] for e in data if e["direction"] == "downstream") == 10


def _active_pattern(seed: int, connections: int = 24) -> list[bool]:
    """Which of `connections` successive connections a 50% toxic lands on, under `seed`."""
    from tests.servers import echo_server

    running = EngineThread(seed=seed)
    running.start()
    try:
        with echo_server() as (host, port), httpx.Client(base_url=running.engine.url) as api:
            proxy = create_proxy(api, "seeded", f"{host}:{port}")
            add_toxic(api, "seeded", type="noop", toxicity=0.5)
            for _ in range(connections):
                with connect(proxy["listen"]) as sock:
                    round_trip_seconds(sock)
            # Every connection either records its active toxics or has none.
            seen: list[dict[str, Any]] = []
            closed: set[int] = set()

            def all_closed() -> bool:
                seen[:] = events(api, proxy="seeded")
                closed.update(e["connection"] for e in seen if e["kind"] == "closed")
                return len(closed) == connections

            wait_until(all_closed, failure=f"not all {connections} connections were closed")
            ids = sorted(closed)
            active = {e["connection"] for e in seen if e["kind"] == "toxics_active"}
            return [connection in active for connection in ids]
    finally:
        running.stop()


def test_the_same_seed_gives_the_same_toxicity_rolls() -> None:
    first = _active_pattern(seed=7)
    assert first == _active_pattern(seed=7)
    assert any(first)
    assert not all(first)
    assert _active_pattern(seed=8) != first


def test_a_chunk_held_by_latency_is_not_lost_when_the_toxic_is_removed(
    api: httpx.Client, echo: str
) -> None:
    proxy = create_proxy(api, "echo", echo)
    with connect(proxy["listen"]) as sock:
        round_trip_seconds(sock)
        add_toxic(api, "echo", type="latency", attributes={"latency": 5000})
        sock.sendall(b"held back")
        time.sleep(0.1)  # let the chunk reach the latency stage
        remove_toxic(api, "echo", "latency_downstream")
        started = time.perf_counter()
        assert recv_exactly(sock, 9) == b"held back"
        # Far below the 5 s the toxic would have held it.
        assert time.perf_counter() - started < 2.5


class _GreetAndClose(socketserver.BaseRequestHandler):
    """Speaks first and closes at once: its bytes and FIN can beat the proxy's dial return."""

    def handle(self) -> None:
        self.request.sendall(b"hello from the server")
        self.request.shutdown(socket.SHUT_WR)


def test_a_server_that_speaks_and_closes_at_once_is_relayed(api: httpx.Client) -> None:
    for address in _serve(_GreetAndClose):
        proxy = create_proxy(api, "greeter", address)
        for _ in range(30):
            with connect(proxy["listen"]) as sock:
                received = read_until_closed(sock)
            assert received == b"hello from the server"


# -- the listen backlog
def _accept_queue_limit(sock: Any) -> int:
    """The kernel's accept-queue limit of a listening socket (TCP_INFO's tcpi_sacked)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 28)[0])


def test_proxies_listen_with_the_system_backlog(
    engine: EngineThread, api: httpx.Client, echo: str
) -> None:
    create_proxy(api, "p", echo)
    server = engine.engine.collection.proxies["p"]._server
    assert server is not None

    limit = _accept_queue_limit(server.sockets[0])

    with open("/proc/sys/net/core/somaxconn") as handle:
        assert limit == int(handle.read())
