"""Parsing and printing `host:port` strings the way Toxiproxy (and Go's net package) does."""

from __future__ import annotations

import asyncio
import socket


def split_host_port(address: str) -> tuple[str, int]:
    """Split `host:port`, `[v6]:port` or `:port`; raise ValueError naming what is wrong."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address}: missing port in address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"address {address}: too many colons in address")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address {address}: invalid port")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve_listen_host(host: str) -> str:
    """One concrete address to bind: `localhost` means 127.0.0.1, empty means all interfaces.

    A name is resolved without blocking the event loop (the loop's resolver runs in a thread).
    """
    if host in ("", "0.0.0.0", "::"):
        return host
    if host == "localhost":
        return "127.0.0.1"
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    # A name: bind the first address it resolves to, never several with different ports.
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return str(infos[0][4][0])
