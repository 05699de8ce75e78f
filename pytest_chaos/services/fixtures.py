"""Services as pytest fixtures: `service_fixture(definition)` in a conftest.py starts the
service once per session (by default), reaches it through a proxy of the same name, and yields
a `RunningService`; the plugin brings every service a test uses back to serving before the test
starts, whatever the previous test did to it.

    # conftest.py
    from pytest_chaos.services import postgres_service, redis_service, service_fixture

    redis = service_fixture(redis_service())          # fixture "redis", proxy "redis"
    postgres = service_fixture(postgres_service())

    def test_cache_survives_a_restart(redis, chaos):
        client = Redis.from_url(redis.url)            # through the proxy
        chaos.kill("redis")                           # SIGKILL (or docker kill)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_chaos.services.base import Service, ServiceError
from pytest_chaos.services.definitions import ServiceDefinition, open_service

if TYPE_CHECKING:
    from pytest_chaos.backends.client import ProxyInfo
    from pytest_chaos.backends.server import ToxiproxyServer

SCOPES = ("session", "package", "module", "class", "function")

# Fixture names of the services declared with service_fixture(), by service name: the plugin
# launches its engine early for tests that may use one.
DECLARED: dict[str, set[str]] = {}
# The attribute that marks a fixture function as a service's (its value: the definition).
SERVICE_TAG = "_pytest_chaos_service"


def service_fixtures_of(
    item: pytest.Item,
) -> list[tuple[str, ServiceDefinition, RunningService | None]]:
    """The service fixtures `item` uses (directly or through other fixtures), as (fixture
    name, definition, the RunningService that fixture already holds or None). Resolved the way
    pytest resolves them for this item, so that a same-named fixture of another directory, or
    an unrelated fixture that merely shares a name, is not taken for it."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    found = []
    for name in getattr(item, "fixturenames", ()):
        definitions = info.name2fixturedefs.get(name)
        if not definitions:
            continue
        fixturedef = definitions[-1]  # the one that applies to this item
        definition = getattr(fixturedef.func, SERVICE_TAG, None)
        if not isinstance(definition, ServiceDefinition):
            continue
        cached = fixturedef.cached_result
        value = cached[0] if cached is not None and cached[2] is None else None
        running = value if isinstance(value, RunningService) and not value.closed else None
        found.append((name, definition, running))
    return found


