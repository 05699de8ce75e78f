"""Where the Toxiproxy API lives: the embedded engine in its own process, an external server,
or a Toxiproxy container.

The embedded engine's process is managed by `embedded`, the container by `container` (whose
client translates addresses between the container and this machine); this module connects the
session to whichever server the backend names.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from pytest_chaos.backends import BackendError
from pytest_chaos.backends.client import ProxyInfo, ToxiproxyClient, ToxiproxyError
from pytest_chaos.backends.embedded import EngineProcess

if TYPE_CHECKING:
    from pytest_chaos.backends.container import ToxiproxyContainer

__all__ = ["ToxiproxyServer", "open_server", "open_session_server"]


class ToxicNames:
    """Unique toxic names, recognisable as the plugin's own (`chaos_<type>_<stream>_<n>`).

    Numbered from 1 again in every test (`begin_test`), so that a test gets the same names,
    and so the same seeded draws, alone or inside the whole suite. Under pytest-xdist the
    worker id is part of the name (`chaos_gw0_latency_...`): workers sharing one external
    Toxiproxy must not take, or remove, each other's toxics.
    """

    PREFIX = "chaos_"
    # The name space of toxics applied by `chaos.apply` in an example of a property-based test.
    EXAMPLE = "example_"

    def __init__(self, worker: str | None = None) -> None:
        self._counter = 0
        self._stem = f"{self.PREFIX}{worker}_" if worker else self.PREFIX
        # (proxy, toxic name) of every name handed out, for the clean-up at session end.
        self.issued: set[tuple[str, str]] = set()
        # In a Hypothesis example: (proxy, toxic name) of the example's toxics still applied.
        self._held: set[tuple[str, str]] | None = None

    def begin_test(self) -> None:
        """Number from 1 again: a test gets the same names alone as inside the suite."""
        self._counter = 0
        self._stem = self._stem.removesuffix(self.EXAMPLE)
        self._held = None

    def begin_example(self) -> None:
        """Name the toxics of a Hypothesis example in a name space of their own
        (`chaos_example_<type>_<stream>_<n>`), without clashing with the toxics the test itself
        still has applied (markers, `chaos.inject`). `n` is the lowest number free among the
        example's toxics applied at that moment (`release` frees one), so a toxic's name, and
        so its seeded draws, depends neither on the examples before nor on faults that came and
        went earlier in the example: dropping one while shrinking leaves the others' draws be."""
        self._counter = 0
        if not self._stem.endswith(self.EXAMPLE):
            self._stem += self.EXAMPLE
        self._held = set()

    def release(self, proxy: str, name: str) -> None:
        """The toxic `name` of `proxy` was removed: an example may give its name again."""
        if self._held is not None:
            self._held.discard((proxy, name))

    def next(self, proxy: str, toxic_type: str, stream: str) -> str:
        """A new name for a toxic of `toxic_type` on `proxy`'s `stream`, remembered so that
        the session's clean-up can remove it."""
        if self._held is not None:
            number = 1
            while (proxy, f"{self._stem}{toxic_type}_{stream}_{number}") in self._held:
                number += 1
            name = f"{self._stem}{toxic_type}_{stream}_{number}"
            self._held.add((proxy, name))
            self.issued.add((proxy, name))
            return name
        self._counter += 1
        name = f"{self._stem}{toxic_type}_{stream}_{self._counter}"
        self.issued.add((proxy, name))
        return name


