"""Real clients resolving a name, each outcome described the same way wherever it ran (under
the plugin's in-process layer, or against a real resolver in a child process), so that the
two can be compared as plain data."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import requests

Outcome = dict[str, Any]
# A port nothing listens on: an answered name then ends in "connection refused".
PORT = 9


def _getaddrinfo(host: str) -> Any:
    return socket.getaddrinfo(host, PORT, type=socket.SOCK_STREAM)


def _getaddrinfo_any(host: str) -> Any:
    return socket.getaddrinfo(host, None)


def _getaddrinfo_inet6(host: str) -> Any:
    return socket.getaddrinfo(host, PORT, socket.AF_INET6, socket.SOCK_STREAM)


def _getaddrinfo_canonical(host: str) -> Any:
    return socket.getaddrinfo(host, "http", 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)


def _getaddrinfo_v4mapped(host: str) -> Any:
    return socket.getaddrinfo(
        host, PORT, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_V4MAPPED
    )


def _create_connection(host: str) -> Any:
    socket.create_connection((host, PORT), timeout=5).close()


def _asyncio_getaddrinfo(host: str) -> Any:
    async def lookup() -> Any:
        return await asyncio.get_running_loop().getaddrinfo(host, PORT, type=socket.SOCK_STREAM)

    return asyncio.run(lookup())


def _asyncio_open_connection(host: str) -> Any:
    async def connect() -> None:
        _, writer = await asyncio.open_connection(host, PORT)
        writer.close()

    return asyncio.run(connect())


def _requests(host: str) -> Any:
    requests.get(f"http://{host}:{PORT}/", timeout=5)


def _httpx(host: str) -> Any:
    httpx.get(f"http://{host}:{PORT}/", timeout=5)


def _httpx_async(host: str) -> Any:
    async def get() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(f"http://{host}:{PORT}/")

    return asyncio.run(get())


PROBES: dict[str, Callable[[str], Any]] = {
    "getaddrinfo": _getaddrinfo,
    "getaddrinfo(any type)": _getaddrinfo_any,
    "getaddrinfo(AF_INET6)": _getaddrinfo_inet6,
    "getaddrinfo(AI_CANONNAME)": _getaddrinfo_canonical,
    "getaddrinfo(AI_V4MAPPED)": _getaddrinfo_v4mapped,
    # Looked up at call time, as a client does: a reference taken at import time would be
    # the function before the plugin's layer was installed.
    "gethostbyname": lambda host: socket.gethostbyname(host),
    "gethostbyname_ex": lambda host: socket.gethostbyname_ex(host),
    "create_connection": _create_connection,
    "asyncio loop.getaddrinfo": _asyncio_getaddrinfo,
    "asyncio.open_connection": _asyncio_open_connection,
    "requests": _requests,
    "httpx": _httpx,
    "httpx async": _httpx_async,
}


def gaierror_in(error: BaseException | None) -> socket.gaierror | None:
    """The resolver's error behind a client's own (requests and httpx wrap it)."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return current
        stack += [current.__cause__, current.__context__, *current.args]
    return None


def describe(run: Callable[[], Any]) -> Outcome:
    """What a call gave: its result as plain data, or its error's type and resolver code;
    `seconds` is how long it took (left out of comparisons: `same`)."""
    started = time.monotonic()
    try:
        result = run()
    except Exception as error:
        gai = gaierror_in(error)
        return {
            "error": f"{type(error).__module__}.{type(error).__qualname__}",
            "gai": [gai.errno, gai.strerror] if gai is not None else None,
            "seconds": time.monotonic() - started,
        }
    return {"result": _plain(result), "seconds": time.monotonic() - started}


def same(outcomes: dict[str, dict[str, Outcome]]) -> dict[str, dict[str, Outcome]]:
    """The outcomes without their durations, for comparing."""
    return {
        kind: {name: {k: v for k, v in o.items() if k != "seconds"} for name, o in probes.items()}
        for kind, probes in outcomes.items()
    }


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, int):
        return int(value)  # AddressFamily, SocketKind
    return value


def probe_all(hosts: dict[str, str]) -> dict[str, dict[str, Outcome]]:
    """Every probe on every host (kind -> host), all at once so that timeouts overlap:
    {kind: {probe: outcome}}."""
    jobs = [(kind, name, host) for kind, host in hosts.items() for name in PROBES]
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {
            (kind, name): pool.submit(describe, lambda n=name, h=host: PROBES[n](h))
            for kind, name, host in jobs
        }
    found: dict[str, dict[str, Outcome]] = {}
    for (kind, name), future in futures.items():
        found.setdefault(kind, {})[name] = future.result()
    return found


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Where two sets of outcomes differ, one line each (for assertion messages)."""
    mine, theirs = same(mine), same(theirs)
    return [
        f"{kind} / {probe}: {mine[kind].get(probe)} != {theirs[kind].get(probe)}"
        for kind in sorted(set(mine) | set(theirs))
        for probe in sorted(set(mine.get(kind, {})) | set(theirs.get(kind, {})))
        if mine.get(kind, {}).get(probe) != theirs.get(kind, {}).get(probe)
    ]
