"""Parsing and printing `host:port` strings the way Toxiproxy (and Go's net package) does."""

from __future__ import annotations

import asyncio
import functools
import socket


@functools.lru_cache(maxsize=1024)
def split_host_port(address: str) -> tuple[str, int]:
    """Split `host:port`, `[v6]:port` or `:port` as Go's `net.SplitHostPort` does, and parse
    the port as Go's resolver does (empty means 0, a service name is looked up); raise
    ValueError with Go's message for what is wrong.

    Cached: each accepted connection splits its proxy's upstream address again."""
    host, port = _split(address)
    return host, _parse_port(port)


def _split(address: str) -> tuple[str, str]:
    colon = address.rfind(":")
    if colon < 0:
        raise ValueError(f"address {address}: missing port in address")
    start, end = 0, 0
    if address.startswith("["):
        bracket = address.find("]")
        if bracket < 0:
            raise ValueError(f"address {address}: missing ']' in address")
        if bracket + 1 != colon:
            # `]` not followed by the last colon: the port is missing or a colon too many.
            why = "too many colons" if address[bracket + 1 : bracket + 2] == ":" else "missing port"
            raise ValueError(f"address {address}: {why} in address")
        host = address[1:bracket]
        start, end = 1, bracket + 1
    else:
        host = address[:colon]
        if ":" in host:
            raise ValueError(f"address {address}: too many colons in address")
    if "[" in address[start:]:
        raise ValueError(f"address {address}: unexpected '[' in address")
    if "]" in address[end:]:
        raise ValueError(f"address {address}: unexpected ']' in address")
    return host, address[colon + 1 :]


def _parse_port(port: str) -> int:
    digits = port[1:] if port[:1] in ("+", "-") else port
    if digits == "":
        return 0
    if not (digits.isascii() and digits.isdigit()):
        try:
            return socket.getservbyname(port.lower(), "tcp")
        except (OSError, ValueError):  # not a service; ValueError: a NUL, a surrogate
            raise ValueError(f"lookup tcp/{port}: unknown port") from None
    significant = digits.lstrip("0") or "0"
    # More than five digits is out of range anyway (and too long for `int` past 4300 digits).
    number = int(significant) if len(significant) <= 5 else 65536
    number = -number if port[0] == "-" else number
    if not 0 <= number <= 65535:
        raise ValueError(f"address {port}: invalid port")
    return number


def join_host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets, as Go's net.JoinHostPort writes it."""
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
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except UnicodeError:
        # Not a domain name (a label over 63 characters, an empty one): Go's answer too.
        raise ValueError(f"lookup {host}: no such host") from None
    except socket.gaierror as error:
        # Go's words for a name that does not resolve; other failures keep the resolver's.
        if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise ValueError(f"lookup {host}: no such host") from None
        raise ValueError(f"lookup {host}: {error.strerror}") from None
    return str(infos[0][4][0])
