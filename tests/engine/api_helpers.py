"""Helpers shared by the API tests: error checks, proxy creation and traffic over real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.servers import recv_exactly

PROXY_KEYS = ["name", "listen", "upstream", "enabled", "Logger", "toxics"]
TOXIC_KEYS = ["attributes", "name", "type", "stream", "toxicity"]
SOCKET_TIMEOUT = 5.0


def assert_error(response: httpx.Response, status: int, message: str, **extra: Any) -> None:
    """The response is a Toxiproxy error: `{"error": message, "status": status}` (+ `extra`)."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": message, "status": status, **extra}


def create_proxy(api: httpx.Client, name: str, upstream: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/proxies", json={"name": name, "upstream": upstream, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def add_toxic(api: httpx.Client, proxy: str, **fields: Any) -> dict[str, Any]:
    response = api.post(f"/proxies/{proxy}/toxics", json=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def toxic_json(
    name: str,
    type_name: str,
    stream: str = "downstream",
    toxicity: float = 1,
    **attributes: int,
) -> dict[str, Any]:
    return {
        "attributes": attributes,
        "name": name,
        "type": type_name,
        "stream": stream,
        "toxicity": toxicity,
    }


def address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def connect(listen: str) -> socket.socket:
    sock = socket.create_connection(address(listen), timeout=SOCKET_TIMEOUT)
    sock.settimeout(SOCKET_TIMEOUT)
    return sock


def exchange(sock: socket.socket, payload: bytes) -> bytes:
    """Send `payload` to an echo server and read the same number of bytes back."""
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def echo_roundtrip(listen: str, payload: bytes = b"ping") -> bytes:
    with connect(listen) as sock:
        return exchange(sock, payload)


def assert_refused(listen: str) -> None:
    """Nothing listens on `listen`: connecting is refused at once."""
    try:
        sock = socket.create_connection(address(listen), timeout=SOCKET_TIMEOUT)
    except ConnectionRefusedError:
        return
    sock.close()
    raise AssertionError(f"{listen} accepted a connection; expected it to be refused")


def assert_closed(sock: socket.socket) -> None:
    """The peer closed `sock` (FIN or RST) within the socket timeout, sending nothing more."""
    try:
        data = sock.recv(1024)
    except ConnectionResetError:
        return
    except TimeoutError:
        raise AssertionError("the connection is still open") from None
    assert data == b"", f"expected the connection to be closed, received {data!r}"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds (events and counters lag the socket a little)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        time.sleep(0.01)


def listening_socket() -> socket.socket:
    """A socket listening on a free loopback port (to hold an address, or as an upstream)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(SOCKET_TIMEOUT)
    return sock


def listen_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def assert_dropped(listen: str) -> None:
    """A client of `listen` is let in and then dropped (as when the upstream dial fails).

    The drop can beat `connect()` itself on loopback, so a reset while connecting counts too.
    """
    try:
        sock = connect(listen)
    except ConnectionResetError:
        return
    with sock:
        assert_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
