"""Free TCP ports on this machine, for servers the plugin, its tests and its benchmarks start.

A port found free is only free at that moment: callers that bind it later (a server started
on it) must be ready for someone to have taken it first, and retry with another.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that no one was bound to a moment ago (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """No one listens on `host`:`port` now.

    Bound with SO_REUSEADDR, as servers bind, so that connections of a server killed a moment
    ago, still in TIME_WAIT, do not count as taking the port.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
