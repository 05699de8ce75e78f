"""A UDP proxy: one datagram socket, a session per client address, datagram toxics.

An extension of the Toxiproxy API: `"protocol": "udp"` in a proxy's JSON makes one (TCP, the
default, shows no `protocol`, so its JSON stays upstream's); `"idle_timeout"` (ms) sets when
an idle session ends. It is managed as a TCP proxy is (listen, upstream, enabled, toxics,
populate, reset), with the toxic types of `udp/toxics.py`. Disabled, it closes its socket, so
a client's connected socket gets "connection refused" (ICMP port unreachable), as from a
stopped server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import socket
from collections.abc import Callable
from typing import Any

from pytest_chaos.engine.addresses import join_host_port, resolve_listen_host, split_host_port
from pytest_chaos.engine.errors import ApiError, bad_request
from pytest_chaos.engine.proxy import CLOSE_WAIT_SECONDS, Proxy
from pytest_chaos.engine.toxic_collection import ToxicCollection, ToxicSpec
from pytest_chaos.engine.toxics.base import MS_PER_DAY
from pytest_chaos.engine.udp.datagram import DATAGRAM_TOXIC_TYPES, unsupported
from pytest_chaos.engine.udp.session import Session

PROTOCOLS = ("tcp", "udp")
# Linux's nf_conntrack_udp_timeout: how long a NAT keeps an idle UDP flow.
IDLE_TIMEOUT_MS = 30_000
# Sessions kept at once; past it the one idle longest is closed (each holds a socket).
MAX_SESSIONS = 1024
# Datagrams that arrive while the engine is busy wait in the kernel rather than being lost
# (the default, about 200 KB, overflows within milliseconds of a burst); the kernel caps it
# at net.core.rmem_max.
RECEIVE_BUFFER = 1 << 20


class UdpProxy(Proxy):
    """Listens for datagrams on `listen` and forwards each client's to `upstream`."""

    protocol = "udp"

    def __init__(self, *args: Any, idle_timeout_ms: int = IDLE_TIMEOUT_MS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.toxics = ToxicCollection(DATAGRAM_TOXIC_TYPES)
        self.idle_timeout_ms = idle_timeout_ms
        self.sessions: dict[Any, Session] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._socket_closed: asyncio.Future[None] | None = None

    @property
    def idle_timeout(self) -> float:
        """Seconds a session may stay idle."""
        return self.idle_timeout_ms / 1000

    # -- listening
    async def start(self) -> None:
        if self._transport is not None:
            return
        try:
            host, port = split_host_port(self.listen)
            bind_host = await resolve_listen_host(host)
        except (ValueError, OSError) as error:
            raise ApiError(500, f"listen udp {self.listen}: {error}") from None
        try:
            sock, shown_host = _datagram_socket(bind_host, port)
        except OSError as error:
            reason = os.strerror(error.errno).lower() if error.errno else str(error)
            raise ApiError(
                500, f"listen udp {join_host_port(bind_host, port)}: bind: {reason}"
            ) from None
        loop = asyncio.get_running_loop()
        listener = ListenerProtocol(self, loop.create_future())
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: listener, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._transport = transport
        self._socket_closed = listener.closed
        self.listen = join_host_port(shown_host, sock.getsockname()[1])
        self.enabled = True

    async def stop(self) -> None:
        self.enabled = False
        transport, self._transport = self._transport, None
        closed, self._socket_closed = self._socket_closed, None
        if transport is not None:
            transport.close()
        for session in list(self.sessions.values()):
            session.close(by="proxy")
        if closed is not None:
            # Answer the API once the socket is really closed (asyncio closes it a loop turn
            # later): from then on a client's datagram is refused, never read and ignored.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                    await asyncio.shield(closed)

    # -- datagrams
    def datagram_from_client(self, data: bytes, client: Any) -> None:
        """Route a client's datagram into its session, opening one for a new client."""
        session = self.sessions.get(client)
        if session is None:
            session = self._open_session(client)
        session.from_client(data)

    def _open_session(self, client: Any) -> Session:
        if len(self.sessions) >= MAX_SESSIONS:
            oldest = min(self.sessions.values(), key=lambda s: s.last_active)
            oldest.close(by="proxy: too many sessions")
        session = Session(self, client, next(self._connection_ids), next(self._accepted))
        self.sessions[client] = session
        self.totals["connections"] += 1
        return session

    def send_to_client(self, data: bytes, client: Any) -> None:
        """Send a datagram from the proxy's socket to `client`, unless the proxy is stopping."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.sendto(data, client)

    def session_closed(self, session: Session) -> None:
        """Forget a closed session and add its datagram counts to the proxy's totals."""
        if self.sessions.get(session.client) is session:
            del self.sessions[session.client]
        for direction, link in session.links.items():
            self.totals[direction] += link.totals["bytes_in"]

    def reseed(self, seed: int | None) -> None:
        self.seed = seed
        self._accepted = itertools.count()
        live = sorted(self.sessions.values(), key=lambda s: s.id)
        for rank, session in enumerate(live, start=1):
            session.index = -rank

    # -- toxics
    def add_toxic(self, body: dict[str, Any]) -> ToxicSpec:
        """As `Proxy.add_toxic`, refusing toxic types that mean nothing for datagrams."""
        type_name = body.get("type")
        problem = unsupported(type_name) if isinstance(type_name, str) else None
        if problem is not None:
            raise bad_request(problem)
        return super().add_toxic(body)

    def _toxics_changed(self) -> None:
        for session in list(self.sessions.values()):
            for link in session.links.values():
                link.close_data_run()
            session.apply_toxics()

    def to_json(self) -> dict[str, Any]:
        """The proxy as the API shows it, with its protocol and idle timeout."""
        return {**super().to_json(), "protocol": "udp", "idle_timeout": self.idle_timeout_ms}


class ListenerProtocol(asyncio.DatagramProtocol):
    """asyncio's callbacks for the proxy's own socket, where clients send."""

    def __init__(self, proxy: UdpProxy, closed: asyncio.Future[None]) -> None:
        self.proxy = proxy
        self.closed = closed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy.datagram_from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error about a datagram to a client that went away: nothing to do."""


def _datagram_socket(bind_host: str, port: int) -> tuple[socket.socket, str]:
    """A non-blocking UDP socket bound to `bind_host:port`, and the host to show for it (all
    interfaces is one dual-stack socket, as for TCP)."""
    dual_stack = bind_host in ("", "::")
    host = "::" if dual_stack else bind_host
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST | socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, host


# -- the `protocol` field of the API (hooks of collection.py)
def proxy_factory(body: object) -> Callable[..., Proxy]:
    """The class to make a proxy with, from the body's `protocol` (absent or null: TCP), with a
    UDP proxy's `idle_timeout`; a 400 naming what is allowed when either is wrong."""
    if requested_protocol(body) != "udp":
        return Proxy
    idle = body.get("idle_timeout") if isinstance(body, dict) else None
    if idle is None:
        return UdpProxy
    if type(idle) is not int or not 1 <= idle <= MS_PER_DAY:
        raise bad_request(
            f"idle_timeout must be a whole number of milliseconds from 1 to {MS_PER_DAY},"
            f" got {idle!r}"
        )
    return functools.partial(UdpProxy, idle_timeout_ms=idle)


def requested_protocol(body: object) -> str:
    """The `protocol` a proxy's JSON asks for: "tcp" (also when absent or null) or "udp"."""
    value = body.get("protocol") if isinstance(body, dict) else None
    if value is None:
        return "tcp"
    if value not in PROTOCOLS:
        raise bad_request(f'protocol must be "tcp" or "udp", got {value!r}')
    return str(value)


def protocol_of(proxy: Proxy) -> str:
    """`udp` or `tcp`: the protocol of a proxy."""
    return "udp" if isinstance(proxy, UdpProxy) else "tcp"


def check_protocol_kept(proxy: Proxy, body: object) -> None:
    """An update may repeat a proxy's protocol, never change it."""
    if isinstance(body, dict) and body.get("protocol") is not None:
        wanted = requested_protocol(body)
        if wanted != protocol_of(proxy):
            raise bad_request(
                f"protocol of proxy {proxy.name} is {protocol_of(proxy)} and cannot change to"
                f" {wanted}; delete the proxy and create it again"
            )
