"""A proxy: one listener, its live connections and its toxics."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
import os
import socket
from typing import TYPE_CHECKING, Any

from pytest_chaos.engine.addresses import join_host_port, resolve_listen_host, split_host_port
from pytest_chaos.engine.connection import Connection, SideProtocol
from pytest_chaos.engine.errors import ApiError
from pytest_chaos.engine.events import EventLog
from pytest_chaos.engine.link import ToxicSetting
from pytest_chaos.engine.tasks import TaskSet
from pytest_chaos.engine.toxic_collection import ToxicCollection, ToxicSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

CLOSE_WAIT_SECONDS = 1.0

# Bytes of closed links, labelled as upstream's metrics are: (direction, listener, proxy,
# upstream) -> [received, sent]. Shared by the proxies of an engine, it outlives them, as
# upstream's counters do.
LinkTotals = dict[tuple[str, str, str, str], list[int]]
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"


@functools.cache
def listen_backlog() -> int:
    """The system's largest accept queue, as Go (and so upstream) asks for on Linux."""
    try:
        with open(SOMAXCONN_PATH, encoding="ascii") as handle:
            return max(1, int(handle.read().strip()))
    except (OSError, ValueError):
        return socket.SOMAXCONN


def open_listener(bind_host: str, port: int) -> tuple[socket.socket, str]:
    """A non-blocking socket listening on `bind_host:port`, and the host to show for it.

    All interfaces ("" or "::") is one dual-stack IPv6 socket, as Go binds it: one port for
    IPv4 and IPv6 alike ("" falls back to IPv4 where IPv6 is off). Binding is synchronous and
    never waits: the address is numeric by now.
    """
    if bind_host in ("", "::"):
        try:
            return _bound("::", port, dual_stack=True), "::"
        except OSError as error:
            if bind_host == "::" or error.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
        bind_host = "0.0.0.0"
    return _bound(bind_host, port, dual_stack=False), bind_host


def _bound(host: str, port: int, *, dual_stack: bool) -> socket.socket:
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST | socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(listen_backlog())
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Proxy:
    """Listens on `listen` and forwards every accepted connection to `upstream`."""

    def __init__(
        self,
        name: str,
        listen: str,
        upstream: str,
        *,
        events: EventLog,
        seed: int | None,
        tasks: TaskSet,
        connection_ids: Iterator[int],
        link_totals: LinkTotals | None = None,
    ) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.events = events
        self.seed = seed
        self.tasks = tasks
        self.toxics = ToxicCollection()
        self.connections: set[Connection] = set()
        # The loop the proxy listens on, set by `start`: its connections run on it.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._connection_ids = connection_ids
        self._accepted = itertools.count()
        # Totals of closed connections; live ones are added when metrics are read.
        self.totals = {"connections": 0, "upstream_failures": 0, "upstream": 0, "downstream": 0}
        self.link_totals: LinkTotals = {} if link_totals is None else link_totals

    # -- listening
    async def start(self) -> None:
        """Bind the listen address; `listen` then shows the real port (port 0 picks one)."""
        if self._server is not None:
            return
        try:
            host, port = split_host_port(self.listen)
            bind_host = await resolve_listen_host(host)
        except (ValueError, OSError) as error:
            # Go's words: an address that does not parse or resolve names no address.
            raise ApiError(500, f"listen tcp: {error}") from None
        try:
            sock, shown_host = open_listener(bind_host, port)
        except OSError as error:
            # Go prints the bare reason, as os.strerror gives it.
            reason = os.strerror(error.errno).lower() if error.errno else str(error)
            raise ApiError(
                500, f"listen tcp {join_host_port(bind_host, port)}: bind: {reason}"
            ) from None
        loop = self.loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: SideProtocol(self._new_connection(), "client"),
                sock=sock,
                backlog=listen_backlog(),
                start_serving=False,
            )
        except BaseException:
            sock.close()
            raise
        try:
            await server.start_serving()
        except BaseException:
            server.close()
            raise
        self._server = server
        self.listen = join_host_port(shown_host, sock.getsockname()[1])
        self.enabled = True

    async def stop(self) -> None:
        """Stop listening and close every live connection."""
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self.connections)
        for connection in connections:
            connection.close(by="proxy", flush=False)
            connection.stop_draining()
        if connections:
            # Answer the API only once clients see their connections closed, as upstream does;
            # bounded, since a socket with unsent data may take longer to let go. (One after
            # the other under one deadline: no task of its own to outlive a timeout.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                    for connection in connections:
                        await connection.wait_closed()
        if server is not None:
            await server.wait_closed()

    def _new_connection(self) -> Connection:
        connection = Connection(self, next(self._connection_ids), next(self._accepted))
        self.connections.add(connection)
        self.totals["connections"] += 1
        return connection

    def reseed(self, seed: int | None) -> None:
        """Draw from `seed` from now on, numbering connections from 0 again; live connections
        are numbered -1, -2, ... in the order they were accepted."""
        self.seed = seed
        self._accepted = itertools.count()
        live = sorted(self.connections, key=lambda c: c.id)
        for rank, connection in enumerate(live, start=1):
            connection.index = -rank

    def connection_closed(self, connection: Connection) -> None:
        """A connection closed: add its bytes to the proxy's totals and the metrics' counters."""
        if not connection.draining:
            self.connections.discard(connection)
        for direction, link in connection.links.items():
            self.totals[direction] += link.bytes_in
            counts = self.link_totals.setdefault(link.metric_labels, [0, 0])
            counts[0] += link.bytes_in
            counts[1] += link.bytes_out
        if not connection.links:
            self.totals["upstream_failures"] += 1

    def connection_gone(self, connection: Connection) -> None:
        """A closed connection's last socket is gone (one that was draining its client)."""
        self.connections.discard(connection)

    def upstream_address(self) -> tuple[str, int]:
        """The upstream's host and port, parsed from `upstream` as it is now."""
        return split_host_port(self.upstream)

    # -- toxics
    def toxic_settings(self, stream: str) -> list[ToxicSetting]:
        """The toxics the links of `stream` run (see `ToxicCollection.settings`)."""
        return self.toxics.settings(stream)

    def add_toxic(self, body: dict[str, Any]) -> ToxicSpec:
        """Add a toxic from an API body; live connections get it at once."""
        spec = self.toxics.add(body)
        self._toxics_changed()
        self.events.record("toxic_added", proxy=self.name, toxic=spec.to_json())
        return spec

    def update_toxic(self, name: str, body: dict[str, Any]) -> ToxicSpec:
        """Update a toxic from an API body; live connections get the new version at once."""
        spec = self.toxics.update(name, body)
        self._toxics_changed()
        self.events.record("toxic_updated", proxy=self.name, toxic=spec.to_json())
        return spec

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic; what it held on live connections moves on, none of it lost."""
        spec = self.toxics.remove(name)
        self._toxics_changed()
        self.events.record("toxic_removed", proxy=self.name, toxic=spec.to_json())

    def remove_all_toxics(self) -> None:
        """Remove every toxic (`POST /reset`)."""
        if self.toxics.clear():
            self._toxics_changed()

    def _toxics_changed(self) -> None:
        # Never awaits: a dead peer cannot hang the API (an upstream bug we do not copy).
        for connection in list(self.connections):
            # Bytes read before the change are recorded before it.
            for link in connection.links.values():
                link.close_data_run()
            connection.apply_toxics()

    def to_json(self) -> dict[str, Any]:
        """The proxy as upstream's API shows it, with its toxics."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},
            "toxics": [spec.to_json() for spec in self.toxics.listing()],
        }
