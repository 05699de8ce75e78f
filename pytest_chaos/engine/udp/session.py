"""One client of a UDP proxy: its address, its own socket to the upstream, a link each way.

A UDP proxy tells its clients apart by their address, as a NAT does: the first datagram from an
address opens a session with a socket of its own connected to the upstream, so the upstream's
replies come back to that client alone. A session ends after `idle_timeout` without a datagram
either way (30 s by default: Linux's `nf_conntrack_udp_timeout`); the client's next datagram
opens a new one. Directions follow Toxiproxy: `upstream` is client -> server.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# One wording for peers and socket errors in every event, TCP's and UDP's.
from pytest_chaos.engine.connection import _address, _describe
from pytest_chaos.engine.udp.link import DatagramLink

if TYPE_CHECKING:
    from pytest_chaos.engine.udp.proxy import UdpProxy

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"
# Datagrams kept for the upstream while its socket is being opened (a DNS client's retries).
WAITING_LIMIT = 256
# As the proxy's own socket's (see udp/proxy.py).
RECEIVE_BUFFER = 1 << 20


class Session:
    """The datagrams of one client address through a UDP proxy."""

    def __init__(self, proxy: UdpProxy, client: Any, session_id: int, index: int) -> None:
        self.proxy = proxy
        self.client = client
        self.id = session_id
        self.index = index
        self.label = f"{proxy.name}#{session_id}"
        self.opened_at = self.last_active = time.monotonic()
        self.closed = False
        self.upstream: asyncio.DatagramTransport | None = None
        self._waiting: list[bytes] = []
        self._errors: set[str] = set()
        self.links = {
            UPSTREAM: DatagramLink(self, UPSTREAM, self._to_upstream, self._rng_factory(UPSTREAM)),
            DOWNSTREAM: DatagramLink(
                self, DOWNSTREAM, self._to_client, self._rng_factory(DOWNSTREAM)
            ),
        }
        self.apply_toxics()
        self.record(
            "session_opened",
            client=_address(client),
            upstream=proxy.upstream,
            toxics={direction: link.active_toxics() for direction, link in self.links.items()},
        )
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(proxy.idle_timeout, self._check_idle)
        proxy.tasks.spawn(self._open_upstream(), name=f"open {self.label}")

    def _rng_factory(self, direction: str) -> Callable[[str], random.Random]:
        proxy = self.proxy

        def make(toxic_name: str) -> random.Random:
            # As a TCP connection's: the seed, the proxy, this session's number, the direction
            # and the toxic, as they are when the toxic starts acting here.
            if proxy.seed is None:
                return random.Random()
            return random.Random(f"{proxy.seed}/{proxy.name}/{self.index}/{direction}/{toxic_name}")

        return make

    async def _open_upstream(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            host, port = self.proxy.upstream_address()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UpstreamProtocol(self), remote_addr=(host, port)
            )
        except (OSError, ValueError) as error:
            self.record("session_error", upstream=self.proxy.upstream, error=_describe(error))
            self.close(by="proxy: upstream unusable")
            return
        if self.closed:
            transport.close()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.upstream = transport
        waiting, self._waiting = self._waiting, []
        for data in waiting:
            transport.sendto(data)

    # -- datagrams
    def from_client(self, data: bytes) -> None:
        """A datagram from the client, into the upstream link."""
        self.last_active = time.monotonic()
        self.links[UPSTREAM].feed(data)

    def from_upstream(self, data: bytes) -> None:
        """A datagram from the upstream, into the downstream link."""
        self.last_active = time.monotonic()
        self.links[DOWNSTREAM].feed(data)

    def _to_upstream(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.sendto(data)
        elif len(self._waiting) < WAITING_LIMIT:
            self._waiting.append(data)

    def _to_client(self, data: bytes) -> None:
        self.proxy.send_to_client(data, self.client)

    def upstream_error(self, error: Exception) -> None:
        """The upstream socket got an error (ICMP port unreachable: nothing listens there).
        The client is not told (nothing can tell it); each distinct error is recorded once."""
        reason = _describe(error)
        if reason not in self._errors:
            self._errors.add(reason)
            self.record("session_error", upstream=self.proxy.upstream, error=reason)

    # -- life cycle
    def apply_toxics(self) -> None:
        """Bring both links in line with the proxy's toxics."""
        for direction, link in self.links.items():
            link.set_toxics(self.proxy.toxic_settings(direction))

    def _check_idle(self) -> None:
        idle_until = self.last_active + self.proxy.idle_timeout
        if (wait := idle_until - time.monotonic()) > 0:
            self._idle_timer = asyncio.get_running_loop().call_later(wait, self._check_idle)
            return
        self.close(by="idle")

    def close(self, *, by: str) -> None:
        """End the session: its toxics stop, its upstream socket closes, the proxy forgets it."""
        if self.closed:
            return
        self.closed = True
        self._idle_timer.cancel()
        for link in self.links.values():
            link.stop()
        if self.upstream is not None:
            self.upstream.close()
        self.record(
            "session_closed",
            by=by,
            duration_ms=round((time.monotonic() - self.opened_at) * 1000, 3),
            datagrams={direction: dict(link.totals) for direction, link in self.links.items()},
        )
        self.proxy.session_closed(self)

    def record(self, kind: str, **fields: Any) -> None:
        """Record an event of this session in the engine's event log."""
        self.proxy.events.record(kind, proxy=self.proxy.name, session=self.id, **fields)


class UpstreamProtocol(asyncio.DatagramProtocol):
    """asyncio's callbacks for a session's socket to the upstream."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.session.closed:
            self.session.from_upstream(data)

    def error_received(self, exc: Exception) -> None:
        if not self.session.closed:
            self.session.upstream_error(exc)
