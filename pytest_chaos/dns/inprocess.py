"""The in-process layer: `socket.getaddrinfo`, `socket.gethostbyname` and
`socket.gethostbyname_ex` consult the DNS rules first.

Everything that resolves through the socket module at call time goes through them: asyncio's
default loop (`loop.getaddrinfo` runs `socket.getaddrinfo` in its executor), anyio, requests
and urllib3, httpx/httpcore, redis-py, psycopg, aiohttp's `ThreadedResolver`. Code that kept
its own reference (`from socket import getaddrinfo` at import time), C libraries with their
own resolver (libuv under uvloop, c-ares under aiodns) and child processes are not; they are
what the DNS server is for.

One dispatcher per process, whatever the number of sessions (pytester runs a session inside
a session): the wrappers are installed when the first source registers and the originals
restored when the last one leaves. A name no source knows costs one dictionary look-up.
Failures are raised exactly as glibc raises them (`glibc`), answers are built by the real
`getaddrinfo` from the numeric address, so flags, families, socket types and services behave
as they do for a real name.
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from pytest_chaos.dns import glibc
from pytest_chaos.dns.lookups import Lookup
from pytest_chaos.dns.rules import Outcome
from pytest_chaos.faults import normalize_dns_name

AddrInfo = list[tuple[Any, Any, int, str, Any]]
FUNCTIONS = ("getaddrinfo", "gethostbyname", "gethostbyname_ex")
_NUMERIC = frozenset("0123456789.")


class Source(Protocol):
    """A configuration the dispatcher consults (a DnsSession)."""

    def decide(self, name: str) -> Outcome | None:
        """What a lookup of `name` (normalized) does; None when this source has no say in it."""
        ...

    def record(self, lookup: Lookup) -> None:
        """Keep `lookup`, one this source decided, for the timeline and the report."""
        ...


_lock = threading.Lock()
_sources: tuple[Source, ...] = ()
# Every wrapper still alive and the function it wraps: one found on top of the socket module
# (put back there by someone who had saved it, such as monkeypatch's undo) is taken off.
_ours: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any]] = (
    weakref.WeakKeyDictionary()
)
# Set while this thread is inside one of our wrappers: a wrapper met again below (left in
# place under someone else's patch) passes straight through instead of deciding twice.
_busy = threading.local()


def register(source: Source) -> None:
    """Consult `source` for every lookup (newest first), installing the wrappers if needed."""
    global _sources
    with _lock:
        if source in _sources:
            return
        if not _sources:
            _install()
        _sources = (*_sources, source)


def unregister(source: Source) -> None:
    """Stop consulting `source`; the last one out restores the socket module's functions."""
    global _sources
    with _lock:
        _sources = tuple(s for s in _sources if s is not source)
        if not _sources:
            _uninstall()


def installed() -> bool:
    """Is any of the socket module's functions one of ours right now?"""
    return any(getattr(socket, name) in _ours for name in FUNCTIONS)


def _install() -> None:
    makers: dict[str, Callable[[Any], Callable[..., Any]]] = {
        "getaddrinfo": _make_getaddrinfo,
        "gethostbyname": _make_gethostbyname,
        "gethostbyname_ex": _make_gethostbyname_ex,
    }
    for name in FUNCTIONS:
        _unwind(name)
        previous = getattr(socket, name)
        wrapper = makers[name](previous)
        _ours[wrapper] = previous
        setattr(socket, name, wrapper)


def _uninstall() -> None:
    for name in FUNCTIONS:
        _unwind(name)


def _unwind(name: str) -> None:
    """Take our wrappers off the top of the socket module's `name`. One under somebody else's
    patch stays there, passing lookups through while no source is registered, so that
    removing their patch later leaves a working function (and then, at the next unwind,
    ours is taken off too)."""
    while (function := getattr(socket, name)) in _ours:
        setattr(socket, name, _ours[function])


# ----------------------------------------------------------------------------- deciding
def name_of(host: object) -> str | None:
    """The normalized DNS name a lookup of `host` asks for; None for what never reaches DNS
    (None, numeric addresses, what the socket module would refuse anyway)."""
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(host, str) or not host or ":" in host:
        return None  # ":": an IPv6 address; a name never has one
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if _NUMERIC.issuperset(host):
        return None  # glibc takes "1.2.3.4" (and "1.2", "127.1") as an address
    return normalize_dns_name(host)


