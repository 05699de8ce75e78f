"""A proxy: one listener, its live connections and its toxics."""

from __future__ import annotations

import asyncio
import itertools
import os
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

LISTEN_BACKLOG = 1024
CLOSE_WAIT_SECONDS = 1.0


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
        self._server: asyncio.AbstractServer | None = None
        self._connection_ids = connection_ids
        self._accepted = itertools.count()
        # Totals of closed connections; live ones are added when metrics are read.
        self.totals = {"connections": 0, "upstream_failures": 0, "upstream": 0, "downstream": 0}

    # -- listening
    async def start(self) -> None:
        """Bind the listen address; `listen` then shows the real port (port 0 picks one)."""
        if self._server is not None:
            return
        try:
            host, port = split_host_port(self.listen)
            bind_host = resolve_listen_host(host)
        except (ValueError, OSError) as error:
            raise ApiError(500, f"listen tcp {self.listen}: {error}") from None
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: SideProtocol(self._new_connection(), "client"),
                host=bind_host or None,
                port=port,
                reuse_address=True,
                backlog=LISTEN_BACKLOG,
            )
        except OSError as error:
            # asyncio rewrites strerror into a sentence; Go prints the bare reason.
            reason = os.strerror(error.errno).lower() if error.errno else str(error)
            raise ApiError(
                500, f"listen tcp {join_host_port(bind_host, port)}: bind: {reason}"
            ) from None
        self._server = server
        bound_port = server.sockets[0].getsockname()[1]
        shown_host = "::" if bind_host in ("", "::") else bind_host
        self.listen = join_host_port(shown_host, bound_port)
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
        if connections:
            # Answer the API only once clients see their connections closed, as upstream does;
            # bounded, since a socket with unsent data may take longer to let go.
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in connections],
                timeout=CLOSE_WAIT_SECONDS,
            )
        if server is not None:
            await server.wait_closed()

    def _new_connection(self) -> Connection:
        connection = Connection(self, next(self._connection_ids), next(self._accepted))
        self.connections.add(connection)
        self.totals["connections"] += 1
        return connection

    def connection_closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        for direction, link in connection.links.items():
            self.totals[direction] += link.bytes_in
        if not connection.links:
            self.totals["upstream_failures"] += 1

    def upstream_address(self) -> tuple[str, int]:
        return split_host_port(self.upstream)

    # -- toxics
    def toxic_settings(self, stream: str) -> list[ToxicSetting]:
        return self.toxics.settings(stream)

    def add_toxic(self, body: dict[str, Any]) -> ToxicSpec:
        spec = self.toxics.add(body)
        self._toxics_changed()
        self.events.record("toxic_added", proxy=self.name, toxic=spec.to_json())
        return spec

    def update_toxic(self, name: str, body: dict[str, Any]) -> ToxicSpec:
        spec = self.toxics.update(name, body)
        self._toxics_changed()
        self.events.record("toxic_updated", proxy=self.name, toxic=spec.to_json())
        return spec

    def remove_toxic(self, name: str) -> None:
        spec = self.toxics.remove(name)
        self._toxics_changed()
        self.events.record("toxic_removed", proxy=self.name, toxic=spec.to_json())

    def remove_all_toxics(self) -> None:
        if self.toxics.clear():
            self._toxics_changed()

    def _toxics_changed(self) -> None:
        # Never awaits: a dead peer cannot hang the API (an upstream bug we do not copy).
        for connection in list(self.connections):
            connection.apply_toxics()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},
            "toxics": [spec.to_json() for spec in self.toxics.listing()],
        }
