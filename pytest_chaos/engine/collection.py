"""The set of proxies and the operations of the API on them (create, update, populate, reset)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from pytest_chaos.engine.errors import PROXY_EXISTS, PROXY_NOT_FOUND, ApiError, bad_request
from pytest_chaos.engine.events import EventLog
from pytest_chaos.engine.names import check_name, check_text
from pytest_chaos.engine.proxy import LinkTotals, Proxy
from pytest_chaos.engine.tasks import TaskSet
from pytest_chaos.engine.toxic_collection import ToxicSpec
from pytest_chaos.engine.udp.proxy import (
    check_protocol_kept,
    protocol_of,
    proxy_factory,
    requested_protocol,
)

DEFAULT_LISTEN = "127.0.0.1:0"


def _field(body: dict[str, Any], key: str, kind: type, kind_name: str) -> Any:
    value = body.get(key)
    # JSON decoding gives exact types, so `type() is` also keeps booleans out of numbers.
    if value is not None and type(value) is not kind:
        raise bad_request(f"{key} must be {kind_name}, got {type(value).__name__}")
    return value


def _proxy_fields(
    body: object, where: str = ""
) -> tuple[str | None, str | None, str | None, bool | None]:
    if not isinstance(body, dict):
        raise bad_request("a proxy must be a JSON object")
    name = _field(body, "name", str, "a string")
    listen = _field(body, "listen", str, "a string")
    upstream = _field(body, "upstream", str, "a string")
    for field, value in (("listen", listen), ("upstream", upstream)):
        if value is not None:
            check_text(value, field, where)
    return name, listen, upstream, _field(body, "enabled", bool, "true or false")


def _required_fields(body: object, position: int | None = None) -> tuple[str, str]:
    """The name and upstream of a proxy to create; a 400 when one is missing or unusable."""
    where = "" if position is None else f" at proxy {position}"
    name, _, upstream, _ = _proxy_fields(body, where)
    for field, value in (("name", name), ("upstream", upstream)):
        if not value:
            raise ApiError(400, f"missing required field: {field}{where}")
    assert name is not None
    assert upstream is not None
    check_name(name, "proxy name", where)
    return name, upstream


def _same_listen(requested: str, bound: str) -> bool:
    return requested.replace("localhost:", "127.0.0.1:", 1) == bound


class ProxyCollection:
    """All proxies of one engine, by name.

    Every change goes through one lock, held from the checks to the end of the change (binding
    and closing listeners included), so concurrent API clients see the outcomes upstream's
    mutex gives: one create of a name wins and the others get 409 before binding anything;
    a reset never sees the set of proxies change under it. Reads wait for the lock too, so
    they never see a change half done (a proxy being moved shows its old or its new listen).
    Request bodies are read before the lock is taken: a slow client cannot stall the others.
    """

    def __init__(self, events: EventLog, seed: int | None, tasks: TaskSet) -> None:
        self.events = events
        self.seed = seed
        self.tasks = tasks
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()
        self.link_totals: LinkTotals = {}
        self._connection_ids = itertools.count(1)

    def get(self, name: str) -> Proxy:
        """The proxy called `name`, or upstream's 404."""
        try:
            return self.proxies[name]
        except KeyError:
            raise ApiError(404, PROXY_NOT_FOUND) from None

    # -- proxies
    async def create(self, body: object) -> Proxy:
        """Create a proxy from an API body (409 if its name is taken), under the lock."""
        async with self.lock:
            return await self._create(body)

    async def _create(self, body: object, *, position: int | None = None) -> Proxy:
        name, upstream = _required_fields(body, position)
        _, listen, _, enabled = _proxy_fields(body)
        if name in self.proxies:
            raise ApiError(409, PROXY_EXISTS)
        # Extension: `"protocol": "udp"` makes a UDP proxy (engine/udp/); TCP is the default.
        proxy = proxy_factory(body)(
            name,
            listen or DEFAULT_LISTEN,
            upstream,
            events=self.events,
            seed=self.seed,
            tasks=self.tasks,
            connection_ids=self._connection_ids,
            link_totals=self.link_totals,
        )
        if enabled is not False:
            await proxy.start()
        self.proxies[name] = proxy
        self.events.record(
            "proxy_created",
            proxy=name,
            listen=proxy.listen,
            upstream=upstream,
            enabled=proxy.enabled,
        )
        return proxy

    async def update(self, name: str, body: object) -> Proxy:
        """Move, re-point, enable or disable a proxy; a move or a disable closes its connections."""
        async with self.lock:
            proxy = self.get(name)
            _, listen, upstream, enabled = _proxy_fields(body)
            check_protocol_kept(proxy, body)  # extension: a UDP proxy stays one, and TCP too
            moved = (listen is not None and not _same_listen(listen, proxy.listen)) or (
                upstream is not None and upstream != proxy.upstream
            )
            want_enabled = proxy.enabled if enabled is None else enabled
            if moved or not want_enabled:
                await proxy.stop()
            if listen is not None and moved:
                proxy.listen = listen
            if upstream is not None:
                proxy.upstream = upstream
            if want_enabled:
                await proxy.start()
            self.events.record(
                "proxy_updated",
                proxy=name,
                listen=proxy.listen,
                upstream=proxy.upstream,
                enabled=proxy.enabled,
            )
            return proxy

    async def delete(self, name: str) -> None:
        """Remove a proxy and stop it: its listener and connections are gone when this returns."""
        async with self.lock:
            await self._delete(name)

    async def _delete(self, name: str) -> None:
        proxy = self.get(name)
        del self.proxies[name]
        await proxy.stop()
        self.events.record("proxy_deleted", proxy=name)

    async def populate(self, body: object) -> tuple[list[Proxy], ApiError | None]:
        """Create or replace proxies in order; stop at the first failure, keeping what was done."""
        if not isinstance(body, list):
            raise bad_request("populate expects a JSON array of proxies")
        for position, entry in enumerate(body, start=1):
            _required_fields(entry, position)
        async with self.lock:
            done: list[Proxy] = []
            for position, entry in enumerate(body, start=1):
                existing = self.proxies.get(entry["name"])
                try:
                    if existing is not None:
                        listen = entry.get("listen") or DEFAULT_LISTEN
                        if (
                            _same_listen(listen, existing.listen)
                            and entry["upstream"] == existing.upstream
                            and requested_protocol(entry) == protocol_of(existing)
                        ):
                            done.append(existing)
                            continue
                        await self._delete(existing.name)
                    done.append(await self._create(entry, position=position))
                except ApiError as error:
                    return done, error
            return done, None

    def reseed(self, seed: int | None) -> None:
        """Extension: every proxy draws from `seed` from now on (see `Proxy.reseed`)."""
        self.seed = seed
        for proxy in list(self.proxies.values()):
            proxy.reseed(seed)
        self.events.record("seeded", seed=seed)

    async def reset(self) -> None:
        """Re-enable every proxy and remove every toxic."""
        async with self.lock:
            for proxy in list(self.proxies.values()):
                proxy.remove_all_toxics()
                await proxy.start()
            self.events.record("reset")

    # -- toxics
    async def add_toxic(self, proxy_name: str, body: dict[str, Any]) -> ToxicSpec:
        """Add a toxic to a proxy (see `Proxy.add_toxic`)."""
        async with self.lock:
            return self.get(proxy_name).add_toxic(body)

    async def update_toxic(self, proxy_name: str, name: str, body: dict[str, Any]) -> ToxicSpec:
        """Update a proxy's toxic (see `Proxy.update_toxic`)."""
        async with self.lock:
            return self.get(proxy_name).update_toxic(name, body)

    async def remove_toxic(self, proxy_name: str, name: str) -> None:
        """Remove a proxy's toxic (see `Proxy.remove_toxic`)."""
        async with self.lock:
            self.get(proxy_name).remove_toxic(name)

    async def close(self) -> None:
        """Stop every proxy (the engine is shutting down)."""
        async with self.lock:
            for proxy in list(self.proxies.values()):
                await proxy.stop()