class RunningService:
    """A started service and the proxy in front of it (the value of a service fixture).

    `host`, `port`, `address` and `url` go through the proxy (give them to the code under
    test, so network faults reach it); `direct` and `direct_url` bypass it. The process
    operations act on the service itself and keep the proxy pointed at it.
    """

    def __init__(
        self,
        definition: ServiceDefinition,
        service: Service,
        server: ToxiproxyServer,
        fixture: str | None = None,
    ) -> None:
        self.definition = definition
        self.service = service
        self.server = server
        self.fixture = fixture or definition.name  # the fixture that yields it
        self.closed = False  # its fixture has ended: nothing may start it again
        # The host name it is reached by (service_fixture(..., host=...)), resolving to its
        # proxy in-process and in the plugin's DNS server; None: the proxy's address.
        self.hostname: str | None = None
        self.proxy: ProxyInfo = self.point_proxy()

    # -- addresses
    @property
    def name(self) -> str:
        """The service's name, which is also its proxy's."""
        return self.service.name

    @property
    def provider(self) -> str:
        """Who runs it: `local`, `container` or `external`."""
        return self.service.provider

    @property
    def host(self) -> str:
        """The proxy's host: give this to the code under test."""
        return self.hostname or self.proxy.host

    @property
    def port(self) -> int:
        """The proxy's port: give this to the code under test."""
        return self.proxy.port

    @property
    def address(self) -> str:
        """`host:port` of the proxy."""
        return f"{self.host}:{self.proxy.port}"

    @property
    def direct(self) -> str:
        """`host:port` of the server itself, around the proxy."""
        return self.service.address

    @property
    def url(self) -> str:
        """The service's URL through the proxy (e.g. `redis://127.0.0.1:41234/0`)."""
        return self._url(self.host, self.proxy.port)

    @property
    def direct_url(self) -> str:
        """The service's URL around the proxy."""
        return self._url(self.service.host, self.service.port)

    def _url(self, host: str, port: int) -> str:
        if self.definition.url is None:
            raise ServiceError(self.name, "its definition has no url template; use .address")
        return self.definition.url.format(host=host, port=port)

    # -- process operations
    @property
    def running(self) -> bool:
        """True while the server process (or container) runs, paused included."""
        return self.service.running

    @property
    def paused(self) -> bool:
        """True while the server is frozen by `pause()`."""
        return self.service.paused

    def kill(self) -> None:
        """SIGKILL (docker kill): the server dies at once, connections are reset."""
        self.service.kill()

    def terminate(self) -> None:
        """SIGTERM, and wait until it has exited."""
        self.service.terminate()

    def stop(self) -> None:
        """Graceful stop (the server's own shutdown signal; docker stop)."""
        self.service.stop()

    def pause(self) -> None:
        """Freeze it (SIGSTOP, docker pause): connections stay open, nothing answers."""
        self.service.pause()

    def resume(self) -> None:
        """Thaw what `pause()` froze."""
        self.service.resume()

    def start(self) -> None:
        """Start it again after stop/kill/terminate: same port, same data where it can."""
        self._require_open("start")
        self.service.start()
        self.point_proxy()

    def restart(self) -> None:
        """Stop and start the server again (same port, same data); its proxy follows it."""
        self._require_open("restart")
        self.service.restart()
        self.point_proxy()

    def ensure_serving(self) -> None:
        """Resume it if paused, start it if it is down; nothing if it serves, or if its fixture
        has ended (a fault reverted after that must not bring it back)."""
        if self.closed:
            return
        was_down = not self.service.running
        self.service.ensure_serving()
        if was_down:
            self.point_proxy()  # a container started again may have a new network address

    def _require_open(self, operation: str) -> None:
        if self.closed:
            raise ServiceError(
                self.name, f"cannot {operation}(): its fixture has ended and closed it"
            )

    # -- the proxy
    def _upstream(self) -> str:
        from pytest_chaos.services.container import ContainerService

        # A Toxiproxy in a container reaches a containerised service on the Docker network
        # (its address there may change when the container is started again).
        if self.server.backend == "container" and isinstance(self.service, ContainerService):
            return f"{self.service.container_ip}:{self.service.container_port}"
        if (
            self.server.backend == "container"
            and self.server.container_network == "bridge"
            and self.service.provider == "local"
        ):
            raise ServiceError(
                self.name,
                f"runs on this machine's loopback ({self.service.address}), which the Toxiproxy"
                " container on Docker's bridge network cannot reach; set"
                " chaos_toxiproxy_network = host, or run the service in a container"
                " (--chaos-services container)",
            )
        return self.service.address

    def point_proxy(self) -> ProxyInfo:
        """Point the proxy of this service's name at it (creating the proxy if needed)."""
        from pytest_chaos.backends.client import ToxiproxyError

        upstream = self._upstream()
        existing = self.server.proxies().get(self.name)
        try:
            if existing is not None:
                self.proxy = self.server.point(self.name, upstream, existing)
            else:
                self.proxy = self.server.create_proxy(self.name, upstream)
        except ToxiproxyError as error:
            raise ServiceError(
                self.name, f"cannot point its proxy at {upstream}: {error}"
            ) from None
        return self.proxy

    def __repr__(self) -> str:
        return (
            f"<RunningService {self.name!r} ({self.provider}) at {self.address} -> {self.direct}>"
        )


