#!/usr/bin/env python3
"""The helper processes of engine_bench.py: each runs in a process of its own, so what it
measures is the proxy and not the benchmark's own process. Standard library only.

    engine_probes.py rtt PORT WARMUP COUNT      PING round trips over one connection, in ms
    engine_probes.py burst PORT COUNT TIMEOUT   COUNT connects at once, then a PING on each
    engine_probes.py source PORT                serves "send me N bytes" requests
    engine_probes.py fetch PORT BYTES TIMEOUT   one such request through PORT, timed

Every figure is printed as one JSON document on stdout. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import errno
import json
import resource
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

HOST = "127.0.0.1"
PONG = b"+PONG\r\n"
SIZE = struct.Struct("!Q")  # the byte source's request: how many bytes to send back
SOURCE_BLOCK = 256 * 1024


def ping(sock: socket.socket) -> bytes:
    """Send an inline PING and return the reply line (b"" if the peer closed)."""
    sock.sendall(b"PING\r\n")
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(64)
        if not chunk:
            return b""
        reply += chunk
    return reply


def answers_ping(port: int, timeout: float = 2.0) -> bool:
    """One PING/PONG: a cheap check that a proxy forwards before a long run."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            return ping(sock) == PONG
    except OSError:
        return False


def rtt_main(port: int, warmup: int, count: int) -> object:
    """Sequential PINGs over one connection; the round trips after the warm-up, in ms."""
    samples: list[float] = []
    with socket.create_connection((HOST, port), timeout=5) as sock:
        # Without TCP_NODELAY a small request can wait on Nagle's algorithm.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(warmup + count):
            start = time.perf_counter()
            reply = ping(sock)
            elapsed = time.perf_counter() - start
            if reply != PONG:
                raise SystemExit(f"unexpected reply {reply!r} (b'' = closed by peer)")
            if i >= warmup:
                samples.append(elapsed * 1000)
    return samples


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def burst_main(port: int, count: int, timeout: float) -> object:
    """Start COUNT non-blocking connects at once; on each connection that completes, send a
    PING. Reports when the last connect completed and when the last PONG came, from the first
    connect() call, in seconds (null if not all did within the timeout).

    A connect completes when the server's kernel has queued the connection for accept(): a
    SYN dropped because the listen queue was full shows as a connect retried a second later.
    """
    raise_fd_limit(count + 64)
    selector = selectors.DefaultSelector()
    replies: dict[socket.socket, bytes] = {}
    # Every socket is made before the first connect, so that the connects themselves come as
    # close together as one process can issue them.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    for sock in socks:
        sock.setblocking(False)
    start = time.perf_counter()
    for sock in socks:
        code = sock.connect_ex((HOST, port))
        if code not in (0, errno.EINPROGRESS):
            raise SystemExit(f"connect: {errno.errorcode.get(code, code)}")
    issued = time.perf_counter() - start
    for sock in socks:
        selector.register(sock, selectors.EVENT_WRITE, sock)
    connected = answered = failed = 0
    all_connected = all_answered = None
    deadline = start + timeout
    while answered + failed < count and time.perf_counter() < deadline:
        for key, _events in selector.select(timeout=0.1):
            sock = key.data
            if sock not in replies:  # still connecting
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed += 1
                    selector.unregister(sock)
                    continue
                connected += 1
                if connected == count:
                    all_connected = time.perf_counter() - start
                replies[sock] = b""
                sock.send(b"PING\r\n")  # 6 bytes always fit a fresh socket's buffer
                selector.modify(sock, selectors.EVENT_READ, sock)
                continue
            try:
                data = sock.recv(64)
            except OSError:
                data = b""
            replies[sock] += data
            if not data or replies[sock].endswith(b"\r\n"):
                selector.unregister(sock)
                if replies[sock] == PONG:
                    answered += 1
                else:
                    failed += 1
    if answered == count:
        all_answered = time.perf_counter() - start
    for key in list(selector.get_map().values()):
        selector.unregister(key.fileobj)
    for sock in socks:
        sock.close()
    return {
        "issued_s": issued,
        "connected": connected,
        "answered": answered,
        "failed": failed,
        "all_connected_s": all_connected,
        "all_answered_s": all_answered,
    }


def serve_one(conn: socket.socket) -> None:
    block = b"x" * SOURCE_BLOCK
    with conn:
        while True:
            header = b""
            while len(header) < SIZE.size:
                chunk = conn.recv(SIZE.size - len(header))
                if not chunk:
                    return
                header += chunk
            (remaining,) = SIZE.unpack(header)
            while remaining > 0:
                sent = conn.send(block[: min(remaining, SOURCE_BLOCK)])
                remaining -= sent


def source_main(port: int) -> object:
    """A byte source: on each connection, every 8-byte big-endian N read is answered with N
    bytes. One thread per connection; runs until it is terminated."""
    with socket.create_server((HOST, port), backlog=128) as server:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


def fetch_main(port: int, size: int, timeout: float) -> object:
    """Ask the byte source (through PORT) for SIZE bytes; seconds from the request to the
    first and to the last byte."""
    buffer = bytearray(1024 * 1024)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = 0
        first = None
        start = time.perf_counter()
        sock.sendall(SIZE.pack(size))
        while received < size:
            got = sock.recv_into(buffer)
            if not got:
                raise SystemExit(f"closed by the peer after {received} of {size} bytes")
            if first is None:
                first = time.perf_counter() - start
            received += got
        last = time.perf_counter() - start
    return {"bytes": received, "first_byte_s": first, "last_byte_s": last}


COMMANDS: dict[str, tuple[Callable[..., object], tuple[Callable[[str], Any], ...]]] = {
    "rtt": (rtt_main, (int, int, int)),
    "burst": (burst_main, (int, int, float)),
    "source": (source_main, (int,)),
    "fetch": (fetch_main, (int, int, float)),
}


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in COMMANDS or len(argv) - 1 != len(COMMANDS[argv[0]][1]):
        print(__doc__, file=sys.stderr)
        return 2
    function, types = COMMANDS[argv[0]]
    args = [kind(raw) for kind, raw in zip(types, argv[1:], strict=True)]
    json.dump(function(*args), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
