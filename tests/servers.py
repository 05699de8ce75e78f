"""Small real servers for tests: TCP echo, and HTTP answering fixed bodies by path."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

from pytest_chaos._ports import free_port

__all__ = ["echo_server", "free_port", "http_server", "recv_exactly", "udp_echo_server"]


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                # Half-close seen: answer with our own FIN after everything was echoed.
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                return
            try:
                sock.sendall(data)
            except OSError:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@contextmanager
def echo_server(host: str = "127.0.0.1") -> Iterator[tuple[str, int]]:
    """A threaded TCP echo server on a free port of `host` (loopback by default; 0.0.0.0 for
    containers to reach it)."""
    server = _Server((host, 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[0], server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError(f"connection closed with {size} bytes still expected")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    routes: Mapping[str, bytes] = {}


class _RouteHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        body = self.server.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@contextmanager
def http_server(routes: Mapping[str, bytes]) -> Iterator[tuple[str, int]]:
    """A threaded HTTP/1.1 server on a free loopback port answering `GET path` with
    `routes[path]` (404 for other paths)."""
    server = _HTTPServer(("127.0.0.1", 0), _RouteHandler)
    server.routes = routes
    thread = threading.Thread(target=server.serve_forever, name="http server", daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def udp_echo_server() -> Iterator[tuple[str, int]]:
    """A UDP echo server on a free loopback port: each datagram is sent back to its sender."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                data, sender = sock.recvfrom(65536)
                sock.sendto(data, sender)
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=serve, daemon=True, name="udp echo")
    thread.start()
    try:
        yield sock.getsockname()[0], sock.getsockname()[1]
    finally:
        stopping.set()
        thread.join(timeout=5)
        sock.close()
