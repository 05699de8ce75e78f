"""Helpers for the engine tests: drive the engine through its HTTP API, and talk through its
proxies to real servers over real sockets."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from tests.servers import recv_exactly

PROXY_KEYS = ["name", "listen", "upstream", "enabled", "Logger", "toxics"]
TOXIC_KEYS = ["attributes", "name", "type", "stream", "toxicity"]
LOOPBACK_LISTEN = re.compile(r"127\.0\.0\.1:[1-9]\d*")
SOCKET_TIMEOUT = 5.0


# -- the API
Request = tuple[str, str, Any]


def concurrently(url: str, requests: list[Request]) -> list[httpx.Response]:
    """Send every (method, path, JSON body) at once, each on its own connection; answers in
    order."""

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            # Open the connections first, so that the requests race, not the TCP handshakes.
            await asyncio.gather(*(client.get("/version") for _ in requests))
            return await asyncio.gather(
                *(client.request(method, path, json=body) for method, path, body in requests)
            )

    return asyncio.run(main())


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


def assert_error(response: httpx.Response, status: int, message: str, **extra: Any) -> None:
    """The response is a Toxiproxy error: `{"error": message, "status": status}` (+ `extra`)."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": message, "status": status, **extra}


def create_proxy(api: httpx.Client, name: str, upstream: str, **fields: Any) -> dict[str, Any]:
    """Create a proxy and return it as the API shows it (its `listen` is where to connect)."""
    response = api.post("/proxies", json={"name": name, "upstream": upstream, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def add_toxic(api: httpx.Client, proxy: str, **fields: Any) -> dict[str, Any]:
    """Add a toxic given as its JSON fields (`type`, `stream`, `attributes`, ...); return it."""
    response = api.post(f"/proxies/{proxy}/toxics", json=fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def remove_toxic(api: httpx.Client, proxy: str, name: str) -> None:
    response = api.delete(f"/proxies/{proxy}/toxics/{name}")
    assert response.status_code == 204, response.text


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


def event_log(api: httpx.Client, **params: Any) -> dict[str, Any]:
    """The whole answer of `GET /events`: the events with `last_seq` and `oldest_seq`."""
    response = api.get("/events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def events(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    return list(event_log(api, **params)["events"])


def wait_for_event(
    api: httpx.Client, kind: str, timeout: float = 5.0, **match: Any
) -> dict[str, Any]:
    """Poll the event log until an event of `kind` with the given fields appears; return it."""
    found: list[dict[str, Any]] = []

    def appeared() -> bool:
        found.extend(
            event
            for event in events(api)
            if event["kind"] == kind and all(event.get(k) == v for k, v in match.items())
        )
        return bool(found)

    wait_until(appeared, timeout, failure=f"no {kind} event matching {match}")
    return found[0]


def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, *, failure: str = "condition still false"
) -> None:
    """Poll `predicate` until it holds (events and counters lag the socket a little)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{failure} after {timeout}s")
        time.sleep(0.01)


# -- traffic through a proxy: `listen` is a `host:port` string, as the API shows it
def _address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def connect(listen: str, *, timeout: float = SOCKET_TIMEOUT) -> socket.socket:
    """A client connection to `listen`; every later operation on it times out after `timeout`."""
    return socket.create_connection(_address(listen), timeout=timeout)


def exchange(sock: socket.socket, payload: bytes) -> bytes:
    """Send `payload` to an echo server and read the same number of bytes back."""
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def round_trip_seconds(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Echo `payload` intact through `sock` and return the seconds it took."""
    started = time.perf_counter()
    assert exchange(sock, payload) == payload
    return time.perf_counter() - started


def echo_round_trip(listen: str, payload: bytes = b"ping") -> bytes:
    """What an echo server behind `listen` sends back for `payload` on a new connection."""
    with connect(listen) as sock:
        return exchange(sock, payload)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def assert_refused(listen: str) -> None:
    """Nothing listens on `listen`: connecting is refused at once."""
    try:
        sock = connect(listen)
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


def late_dials(listen: str, count: int, *, poll_after: float = 0.005) -> list[socket.socket]:
    """Open `count` connections to `listen` at once, as a busy Go or Python client does: a
    non-blocking connect() checked `poll_after` seconds late. Fails naming the errors of the
    dials that failed (a reset landing before the check fails the dial itself); returns the
    connected sockets, blocking again with the socket timeout, for the caller to close."""
    host, port = _address(listen)
    clients = [socket.socket() for _ in range(count)]
    try:
        for sock in clients:
            sock.setblocking(False)
            assert sock.connect_ex((host, port)) in (0, errno.EINPROGRESS)
        time.sleep(poll_after)
        with selectors.DefaultSelector() as selector:
            for sock in clients:
                selector.register(sock, selectors.EVENT_WRITE)
            writable: set[object] = set()
            deadline = time.monotonic() + 10
            while len(writable) < count and time.monotonic() < deadline:
                writable.update(key.fileobj for key, _ in selector.select(1))
        errors = [sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) for sock in clients]
        assert len(writable) == count, f"{count - len(writable)} dials never completed"
        assert [os.strerror(code) for code in errors if code] == []
        for sock in clients:
            sock.setblocking(True)
            sock.settimeout(SOCKET_TIMEOUT)
    except BaseException:
        for sock in clients:
            sock.close()
        raise
    return clients


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