class ServiceRegistry:
    """The services running in this session, and those the current test uses, by name: what
    `chaos.kill("redis")` acts on, and what each proxy points at.

    Several services may share a name when different directories declare their own (each
    `conftest.py` its "redis"): the proxy of that name points at the one the running test
    uses. Within one test, a name must mean one service.
    """

    def __init__(self) -> None:
        self.live: list[RunningService] = []
        self.current: dict[str, RunningService] = {}
        self.setting_up = False  # a test's setup is running: services made now are its own

    def add(self, service: RunningService) -> None:
        """A service just started; during a test's setup, one of that test's."""
        if self.setting_up:
            other = self.current.get(service.name)
            if other is not None and other is not service:
                raise _two_of_a_name(other, service)
            self.current[service.name] = service
        self.live.append(service)

    def remove(self, service: RunningService) -> None:
        """Forget a service whose fixture has ended."""
        if service in self.live:
            self.live.remove(service)
        if self.current.get(service.name) is service:
            del self.current[service.name]

    def others_named(self, service: RunningService) -> list[RunningService]:
        """The other live services of `service`'s name (from other directories)."""
        return [other for other in self.live if other.name == service.name and other is not service]

    def begin_test(self, services: list[RunningService]) -> None:
        """Before a test's fixtures are set up: `services` (those its fixtures already hold)
        become the current ones, each serving again (started or resumed, whatever an earlier
        test did to it) and its proxy pointed at it. Services its setup creates join them.
        ServiceError names what cannot be done."""
        chosen: dict[str, RunningService] = {}
        for service in services:
            other = chosen.setdefault(service.name, service)
            if other is not service:
                raise _two_of_a_name(other, service)
        self.current = chosen
        self.setting_up = True
        for service in chosen.values():
            try:
                service.ensure_serving()  # first: a stopped container has no address to point at
                service.point_proxy()  # cheap when it already points there
            except ServiceError as error:
                raise ServiceError(service.name, f"cannot serve this test: {error.cause}") from None

    def end_setup(self) -> None:
        """The test's setup is over: services started from now on are not switched to."""
        self.setting_up = False

    def get(self, name: str) -> RunningService:
        """The service called `name` that the current test uses, or the only live one."""
        if name in self.current:
            return self.current[name]
        matching = [service for service in self.live if service.name == name]
        if len(matching) == 1:
            return matching[0]
        if matching:
            cause = (
                f"runs {len(matching)} times in this session (fixtures"
                f" {', '.join(repr(s.fixture) for s in matching)}) and this test uses none of"
                " them; request the fixture of the one you mean"
            )
        else:
            cause = (
                f"is not running in this session (running: {', '.join(self.names()) or 'none'});"
                " declare it with service_fixture() in conftest.py and request its fixture in"
                " the test"
            )
        raise ServiceError(name, cause)

    def names(self) -> list[str]:
        """The names of the live services, sorted."""
        return sorted({service.name for service in self.live})


def _two_of_a_name(first: RunningService, second: RunningService) -> ServiceError:
    return ServiceError(
        first.name,
        f"this test uses two services of that name (fixtures {first.fixture!r} and"
        f" {second.fixture!r}); a service's name is its proxy's, so give one of them another"
        " name",
    )


def registry_of(config: pytest.Config) -> ServiceRegistry:
    """The session's service registry (created on first use)."""
    from pytest_chaos._keys import services_key

    registry = config.stash.get(services_key, None)
    if registry is None:
        registry = config.stash[services_key] = ServiceRegistry()
    return registry


