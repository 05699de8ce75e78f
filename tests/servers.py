"""Small real servers for tests: TCP echo, and a server that closes or resets on demand."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from pytest_chaos._ports import free_port

__all__ = ["echo_server", "free_port", "recv_exactly", "udp_echo_server"]


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
def echo_server() -> Iterator[tuple[str, int]]:
    """A threaded TCP echo server on a free loopback port."""
    server = _Server(("127.0.0.1", 0), _EchoHandler)
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
