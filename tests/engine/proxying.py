"""Helpers for engine tests: create proxies through the API and talk through them."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx


def create_proxy(api: httpx.Client, name: str, upstream: str, **fields: Any) -> tuple[str, int]:
    """Create a proxy and return the (host, port) it listens on."""
    response = api.post("/proxies", json={"name": name, "upstream": upstream, **fields})
    assert response.status_code == 201, response.text
    host, _, port = response.json()["listen"].rpartition(":")
    return host, int(port)


def add_toxic(
    api: httpx.Client, proxy: str, type_: str, stream: str = "downstream", **attributes: int
) -> str:
    response = api.post(
        f"/proxies/{proxy}/toxics",
        json={"type": type_, "stream": stream, "attributes": attributes},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


def remove_toxic(api: httpx.Client, proxy: str, name: str) -> None:
    response = api.delete(f"/proxies/{proxy}/toxics/{name}")
    assert response.status_code == 204, response.text


def connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Send `payload` to an echo server and return the seconds until it all came back."""
    started = time.perf_counter()
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed during a round trip")
        received += chunk
    assert received == payload
    return time.perf_counter() - started


def events(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/events", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def wait_for_event(
    api: httpx.Client, kind: str, timeout: float = 5.0, **match: Any
) -> dict[str, Any]:
    """Poll the event log until an event of `kind` with the given fields appears."""
    deadline = time.monotonic() + timeout
    while True:
        for event in events(api):
            if event["kind"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event
        if time.monotonic() > deadline:
            raise AssertionError(f"no {kind} event matching {match} within {timeout}s")
        time.sleep(0.02)