def _decide(host: object) -> tuple[Source, Outcome] | None:
    sources = _sources
    if not sources:
        return None
    name = name_of(host)
    if name is None:
        return None
    for source in reversed(sources):
        outcome = source.decide(name)
        if outcome is not None:
            return source, outcome
    return None


class _Guard:
    """Marks this thread as inside a wrapper for the duration of a `with`."""

    def __enter__(self) -> None:
        _busy.active = True

    def __exit__(self, *exc: object) -> None:
        _busy.active = False


def _inside() -> bool:
    return getattr(_busy, "active", False)


def _fail(
    source: Source,
    outcome: Outcome,
    layer: str,
    started: float,
    check: Callable[[], None],
    tries: int = 1,
) -> None:
    """Wait as the fault says, then raise its error as glibc does (after `check`, which
    raises what glibc finds wrong before any lookup, such as an unknown service). A timeout
    costs `timeout` per try: glibc asks twice, one after the other, for AF_INET6 with
    AI_V4MAPPED (first AAAA, then A: measured 2 s with `timeout:1 attempts:1`)."""
    assert outcome.error is not None
    check()
    if outcome.error == "timeout":
        outcome.wait(outcome.timeout * tries)
    error = glibc.gaierror_for(outcome.error)
    source.record(
        Lookup(
            started,
            layer,
            outcome.name,
            error=f"{outcome.error} ({glibc.code_name(error.errno or 0)})",
            fault=outcome.fault_text,
            duration=time.monotonic() - started,
            detail=outcome.note,
        )
    )
    raise error


def _record_real(
    source: Source, outcome: Outcome, layer: str, started: float, call: Callable[[], Any]
) -> Any:
    """Let the real resolver answer (a name the fault let through), and record what it said."""
    try:
        result = call()
    except socket.gaierror as error:
        source.record(
            Lookup(
                started,
                layer,
                outcome.name,
                error=glibc.code_name(error.errno or 0),
                fault=outcome.fault_text,
                duration=time.monotonic() - started,
            )
        )
        raise
    source.record(
        Lookup(
            started,
            layer,
            outcome.name,
            answer=tuple(_addresses_in(result)),
            fault=outcome.fault_text,
            duration=time.monotonic() - started,
        )
    )
    return result


def _addresses_in(result: Any) -> list[str]:
    if isinstance(result, str):
        return [result]
    if isinstance(result, tuple):  # gethostbyname_ex
        return list(result[2])
    seen: list[str] = []
    for entry in result:
        address = str(entry[4][0])
        if address not in seen:
            seen.append(address)
    return seen


def _record_answer(
    source: Source, outcome: Outcome, layer: str, started: float, answer: list[str]
) -> None:
    source.record(
        Lookup(
            started,
            layer,
            outcome.name,
            answer=tuple(answer),
            fault=outcome.fault_text,
            duration=time.monotonic() - started,
        )
    )


def _no_address(source: Source, outcome: Outcome, layer: str, started: float) -> socket.gaierror:
    error = glibc.gaierror(glibc.EAI_NODATA)
    source.record(
        Lookup(
            started,
            layer,
            outcome.name,
            error="no address of that family (EAI_NODATA)",
            fault=outcome.fault_text,
            duration=time.monotonic() - started,
        )
    )
    return error