class ToxiproxyServer:
    """The session's Toxiproxy API, whichever backend serves it (the `toxiproxy` fixture).

    `create_proxy`, `proxies`, `populate` and `reset` are the Toxiproxy operations; `client`
    is the typed API client for everything else.
    """

    def __init__(
        self,
        backend: str,
        client: ToxiproxyClient,
        process: EngineProcess | None,
        worker: str | None = None,
        *,
        container: ToxiproxyContainer | None = None,
    ) -> None:
        self.backend = backend
        self.client = client
        self._process = process
        self._container = container
        self.toxic_names = ToxicNames(worker)
        self.created: set[str] = set()
        # Upstreams of proxies that existed before the session and were pointed elsewhere,
        # restored at the end so that a shared server is left as it was found.
        self._original_upstreams: dict[str, str] = {}

    @property
    def container_network(self) -> str | None:
        """The Toxiproxy container's network mode ("bridge" or "host"); None without one."""
        return None if self._container is None else self._container.network

    @property
    def url(self) -> str:
        """The API's URL."""
        return self.client.url

    def create_proxy(
        self, name: str, upstream: str, *, listen: str = "127.0.0.1:0", protocol: str = "tcp"
    ) -> ProxyInfo:
        """Create a proxy for the session (deleted at its end on a shared server); `protocol`
        "udp" makes a UDP proxy (the pytest-chaos engine only)."""
        proxy = self.client.create_proxy(name, upstream, listen=listen, protocol=protocol)
        self.created.add(name)
        return proxy

    def proxies(self) -> dict[str, ProxyInfo]:
        """Every proxy of the server, by name."""
        return self.client.proxies()

    def populate(self, proxies: list[dict[str, object]]) -> list[ProxyInfo]:
        """Create or replace proxies as `POST /populate` does (listening on a free loopback port
        unless they say otherwise)."""
        existing = self.client.proxies()
        created = self.client.populate([{"listen": "127.0.0.1:0", **p} for p in proxies])
        self.created.update(p.name for p in created if p.name not in existing)
        return created

    def declare(self, upstreams: dict[str, str]) -> None:
        """Make sure a proxy of each name forwards to its upstream (`chaos_proxies`).

        A proxy that already exists keeps its listen address, so clients of a shared server
        are not cut off; one pointed elsewhere is pointed back at the end.
        """
        existing = self.client.proxies()
        missing: list[dict[str, object]] = [
            {"name": name, "upstream": upstream}
            for name, upstream in upstreams.items()
            if name not in existing
        ]
        if missing:
            self.populate(missing)
        for name, upstream in upstreams.items():
            if name in existing:
                self.point(name, upstream, existing[name])

    def point(self, name: str, upstream: str, current: ProxyInfo | None = None) -> ProxyInfo:
        """Point the existing proxy `name` at `upstream`."""
        current = current or self.client.get_proxy(name)
        if current.upstream == upstream:
            return current
        if name not in self.created:
            self._original_upstreams.setdefault(name, current.upstream)
        return self.client.update_proxy(name, upstream=upstream)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self.client.reset()

    def remove_own_toxics(self) -> None:
        """Remove every toxic this session created and is still there.

        Used at session end so that a shared, external Toxiproxy is left as it was found,
        even when a test was interrupted before its own clean-up ran. Toxics of other
        sessions (other xdist workers, other runs) are left alone, whatever their names.
        """
        for proxy in self.client.proxies().values():
            for toxic in proxy.toxics:
                if (proxy.name, toxic.name) in self.toxic_names.issued:
                    try:
                        self.client.remove_toxic(proxy.name, toxic.name)
                    except ToxiproxyError as error:
                        if error.status != 404:
                            raise

    def close(self) -> None:
        """End the session: stop the engine or the container; on a shared server, remove what the
        session added and restore what it changed."""
        try:
            if self._process is None and self._container is None:
                self.remove_own_toxics()
                for name, upstream in self._original_upstreams.items():
                    with contextlib.suppress(ToxiproxyError):
                        self.client.update_proxy(name, upstream=upstream)
                for name in self.created:
                    with contextlib.suppress(ToxiproxyError):
                        self.client.delete_proxy(name)
        finally:
            self.client.close()
            if self._process is not None:
                self._process.stop()
            if self._container is not None:
                self._container.stop()


def open_server(
    backend: str,
    url: str | None,
    process: EngineProcess | None,
    worker: str | None = None,
    *,
    image: str | None = None,
    network: str = "bridge",
    seed: int | None = None,
) -> ToxiproxyServer:
    """Connect to the session's server, starting the engine process or the Toxiproxy container
    if that is the backend.

    `worker` is the xdist worker id, if any, to keep toxic names apart on a shared server;
    `image` and `network` are the container's (`chaos_toxiproxy_image`, `_network`), `seed`
    is passed to it as `-seed`."""
    if backend == "embedded":
        assert process is not None
        client = ToxiproxyClient(process.wait_ready(), diagnose=process.diagnose)
        return ToxiproxyServer(backend, client, process)
    if backend == "toxiproxy":
        assert url is not None
        client = ToxiproxyClient(url)
        try:
            client.version()
        except ToxiproxyError as error:
            client.close()
            raise BackendError(
                f"--chaos-backend toxiproxy: no Toxiproxy API answers at {url} ({error.message})"
            ) from None
        return ToxiproxyServer(backend, client, None, worker)
    if backend == "container":
        from pytest_chaos.backends.container import ToxiproxyContainer
        from pytest_chaos.config import DEFAULT_TOXIPROXY_IMAGE

        container = ToxiproxyContainer(image or DEFAULT_TOXIPROXY_IMAGE, network, seed=seed)
        client = container.start()
        return ToxiproxyServer(backend, client, None, worker, container=container)
    raise BackendError(f"unknown backend {backend!r}; choose embedded, toxiproxy or container")


def open_session_server(config: pytest.Config) -> ToxiproxyServer:
    """The session's server for the `toxiproxy` fixture, with the proxies of `chaos_proxies`;
    a server that cannot be had fails the fixture with the reason alone."""
    from pytest_chaos._keys import config_key, process_key

    settings = config.stash[config_key]
    process = config.stash.get(process_key, None)
    if settings.backend == "embedded" and process is None:
        process = config.stash[process_key] = EngineProcess(settings.seed)
    # pytest.fail() is called outside the except blocks, so that the report shows our message
    # once, without "During handling of the above exception...".
    problem: str | None = None
    server: ToxiproxyServer | None = None
    try:
        server = open_server(
            settings.backend,
            settings.toxiproxy_url,
            process,
            getattr(config, "workerinput", {}).get("workerid"),
            image=settings.toxiproxy_image,
            network=settings.toxiproxy_network,
            seed=settings.seed,
        )
    except BackendError as error:
        problem = f"pytest-chaos: {error}"
    if server is None:
        pytest.fail(problem or "pytest-chaos: no Toxiproxy server", pytrace=False)
    try:
        if settings.proxies:
            server.declare(settings.proxies)
    except ToxiproxyError as error:
        server.close()
        problem = f"pytest-chaos: chaos_proxies: {error}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return server
