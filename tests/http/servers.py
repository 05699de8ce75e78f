"""Real HTTP servers for the HTTP fault tests, on free loopback ports.

`uvicorn_server()` runs uvicorn (h11) in a thread with a small ASGI app that records every
request it serves: the upstream's own view, to check which requests reached it.
`scripted_server()` is a raw TCP server that reads requests with h11 and answers each with
the next scripted answer, byte for byte, recording every byte it received: what a proxy must
leave untouched.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import h11
import uvicorn

from pytest_chaos._ports import free_port

STARTUP_SECONDS = 10.0
NO_SCRIPT = b"HTTP/1.1 500 No Script\r\ncontent-length: 0\r\n\r\n"
# In a script: close the connection here.
CLOSE = b""


@dataclass
class Served:
    """A request the upstream served: method, target (path and query) and when it arrived."""

    method: str
    target: str
    at: float


@dataclass
class Upstream:
    host: str
    port: int
    served: list[Served] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def targets(self) -> list[str]:
        return [request.target for request in self.served]


def make_app(served: list[Served]) -> Any:
    """The upstream's ASGI app.

    - `/status/{code}`: answers `code`, with `Retry-After: s` for `?retry_after=s`;
    - `/bytes/{n}`: `n` bytes of body (`x`), in one piece, or in `?chunks=k` pieces;
    - `/echo`: the request's body back;
    - anything else: `hello {path}`.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        query = scope["query_string"].decode()
        target = scope["path"] + (f"?{query}" if query else "")
        served.append(Served(scope["method"], target, time.monotonic()))
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        params = {k: v[0] for k, v in parse_qs(query).items()}
        path = scope["path"]
        status, headers, parts = (
            200,
            [(b"content-type", b"text/plain")],
            [b"hello " + path.encode()],
        )
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            parts = [f"status {status}".encode()]
            if "retry_after" in params:
                headers.append((b"retry-after", params["retry_after"].encode()))
        elif path.startswith("/bytes/"):
            size = int(path.rsplit("/", 1)[1])
            pieces = int(params.get("chunks", "1"))
            step = max(1, -(-size // pieces))
            parts = [b"x" * len(range(i, min(size, i + step))) for i in range(0, size, step)]
            if pieces == 1:
                headers.append((b"content-length", str(size).encode()))
        elif path == "/echo":
            parts = [body]
        if len(parts) == 1 and not path.startswith("/bytes/"):
            headers.append((b"content-length", str(len(parts[0])).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            await send({"type": "http.response.body", "body": part, "more_body": not last})
        if not parts:
            await send({"type": "http.response.body", "body": b""})

    return app


@contextmanager
def uvicorn_server() -> Iterator[Upstream]:
    """uvicorn serving `make_app` on a free loopback port, in a thread, until the block ends."""
    upstream = Upstream("127.0.0.1", free_port())
    config = uvicorn.Config(
        make_app(upstream.served),
        host=upstream.host,
        port=upstream.port,
        log_level="warning",
        lifespan="off",
        http="h11",
        loop="asyncio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn upstream", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield upstream
    finally:
        server.should_exit = True
        thread.join(STARTUP_SECONDS)


@dataclass
class Scripted:
    host: str
    port: int
    # Every byte each accepted connection sent, in order of acceptance.
    received: list[bytearray] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@contextmanager
def _threaded_server(
    serve: Callable[[socket.socket, bytearray, threading.Event], None],
) -> Iterator[Scripted]:
    """A loopback listener whose every connection gets a thread running `serve(sock,
    received, stop)`, `received` being that connection's record of what it sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    host, port = listener.getsockname()[:2]
    server = Scripted(host, port)
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)  # not the listener's polling timeout
            received = bytearray()
            server.received.append(received)
            threading.Thread(target=serve, args=(sock, received, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _serve_requests(
    sock: socket.socket,
    received: bytearray,
    stop: threading.Event,
    answer: Callable[[h11.Request], list[bytes]],
) -> None:
    """Read requests with h11 and write `answer(request)`'s pieces for each, one `sendall`
    each (`CLOSE`: close the connection there), recording every byte received."""
    reader = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    with sock:
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            received += data
            reader.receive_data(data)
            while isinstance(event := reader.next_event(), h11.Event):
                if isinstance(event, h11.Request):
                    request = event
                if not isinstance(event, h11.EndOfMessage) or request is None:
                    continue
                for piece in answer(request):
                    if piece is CLOSE:
                        return
                    sock.sendall(piece)
                # The answers bring their own framing: h11 only frames the requests.
                rest = reader.trailing_data[0]
                reader = h11.Connection(h11.SERVER)
                if rest:  # (b"" would tell h11 the connection closed)
                    reader.receive_data(rest)


@contextmanager
def scripted_server(answers: list[list[bytes]]) -> Iterator[Scripted]:
    """A raw server whose n-th request (over all connections) gets `answers[n]`, written as
    the given pieces, one `sendall` each (`CLOSE`: close the connection there); requests are
    framed with h11, every byte received recorded."""
    script = iter(answers)
    lock = threading.Lock()

    def next_answer(request: h11.Request) -> list[bytes]:
        with lock:
            return next(script, [NO_SCRIPT])

    with _threaded_server(
        lambda sock, received, stop: _serve_requests(sock, received, stop, next_answer)
    ) as server:
        yield server


@contextmanager
def answering_server() -> Iterator[Scripted]:
    """A raw server that answers each request with the bytes its `x-answer` header holds in
    hex, as they are (requests framed with h11, every byte received recorded)."""

    def asked(request: h11.Request) -> list[bytes]:
        return [bytes.fromhex(dict(request.headers)[b"x-answer"].decode())]

    with _threaded_server(
        lambda sock, received, stop: _serve_requests(sock, received, stop, asked)
    ) as server:
        yield server