def service_fixture(
    definition: ServiceDefinition,
    *,
    scope: str = "session",
    name: str | None = None,
    host: str | None = None,
) -> Callable[..., Any]:
    """A pytest fixture (named `name`, default the service's name) that starts `definition`
    with the chosen provider, puts a proxy of the service's name in front of it, and yields a
    `RunningService`; the service is stopped and its files or container removed when the
    scope ends. Assign it in a conftest.py: `redis = service_fixture(redis_service())`.

    With `host` (e.g. "cache.internal"), the service is reached by that name for as long as
    the fixture lives: it resolves to the proxy in-process and in the plugin's DNS server, and
    the service's `.host`, `.address` and `.url` use it, so `dns_failure` faults reach it."""
    if not isinstance(definition, ServiceDefinition):
        raise TypeError(
            "service_fixture() takes a ServiceDefinition (e.g. redis_service(), or"
            f" ServiceDefinition(name, local=..., container=...)), got {definition!r}"
        )
    if scope not in SCOPES:
        raise ValueError(
            f"service_fixture(): scope must be one of {', '.join(SCOPES)}, got {scope!r}"
        )
    if host is not None:
        from pytest_chaos.faults import dns_name_problem

        problem = dns_name_problem(host, pattern=False)
        if problem is not None:
            raise ValueError(
                f"service_fixture(): host must be a host name (e.g. 'cache.internal'), got"
                f" {host!r}: {problem}"
            )
    fixture_name = name or definition.name
    DECLARED.setdefault(definition.name, set()).add(fixture_name)

    def run_service(
        request: pytest.FixtureRequest, toxiproxy: ToxiproxyServer
    ) -> Iterator[RunningService]:
        if host is None:
            yield from _run(request, toxiproxy, definition, fixture_name, scope)
        else:
            yield from _named(
                _run(request, toxiproxy, definition, fixture_name, scope), request, host
            )

    setattr(run_service, SERVICE_TAG, definition)  # how the plugin finds service fixtures
    run_service.__name__ = fixture_name
    run_service.__doc__ = f"The {definition.name!r} service, started by pytest-chaos ({scope})."
    return pytest.fixture(scope=scope, name=fixture_name)(run_service)  # type: ignore[call-overload,no-any-return]


def _run(
    request: pytest.FixtureRequest,
    toxiproxy: ToxiproxyServer,
    definition: ServiceDefinition,
    fixture_name: str,
    scope: str,
) -> Iterator[RunningService]:
    from pytest_chaos._keys import config_key
    from pytest_chaos.backends.client import ToxiproxyError

    settings = request.config.stash[config_key]
    registry = registry_of(request.config)
    # pytest.fail() is called outside the except blocks: the report shows our message only.
    problem: str | None = None
    service: Service | None = None
    try:
        service = open_service(
            definition,
            providers=settings.services,
            images=settings.images,
            external=settings.external,
        )
        service.start()
    except ServiceError as error:
        problem = f"pytest-chaos: {error}"
        if (
            service is not None
            and service.provider == "container"
            and definition.local is not None
            and definition.provider is None
            and settings.services == "auto"
        ):
            # Docker answered, so auto chose it; the local binary may still be the way.
            problem += "; to run it from the local binary instead: --chaos-services local"
    if problem is not None or service is None:
        pytest.fail(
            problem or f"pytest-chaos: service {definition.name!r}: not started", pytrace=False
        )
    try:
        running = RunningService(definition, service, toxiproxy, fixture_name)
        registry.add(running)
    except ServiceError as error:
        problem = f"pytest-chaos: {error}"
    except ToxiproxyError as error:
        problem = (
            f"pytest-chaos: service {definition.name!r}: cannot put its proxy in front: {error}"
        )
    finally:
        if problem is not None:
            service.close()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        yield running
    finally:
        # Closed first: a fault reverted after this (the chaos fixture's teardown may run
        # later) must not start the service again.
        running.closed = True
        registry.remove(running)
        try:
            if (
                scope != "session"
                and definition.name in toxiproxy.created
                and not registry.others_named(running)
            ):
                # A proxy made for a shorter-lived service goes with it, so that the next
                # instance (on another port) gets a fresh one.
                toxiproxy.client.delete_proxy(definition.name)
                toxiproxy.created.discard(definition.name)
        finally:
            service.close()


def _named(
    running: Iterator[RunningService], request: pytest.FixtureRequest, host: str
) -> Iterator[RunningService]:
    """The service of `running`, reached by the name `host` while it runs."""
    from pytest_chaos.dns.session import session_of

    for service in running:
        session = session_of(request.config)
        assert session is not None
        handle = session.add_name(
            host, addresses=(service.proxy.host,), source=f"service {service.name!r}"
        )
        service.hostname = host
        try:
            yield service
        finally:
            service.hostname = None
            handle.revert()
