"""One proxied TCP connection: the client's socket, the upstream socket and a link each way.

Directions follow Toxiproxy: the `upstream` link carries client -> server bytes, the
`downstream` link server -> client. Sides are named `client` and `server`.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from pytest_chaos.engine.events import estimated_size
from pytest_chaos.engine.handshake import establish
from pytest_chaos.engine.link import Link

if TYPE_CHECKING:
    from pytest_chaos.engine.http_toxics.layer import HttpLayer
    from pytest_chaos.engine.proxy import Proxy

# Large transport buffers keep bulk transfers from bouncing between pause and resume.
WRITE_HIGH_WATER = 1024 * 1024
# Bytes a side may send before the links exist (while the upstream is dialled) that are read
# and kept; past this, its reads pause until the links take them. A request that fits is kept
# without pausing and resuming reads, two calls into the loop (and its poller) per connection.
EARLY_HIGH_WATER = 64 * 1024
# How long a closing side may take to flush what it still has to write before it is aborted.
CLOSE_GRACE_SECONDS = 5.0

UPSTREAM = "upstream"
DOWNSTREAM = "downstream"
CLIENT = "client"
SERVER = "server"

# What unseeded toxics draw from. Seeding a generator of its own per toxic and connection reads
# the OS's entropy each time (a tenth of a short connection's cost with two toxics); unseeded
# draws need not be repeatable, so they share one generator seeded once.
UNSEEDED_RNG = random.Random()

# The link a side feeds with what it reads, and the link that writes to it.
LINK_FROM_SIDE = {CLIENT: UPSTREAM, SERVER: DOWNSTREAM}
LINK_TO_SIDE = {CLIENT: DOWNSTREAM, SERVER: UPSTREAM}

# `estimated_size` (events.py) of the events every connection records, with their strings
# empty, worked out once: recording one adds its strings' lengths instead of walking its
# fields, a fifth of a short connection's Python work otherwise. Valid while the fields keep
# these types (tests/engine/test_events.py holds them to `estimated_size`).
ACCEPTED_SIZE = estimated_size({"connection": 0, "client": ""})
UPSTREAM_CONNECTED_SIZE = estimated_size({"connection": 0, "upstream": "", "dial_ms": 0.0})
DATA_SIZE = estimated_size({"connection": 0, "direction": "", "bytes": 0, "until": 0.0})
HALF_CLOSED_SIZE = estimated_size({"connection": 0, "side": ""})
CLOSED_SIZE = estimated_size(
    {
        "connection": 0,
        "by": "",
        "reset": False,
        "duration_ms": 0.0,
        "bytes": {UPSTREAM: {"in": 0, "out": 0}, DOWNSTREAM: {"in": 0, "out": 0}},
    }
)


class Connection:
    """Owns both transports and both links of one accepted client connection."""

    def __init__(self, proxy: Proxy, connection_id: int, index: int) -> None:
        self.proxy = proxy
        self.id = connection_id
        self.index = index
        self.label = f"{proxy.name}#{connection_id}"
        self.client: asyncio.Transport | None = None
        self.server: asyncio.Transport | None = None
        self.links: dict[str, Link] = {}
        self.closed = False
        # Closed, but the client's socket is still read (and what comes dropped) until the
        # client closes too: see `close(drain=True)`.
        self.draining = False
        self.opened_at = time.monotonic()
        self._first_fin: str | None = None
        # What a side sent before both links existed: the client while the dial is under way,
        # the server between its connection_made and the dial's return. (Pausing reads inside
        # connection_made is not honoured by uvloop, so early bytes are kept here.)
        # By side, made for a side when it sends early (an empty dict allocates nothing).
        self._early: dict[str, EarlyInput] = {}
        # Sockets still open; `wait_closed` lets the API answer only once they are gone.
        self._open_sockets = 0
        # Made by the first `wait_closed` that has to wait (rare: a proxy stopping), not by
        # every connection.
        self._sockets_gone: asyncio.Event | None = None
        # The proxy's loop, not looked up again: every lookup asks the OS for the process id.
        assert proxy.loop is not None  # connections come only once the proxy listens
        self.loop = proxy.loop
        # The HTTP-aware toxics' layer (`engine/http_toxics`), made once the proxy has had one:
        # it takes both sides' bytes before the links and feeds them itself. None: the bytes
        # go straight to the links, and nothing HTTP costs anything.
        self.http: HttpLayer | None = None

    # -- life cycle
    def client_connected(self, transport: asyncio.Transport) -> None:
        """The client's socket is accepted: record it and start dialling the upstream."""
        self.client = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        client = _address(transport.get_extra_info("peername"))
        self._append(
            "accepted",
            {"connection": self.id, "client": client},
            None if client is None else ACCEPTED_SIZE + len(client),
        )
        self.proxy.tasks.spawn(self._connect_upstream(), name=f"dial {self.label}", loop=self.loop)

    async def _connect_upstream(self) -> None:
        proxy = self.proxy
        # Hook for packet_loss: lost SYNs hold the dial back (or give up); see handshake.py.
        if proxy.toxics and proxy.toxics.syn_settings() and not await establish(self):
            return
        started = time.monotonic()
        try:
            host, port = proxy.upstream_address()
            transport, _ = await self.loop.create_connection(
                lambda: SideProtocol(self, SERVER), host, port
            )
        except (OSError, ValueError) as error:
            reason = _describe(error)
            self.record("upstream_failed", upstream=proxy.upstream, error=reason)
            # A FIN, as upstream does, never a reset: a reset can reach the client before its
            # own connect() has seen the handshake complete, and fail the dial itself.
            self.close(by="proxy: upstream dial failed", error=reason, drain=True)
            return
        client = self.client
        if self.closed or client is None:
            transport.close()
            return
        self.server = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        upstream = proxy.upstream
        dial_ms = round((time.monotonic() - started) * 1000, 3)
        self._append(
            "upstream_connected",
            {"connection": self.id, "upstream": upstream, "dial_ms": dial_ms},
            UPSTREAM_CONNECTED_SIZE + len(upstream),
        )
        self.links = {
            UPSTREAM: Link(self, UPSTREAM, client, transport),
            DOWNSTREAM: Link(self, DOWNSTREAM, transport, client),
        }
        # A proxy that has, or once had, an HTTP toxic parses every new connection from its
        # first byte (see `set_connection_toxics`), toxics or not now.
        if proxy.toxics or proxy.toxics.had_connection_toxics:
            for direction, link in self.links.items():
                link.set_toxics(proxy.toxic_settings(direction))
            self.set_connection_toxics()
            active = self.active_toxics()
            if any(active.values()):
                self.record("toxics_active", toxics=active)
        for side, side_transport in ((CLIENT, client), (SERVER, transport)):
            early = self._early.pop(side, None)
            if early is None:
                continue
            for data in early.chunks:
                self.data_from(side, data)
            if early.eof:
                self.eof_from(side)
            elif early.paused and not self.closed:
                side_transport.resume_reading()

    def rng_factory(self, direction: str) -> Callable[[str], random.Random]:
        """What the toxics of `direction` draw from, by toxic name: the shared unseeded
        generator, or one seeded from the proxy's seed, this connection's number, the
        direction and the toxic."""
        proxy = self.proxy

        def make(toxic_name: str) -> random.Random:
            # The seed and this connection's number as they are when the toxic starts acting
            # here: a reseed (`POST /seed`) between tests applies to toxics added after it.
            if proxy.seed is None:
                return UNSEEDED_RNG
            # `random` hashes a str seed with SHA-512: stable across runs and processes.
            key = f"{proxy.seed}/{proxy.name}/{self.index}/{direction}/{toxic_name}"
            return random.Random(key)

        return make

    def apply_toxics(self) -> None:
        """Bring both links in line with the proxy's toxics (after an add, update or remove)."""
        close = False
        for direction, link in self.links.items():
            close |= link.set_toxics(self.proxy.toxic_settings(direction))
        self.set_connection_toxics()
        if close:
            self.close(by="proxy: timeout toxic removed")

    def set_connection_toxics(self) -> None:
        """Hand the toxics that act on whole connections (the HTTP-aware ones) to this
        connection's HTTP layer, made on first need (and kept: see `had_connection_toxics`)."""
        if not self.links:
            return  # still dialling: the dial calls this once the links exist
        if self.http is None:
            if not self.proxy.toxics.had_connection_toxics:
                return
            from pytest_chaos.engine.http_toxics.layer import HttpLayer

            self.http = HttpLayer(self)
        self.http.set_toxics(self.proxy.toxics.connection_settings())

    def active_toxics(self) -> dict[str, list[str]]:
        """The names of the toxics acting on each direction of this connection."""
        return {direction: link.active_toxics() for direction, link in self.links.items()}

    # -- events from the sides and the links
    def data_from(self, side: str, data: bytes) -> None:
        """Bytes read from `side`: into its link, or kept until the links exist."""
        if self.closed:
            return  # a side being drained, or bytes that raced the close: dropped
        link = self.links.get(LINK_FROM_SIDE[side])
        if link is not None:
            if self.http is not None:
                self.http.data_from(side, data)  # it feeds the links itself
            else:
                link.feed(data)
            return
        transport = self.client if side == CLIENT else self.server
        if transport is not None and not self.closed:
            # The links do not exist yet: keep the bytes, and past `EARLY_HIGH_WATER` let the
            # kernel hold the rest.
            early = self._early_input(side)
            early.chunks.append(data)
            early.size += len(data)
            if early.size >= EARLY_HIGH_WATER and not early.paused:
                early.paused = True
                transport.pause_reading()

    def eof_from(self, side: str) -> None:
        """`side` sent its FIN: pass it through its link, behind what the link holds."""
        if self.closed:
            # A side still draining after the close (see `close(drain=True)`) is done.
            transport = self.client if side == CLIENT else self.server
            if transport is not None:
                transport.close()
            return
        link = self.links.get(LINK_FROM_SIDE[side])
        if link is None:
            self._early_input(side).eof = True
            return
        if self._first_fin is None:
            self._first_fin = side
        # Bytes read before the FIN are reported before it.
        link.close_data_run()
        self._append(
            "half_closed", {"connection": self.id, "side": side}, HALF_CLOSED_SIZE + len(side)
        )
        if self.http is not None:
            self.http.eof_from(side)  # it passes the FIN on after what it holds
        else:
            link.feed_eof()

    def _early_input(self, side: str) -> EarlyInput:
        early = self._early.get(side)
        if early is None:
            early = self._early[side] = EarlyInput()
        return early

    def writing_paused(self, side: str, paused: bool) -> None:
        """`side`'s write buffer filled (or drained): the link writing to it stops reading."""
        link = self.links.get(LINK_TO_SIDE[side])
        if link is not None:
            link.destination_full(paused)

    def link_finished(self, link: Link) -> None:
        """A FIN went all the way through `link`: half-close its destination."""
        if self.closed:
            return
        if link.destination.can_write_eof():
            link.destination.write_eof()
        links = self.links
        if links[UPSTREAM].finished and links[DOWNSTREAM].finished:
            self.close(by=self._first_fin or "proxy")

    def socket_opened(self) -> None:
        """Count one more open socket of this connection (see `wait_closed`)."""
        self._open_sockets += 1

    def socket_gone(self) -> None:
        """Count one socket closed; with none left, the connection is really gone."""
        self._open_sockets -= 1
        if self._open_sockets <= 0:
            if self._sockets_gone is not None:
                self._sockets_gone.set()
            if self.draining:
                self.proxy.connection_gone(self)

    def stop_draining(self) -> None:
        """Close the client's socket now instead of waiting for the client to close it."""
        if self.draining and self.client is not None and not self.client.is_closing():
            self.client.close()

    async def wait_closed(self) -> None:
        """Wait until both sockets are really closed (close() finishes on a later loop turn)."""
        if self._open_sockets > 0:
            if self._sockets_gone is None:
                self._sockets_gone = asyncio.Event()
            await self._sockets_gone.wait()

    def side_lost(self, side: str, error: BaseException | None) -> None:
        """`side`'s socket is gone (`error`: how, if not cleanly): close the rest, then let go."""
        self.socket_gone()
        if not self.closed:
            if error is not None:
                # Pass a reset on as a reset: the other peer should see what really happened.
                self.close(by=side, reset=True, error=_describe(error))
            else:
                self.close(by=side)
        if self._open_sockets <= 0:
            self._release()

    def _release(self) -> None:
        """Break the reference cycles of a closed connection whose sockets are all gone.

        Links, transports, protocols and the HTTP layer point back at the connection; left
        as they are, every closed connection would be garbage only the cyclic collector can
        free: more memory between collections, and longer collections (their pauses delay
        every timer of the loop, a latency toxic's with them). Released, reference counting
        frees it at once. Safe to call again (a dial that returns after the close).
        """
        for link in self.links.values():
            link.release()
        self.links = {}
        self.client = self.server = None
        self.http = None

    def close(
        self,
        *,
        by: str,
        reset: bool = False,
        error: str | None = None,
        flush: bool = True,
        drain: bool = False,
    ) -> None:
        """Close both sides. With `flush` false, data still queued for a peer that is not
        reading is dropped instead of being given a grace period (a proxy being disabled).
        With `drain`, the client gets a FIN at once and what it still sends is read and
        discarded until it closes too (at most `CLOSE_GRACE_SECONDS`): closing a socket with
        unread data would send a reset instead."""
        if self.closed:
            return
        self.closed = True
        for link in self.links.values():
            link.close_data_run()
            link.stop()
        if self.http is not None:
            self.http.connection_closed()
        for transport in (self.client, self.server):
            if transport is None:
                continue
            if drain and transport is self.client and transport.can_write_eof():
                self.draining = True
                _drain_and_close(transport)
            else:
                _close_transport(transport, reset=reset, flush=flush)
        fields: dict[str, Any] = {
            "connection": self.id,
            "by": by,
            "reset": reset,
            "duration_ms": round((time.monotonic() - self.opened_at) * 1000, 3),
            "bytes": {
                direction: {"in": link.bytes_in, "out": link.bytes_out}
                for direction, link in self.links.items()
            },
        }
        if error is not None:
            fields["error"] = error
        known = error is None and len(self.links) == 2
        self._append("closed", fields, CLOSED_SIZE + len(by) if known else None)
        self.proxy.connection_closed(self)

    # -- the record
    def record(self, kind: str, *, at: float | None = None, **fields: Any) -> None:
        """Record an event of this connection in the proxy's event log (stamped `at`, default
        now)."""
        self._append(kind, {"connection": self.id, **fields}, None, at=at)

    def record_data(self, direction: str, size: int, *, at: float, until: float) -> None:
        """Record a `data` event: `size` bytes read in `direction` from `at` to `until`."""
        fields = {"connection": self.id, "direction": direction, "bytes": size, "until": until}
        self._append("data", fields, DATA_SIZE + len(direction), at=at)

    def _append(
        self, kind: str, fields: dict[str, Any], size: int | None, *, at: float | None = None
    ) -> None:
        # `fields` starts with this connection's id; `size`: its estimate if known (see
        # `ACCEPTED_SIZE`).
        self.proxy.events.append(kind, self.proxy.name, fields, at, size)