# ----------------------------------------------------------------------------- wrappers
def _make_getaddrinfo(previous: Callable[..., AddrInfo]) -> Callable[..., AddrInfo]:
    def getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> AddrInfo:
        decided = None if _inside() or flags & socket.AI_NUMERICHOST else _decide(host)
        if decided is None:
            return previous(host, port, family, type, proto, flags)
        source, outcome = decided
        started = time.monotonic()
        with _Guard():
            outcome.wait(outcome.delay)
            if outcome.error is not None:

                def check_service() -> None:
                    # glibc refuses an unknown service before it looks anything up.
                    try:
                        previous("127.0.0.1", port, 0, type, proto, socket.AI_NUMERICHOST)
                    except socket.gaierror as error:
                        if error.errno == glibc.EAI_SERVICE:
                            raise

                v4mapped = family == socket.AF_INET6 and flags & socket.AI_V4MAPPED
                tries = 2 if v4mapped else 1
                _fail(source, outcome, "getaddrinfo", started, check_service, tries)
            if outcome.addresses is None:
                return _record_real(  # type: ignore[no-any-return]
                    source,
                    outcome,
                    "getaddrinfo",
                    started,
                    lambda: previous(host, port, family, type, proto, flags),
                )
            result = _answer(previous, outcome, _asked(host), port, family, type, proto, flags)
            if not result:
                raise _no_address(source, outcome, "getaddrinfo", started)
            _record_answer(source, outcome, "getaddrinfo", started, _addresses_in(result))
            return result

    getaddrinfo.__doc__ = previous.__doc__
    getaddrinfo.__wrapped__ = previous  # type: ignore[attr-defined]
    return getaddrinfo


def _answer(
    previous: Callable[..., AddrInfo],
    outcome: Outcome,
    asked: str,
    port: Any,
    family: int,
    type: int,
    proto: int,
    flags: int,
) -> AddrInfo:
    """getaddrinfo's answer for a name with `outcome.addresses`, made by the real function from
    each numeric address (so ports, services, socket types and AI_V4MAPPED behave as for a
    name); addresses of another family are left out, as they are for a name in DNS."""
    result: AddrInfo = []
    for address in outcome.addresses or ():
        try:
            result += previous(address, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror as error:
            if error.errno not in (glibc.EAI_ADDRFAMILY, glibc.EAI_NONAME, glibc.EAI_NODATA):
                raise  # an unknown service, a bad socket type: as glibc says
    if result and flags & socket.AI_CANONNAME:
        # glibc names the answer's owner, the name asked for (without its final dot).
        first = result[0]
        result[0] = (first[0], first[1], first[2], asked, first[4])
    return result


def _asked(host: Any) -> str:
    """The name as the caller wrote it, without its final dot (what glibc reports back)."""
    text = host.decode("ascii") if isinstance(host, bytes) else str(host)
    return text.rstrip(".") or text


def _ipv4(addresses: tuple[str, ...]) -> list[str]:
    return [address for address in addresses if ":" not in address]


HostEx = tuple[str, list[str], list[str]]
T = TypeVar("T")


def _make_by_name(
    layer: str, previous: Callable[[str], T], answer: Callable[[str, list[str]], T]
) -> Callable[[str], T]:
    """A wrapper of `gethostbyname` or `gethostbyname_ex` (IPv4 only, as glibc's are):
    `answer(hostname, addresses)` makes its result from the IPv4 addresses of a name."""

    def by_name(hostname: str) -> T:
        decided = None if _inside() else _decide(hostname)
        if decided is None:
            return previous(hostname)
        source, outcome = decided
        started = time.monotonic()
        with _Guard():
            outcome.wait(outcome.delay)
            if outcome.error is not None:
                _fail(source, outcome, layer, started, lambda: None)
            if outcome.addresses is None:
                return _record_real(  # type: ignore[no-any-return]
                    source, outcome, layer, started, lambda: previous(hostname)
                )
            found = _ipv4(outcome.addresses)
            if not found:
                raise _no_address(source, outcome, layer, started)
            result = answer(hostname, found)
            _record_answer(source, outcome, layer, started, _addresses_in(result))
            return result

    by_name.__name__ = by_name.__qualname__ = layer
    by_name.__doc__ = previous.__doc__
    by_name.__wrapped__ = previous  # type: ignore[attr-defined]
    return by_name


def _make_gethostbyname(previous: Callable[[str], str]) -> Callable[[str], str]:
    return _make_by_name("gethostbyname", previous, lambda hostname, found: found[0])


def _make_gethostbyname_ex(previous: Callable[[str], HostEx]) -> Callable[[str], HostEx]:
    return _make_by_name(
        "gethostbyname_ex", previous, lambda hostname, found: (_asked(hostname), [], found)
    )