class EarlyInput:
    """What one side sent before both links existed (see `Connection.data_from`)."""

    __slots__ = ("chunks", "eof", "paused", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        # Its reads paused at `EARLY_HIGH_WATER`; its FIN came.
        self.paused = False
        self.eof = False


class SideProtocol(asyncio.Protocol):
    """asyncio's callbacks for one side's socket, forwarded to the connection."""

    def __init__(self, connection: Connection, side: str) -> None:
        self.connection = connection
        self.side = side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The socket is connected: hand its transport to the connection."""
        self.connection.socket_opened()
        # uvloop's transports do not subclass asyncio.Transport but implement it.
        if self.side == CLIENT:
            self.connection.client_connected(cast(asyncio.Transport, transport))
        else:
            self.connection.server = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Bytes read from this side."""
        self.connection.data_from(self.side, data)

    def eof_received(self) -> bool:
        """This side sent a FIN; the transport stays open for the other direction."""
        self.connection.eof_from(self.side)
        # Keep the transport open: the other direction may still be sending (half-close).
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """This side's socket is closed (`exc`: the error, if any)."""
        self.connection.side_lost(self.side, exc)

    def pause_writing(self) -> None:
        """This side's write buffer is full."""
        self.connection.writing_paused(self.side, True)

    def resume_writing(self) -> None:
        """This side's write buffer has drained."""
        self.connection.writing_paused(self.side, False)


def _close_transport(transport: asyncio.Transport, *, reset: bool, flush: bool) -> None:
    if transport.is_closing():
        return
    if not flush and transport.get_write_buffer_size():
        transport.abort()
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout makes close() send an RST instead of a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return
    transport.close()
    if transport.get_write_buffer_size():
        # close() waits for the buffer to drain; a peer that never reads must not pin it.
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, transport.abort)


def _drain_and_close(transport: asyncio.Transport) -> None:
    if transport.is_closing():
        return
    transport.write_eof()
    transport.resume_reading()
    asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, transport.close)


def _address(peer: Any) -> str | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno:
        # asyncio's own wording ("Connect call failed ...") hides the reason behind errno.
        return f"{os.strerror(error.errno)} (errno {error.errno})"
    return str(error) or type(error).__name__
