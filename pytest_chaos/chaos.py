"""The `chaos` fixture's object: proxies by name, faults as context managers, events, timeline.

Everything a test changes through it is reverted when the test ends, passed or failed. Its
fault methods (`chaos.latency(...)`, ...) are derived from the fault classes in `faults.py`,
so they take exactly the markers' arguments.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, overload

import pytest_chaos.dns.applier  # noqa: F401  (registers how DNS failures are applied)
import pytest_chaos.packet_faults as _packet_faults  # noqa: F401  (registers their appliers)
from pytest_chaos.apply import AppliedFault, applier_for, known
from pytest_chaos.backends.client import FeatureUnavailable, ProxyInfo, ToxiproxyError
from pytest_chaos.backends.server import ToxicNames, ToxiproxyServer
from pytest_chaos.events import Event, for_proxy, parse_events
from pytest_chaos.faults import (
    Bandwidth,
    Corrupt,
    DnsFailure,
    Down,
    Duplicate,
    Fault,
    FaultError,
    HttpAbort,
    HttpDelay,
    HttpError,
    Latency,
    LimitData,
    PacketLoss,
    RawToxic,
    Reorder,
    ResetPeer,
    Slicer,
    SlowClose,
    Stall,
    Stream,
    build_fault,
    python_signature,
)
from pytest_chaos.http import applier as _http_applier  # noqa: F401  (registers its applier)
from pytest_chaos.report.timeline import Timeline

if TYPE_CHECKING:
    from pytest_chaos.dns.lookups import Lookup
    from pytest_chaos.dns.session import DnsServerInfo, DnsSession, NameHandle
    from pytest_chaos.load import Load
    from pytest_chaos.schedules import Application, Schedule, Step
    from pytest_chaos.services.fixtures import RunningService, ServiceRegistry

P = ParamSpec("P")
# A sequence number past any event: the answer is empty but says where the log is now.
AFTER_EVERYTHING = 2**62


class FaultMethod(Generic[P]):
    """`chaos.<kind>(...)`: the fault class's own signature, returning a `FaultContext`.

    Bad arguments raise FaultError from the caller's line, never from inside the plugin."""

    def __init__(self, fault_type: Callable[P, Fault]) -> None:
        self.fault_type: type[Fault] = fault_type  # type: ignore[assignment]

    @overload
    def __get__(self, chaos: None, owner: type[Chaos]) -> FaultMethod[P]: ...
    @overload
    def __get__(self, chaos: Chaos, owner: type[Chaos]) -> Callable[P, FaultContext]: ...
    def __get__(
        self, chaos: Chaos | None, owner: type[Chaos]
    ) -> FaultMethod[P] | Callable[P, FaultContext]:
        if chaos is None:
            return self
        fault_type = self.fault_type

        def method(*args: P.args, **kwargs: P.kwargs) -> FaultContext:
            __tracebackhide__ = True
            problem: str | None = None
            try:
                fault = build_fault(fault_type, args, kwargs)
            except FaultError as error:
                problem = str(error)
            if problem is not None:
                raise FaultError(problem)
            return chaos.fault(fault)

        method.__name__ = fault_type.kind
        method.__doc__ = fault_type.__doc__
        method.__signature__ = python_signature(fault_type)  # type: ignore[attr-defined]
        return method


class Chaos:
    """Fault injection for one test (the `chaos` fixture)."""

    latency = FaultMethod(Latency)
    bandwidth = FaultMethod(Bandwidth)
    stall = FaultMethod(Stall)
    reset_peer = FaultMethod(ResetPeer)
    slow_close = FaultMethod(SlowClose)
    slicer = FaultMethod(Slicer)
    limit_data = FaultMethod(LimitData)
    dependency_down = FaultMethod(Down)
    dns_failure = FaultMethod(DnsFailure)
    packet_loss = FaultMethod(PacketLoss)
    duplicate = FaultMethod(Duplicate)
    reorder = FaultMethod(Reorder)
    corrupt = FaultMethod(Corrupt)

    # The Hypothesis example the record is of (see begin_example); None outside Hypothesis.
    example_key: object = None
    http_error = FaultMethod(HttpError)
    http_delay = FaultMethod(HttpDelay)
    http_abort = FaultMethod(HttpAbort)

    def __init__(
        self,
        server: ToxiproxyServer,
        seed: int,
        services: Callable[[], ServiceRegistry | None] | None = None,
        *,
        test_seed: int | None = None,
        replay: str | None = None,
        dns: Callable[[bool], DnsSession | None] | None = None,
    ) -> None:
        self.server = server
        self.client = server.client
        self.seed = seed
        self.test_seed = seed if test_seed is None else test_seed
        self._services = services
        # The session's DNS: dns(True) makes it on first use, dns(False) only looks.
        self._dns = dns
        self._names: list[NameHandle] = []
        self._applied: list[AppliedFault] = []
        self._loads: list[Load] = []
        self._events_since = 0
        self._has_events = self.client.engine() is not None
        server.toxic_names.begin_test()
        if self._has_events:
            # Draws from here on depend on this test's seed, not on the tests before it.
            self.client.set_seed(self.test_seed)
            # Start from now without reading the history: ask for events past any sequence
            # number; the answer is empty but carries the current last sequence number.
            _, self._events_since = self.client.events(since=AFTER_EVERYTHING)
        self.started_at = time.monotonic()
        self._timeline = Timeline(self.started_at, seed, replay=replay)

    @property
    def toxic_names(self) -> ToxicNames:
        """The session's toxic names (numbered from 1 again in every test)."""
        return self.server.toxic_names

    # -- proxies
    def proxy(
        self,
        name: str,
        upstream: str | None = None,
        *,
        listen: str = "127.0.0.1:0",
        protocol: str | None = None,
    ) -> ProxyInfo:
        """The proxy called `name`, created if it does not exist, listening on `listen`
        (default: a free loopback port; a Toxiproxy in a container needs e.g. "0.0.0.0:26379").

        Proxies live for the whole session, so clients made in other fixtures keep working;
        with `upstream` (`host:port`), an existing proxy is pointed at it. `protocol` is "tcp"
        (the default for a new proxy) or "udp": a UDP proxy, with a session per client
        address (the pytest-chaos engine only); given, an existing proxy must have it.
        """
        __tracebackhide__ = True
        problem = None if upstream is None else _address_problem("upstream", upstream)
        problem = problem or _address_problem("listen", listen)
        problem = problem or self._protocol_problem(protocol)
        if problem is not None:
            raise FaultError(f"chaos.proxy({name!r}): {problem}")
        proxies = self.client.proxies()
        existing = proxies.get(name)
        if existing is not None and protocol is not None and existing.protocol != protocol:
            raise FaultError(
                f"chaos.proxy({name!r}, protocol={protocol!r}): the proxy exists as a"
                f" {existing.protocol.upper()} proxy, and a proxy keeps its protocol; name"
                " the other one differently"
            )
        if existing is None:
            if upstream is None:
                raise FaultError(
                    f"no proxy named {name!r}; pass upstream='host:port' to create it"
                    f" (known proxies: {known(proxies)})"
                )
            return self.server.create_proxy(
                name, upstream, listen=listen, protocol=protocol or "tcp"
            )
        if upstream is not None:
            return self.server.point(name, upstream, existing)
        return existing

    def _protocol_problem(self, protocol: str | None) -> str | None:
        """Why a proxy of `protocol` cannot be had here (a bad value, or UDP on a plain
        Toxiproxy), or None."""
        if protocol not in (None, "tcp", "udp"):
            return f"protocol must be 'tcp' or 'udp', got {protocol!r}"
        if protocol == "udp" and not self._has_events:
            return (
                f"UDP proxies need the pytest-chaos engine; the {self.server.backend} backend at"
                f" {self.server.url} is a plain Toxiproxy, which proxies TCP only. Use the"
                " embedded engine (--chaos-backend embedded, the default), or run `pytest-chaos"
                " serve` and point --toxiproxy-url at it"
            )
        return None

    # -- faults
    def check_target(self, fault: Fault, proxies: dict[str, ProxyInfo] | None = None) -> None:
        """Raise FaultError, naming the known proxies (or services, for a process fault), if
        `fault`'s target is not one."""
        __tracebackhide__ = True
        applier_for(fault).check_target(fault, self, proxies)

    def inject(self, fault: Fault) -> AppliedFault:
        """Apply `fault` until `revert()` is called on the result, or the test ends."""
        __tracebackhide__ = True
        self.check_target(fault)
        problem: str | None = None
        try:
            applied = applier_for(fault).apply(fault, self)
        except ToxiproxyError as error:
            # A request the server turned down (an unknown toxic type, an attribute out of
            # range) is the test's mistake: say so without the client's traceback.
            if not 400 <= error.status < 500:
                raise
            problem = f"{fault.kind}: the server refused {fault}: {error.message}"
        except _service_error() as error:
            action = getattr(fault, "mode", "apply")
            problem = f"{fault.kind}: cannot {action} {fault.target!r}: {error.cause}"  # type: ignore[attr-defined]
        if problem is not None:
            raise FaultError(problem)
        self._applied.append(applied)
        self._timeline.faults.append(applied)
        return applied

    def fault(self, fault: Fault) -> FaultContext:
        """Apply `fault` for the body of a `with` block."""
        return FaultContext(self, fault)

    def toxic(
        self,
        target: str,
        type: str,
        *,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        **attributes: int,
    ) -> FaultContext:
        """Any Toxiproxy toxic by type name, with raw integer attributes."""
        __tracebackhide__ = True
        problem: str | None = None
        try:
            fault = build_fault(
                RawToxic, (target, type), {"stream": stream, "toxicity": toxicity, **attributes}
            )
        except FaultError as error:
            problem = str(error)
        if problem is not None:
            raise FaultError(problem)
        return self.fault(fault)

    # -- faults for a block, and Hypothesis examples
    def apply(
        self,
        faults: Fault | Schedule | Iterable[Fault] | Iterable[Step],
        *,
        seed: int | None = None,
    ) -> Application:
        """`with chaos.apply(x):` applies a fault, an iterable of faults (all at once) or a
        `Schedule` (each step at its offset, on a timer) for the block, and reverts them all at
        its end. Inside a Hypothesis example, the example's first block seeds the engine (with
        `seed`, the schedule's seed, or one drawn from the example) and starts a fresh record;
        see `pytest_chaos.schedules`."""
        __tracebackhide__ = True
        from pytest_chaos.schedules import Application

        return Application(self, faults, seed=seed)

    def begin_example(self, seed: int | None, *, key: object, note: str | None = None) -> None:
        """Start the record of one Hypothesis example (`key`: its build context): the engine
        seeded with `seed` and its connections numbered from 1 again, toxic names numbered
        afresh, and the timeline and events from now only, so that a failing test shows the
        final (shrunk) example."""
        self.example_key = key
        self.toxic_names.begin_example()
        if self._has_events:
            if seed is not None:
                self.client.set_seed(seed)
            _, self._events_since = self.client.events(since=AFTER_EVERYTHING)
        self._applied = [applied for applied in self._applied if applied.active]
        self.started_at = time.monotonic()
        self._timeline = Timeline(
            self.started_at,
            self.test_seed if seed is None else seed,
            note=note,
            replay=self._timeline.replay,
            origin="example",
        )

    # -- services
    @property
    def services(self) -> ServiceRegistry | None:
        """The session's running services (None while none was declared)."""
        return self._services() if self._services is not None else None

    def service(self, name: str) -> RunningService:
        """The running service called `name` (declared with service_fixture in conftest.py)."""
        __tracebackhide__ = True
        problem: str | None = None
        try:
            return self._lookup(name)
        except _service_error() as error:
            problem = str(error)
        raise FaultError(problem)

    def service_for(self, fault: Down) -> RunningService:
        """The service a process fault acts on (FaultError saying why there is none)."""
        __tracebackhide__ = True
        problem: str | None = None
        try:
            return self._lookup(fault.target)
        except _service_error() as error:
            problem = (
                f"{fault.kind}: mode {fault.mode!r} acts on a service started by pytest-chaos,"
                f" and {fault.target!r} {error.cause}"  # type: ignore[attr-defined]
            )
        raise FaultError(problem)

    def _lookup(self, name: str) -> RunningService:
        """The service `name` of this test (ServiceError saying why there is none)."""
        from pytest_chaos.services.fixtures import ServiceRegistry

        # With no service declared there is no registry yet: an empty one says the same.
        return (self.services or ServiceRegistry()).get(name)

    def kill(self, target: str) -> ProcessFault:
        """SIGKILL the service now (docker kill for a container). It is started again (same
        port, same data) at the end of a `with` block, on `.revert()`, or when the test ends."""
        __tracebackhide__ = True
        return ProcessFault(self.inject(Down(target, mode="kill")))

    def terminate(self, target: str) -> ProcessFault:
        """SIGTERM the service now and wait until it has exited; started again like kill()."""
        __tracebackhide__ = True
        return ProcessFault(self.inject(Down(target, mode="terminate")))

    def stop(self, target: str) -> ProcessFault:
        """Stop the service gracefully now; started again like kill()."""
        __tracebackhide__ = True
        return ProcessFault(self.inject(Down(target, mode="stop")))

    def pause(self, target: str) -> ProcessFault:
        """Freeze the service now (SIGSTOP, docker pause): its connections stay open and
        nothing answers. Resumed at the end of a `with` block, on `.revert()`, or at test end."""
        __tracebackhide__ = True
        return ProcessFault(self.inject(Down(target, mode="pause")))

    def restart(self, target: str) -> None:
        """Stop the service gracefully and start it again now (same port, same data), waiting
        until it is ready; its proxy keeps pointing at it. The timeline shows it as a `stop`
        applied and reverted."""
        __tracebackhide__ = True
        self.inject(Down(target, mode="stop")).revert()

    # -- load
    def load(
        self,
        call: Callable[[], Any],
        *,
        concurrency: int = 1,
        rate: float | None = None,
        duration: float | None = None,
        stop_timeout: float = 2.0,
    ) -> Load:
        """A workload across faults: `call()` made over and over in the background for the
        body of a `with` block (on `concurrency` threads) or an `async with` block (asyncio
        tasks, for an `async def` call), each call's start, latency and outcome recorded and
        tagged with the faults active meanwhile.

        `rate`: at most that many calls per second in all (None: as fast as the workers go);
        `duration`: seconds the load runs, the block's end waiting for the rest (None: until
        the block ends). Calls still running `stop_timeout` seconds after the end are
        recorded as hung and not waited on. Read it with `load.stats(during=...)` and
        `load.recovery_time()`; it also goes to `--chaos-report` and `--chaos-html`.
        """
        __tracebackhide__ = True
        from pytest_chaos.load import Load

        created = Load(
            call,
            concurrency=concurrency,
            rate=rate,
            duration=duration,
            stop_timeout=stop_timeout,
            faults=self,
        )
        self._loads.append(created)
        return created

    @property
    def loads(self) -> list[Load]:
        """The loads this test made, oldest first."""
        return list(self._loads)

    # -- what happened
    def events(self, proxy: str | None = None) -> list[Event]:
        """What the engine saw since this test started, optionally for one proxy."""
        if not self._has_events:
            raise FeatureUnavailable(
                f"chaos.events() needs the pytest-chaos engine; the {self.server.backend} backend"
                f" at {self.server.url} is a plain Toxiproxy"
            )
        self._collect_events()
        return for_proxy(self._timeline.events, proxy)

    def timeline(self) -> Timeline:
        """Faults applied and reverted, and what the engine saw, relative to the test start."""
        self._attach_dns()
        if self._has_events:
            self._collect_events()
        else:
            self._timeline.note = (
                f"(the {self.server.backend} backend records no connection events)"
            )
        return self._timeline

    def timeline_without_events(self, note: str) -> Timeline:
        """The faults alone, with `note` saying why the engine's events are missing."""
        self._attach_dns()
        self._timeline.note = note
        return self._timeline

    def _collect_events(self) -> None:
        new, self._events_since = self.client.events(since=self._events_since)
        self._timeline.events.extend(parse_events(new))

    def revert_all(self) -> None:
        """Undo every fault still applied, newest first (run when the test ends). A load still
        running is stopped first, so that the test's end is not recorded as its own; the
        threads of its hung calls, which the reverts usually free, are waited for last."""
        for load in self._loads:
            load.stop()
        errors: list[Exception] = []
        while self._applied:
            try:
                self._applied.pop().revert()
            except Exception as error:  # every fault gets its chance to revert
                errors.append(error)
        while self._names:
            self._names.pop().revert()
        for load in self._loads:
            load.release()
        if errors:
            raise errors[0]

    @property
    def applied(self) -> list[AppliedFault]:
        """Every fault this test applied, reverted or not, oldest first."""
        return list(self._timeline.faults)

    # -- HTTP in-process
    def http_app(self, name: str, app: Any) -> Any:
        """`app` (ASGI or WSGI) wrapped in pytest-chaos's middleware under `name`: the HTTP
        faults targeting `name` (markers and methods) act on its requests, in-process."""
        from pytest_chaos.http import wrap_app

        return wrap_app(app, name)

    # -- DNS
    def dns_session(self) -> DnsSession:
        """The session's DNS names, faults and server (made on first use)."""
        session = self._dns(True) if self._dns is not None else None
        if session is None:
            raise FeatureUnavailable(
                "DNS needs the chaos fixture of a pytest run (this chaos object has no session)"
            )
        self._attach_dns()
        return session

    def resolve(self, name: str, to: str | ProxyInfo | RunningService) -> NameHandle:
        """Make `name` resolve to `to` for this test (or a `with` block, or until
        `.revert()`): a proxy (its name, the `chaos.proxy()` object, or a service) or an IP
        address. In-process lookups (`socket.getaddrinfo`, asyncio, requests, httpx,
        redis-py...) and the plugin's DNS server answer it; the client keeps its port."""
        __tracebackhide__ = True
        from pytest_chaos.dns.session import check_name

        problem: str | None = None
        try:
            check_name(f"chaos.resolve({name!r})", name)
            address, source = self._resolve_target(name, to)
        except FaultError as error:
            problem = str(error)
        if problem is not None:
            raise FaultError(problem)
        handle = self.dns_session().add_name(name, addresses=(address,), source=source)
        self._names.append(handle)
        return handle

    def _resolve_target(self, name: str, to: object) -> tuple[str, str]:
        """(IP address, what it is) for `chaos.resolve`'s `to`."""
        from pytest_chaos.dns.session import is_address

        proxy = getattr(to, "proxy", None)  # a RunningService
        if isinstance(proxy, ProxyInfo):
            return proxy.host, f"service {getattr(to, 'name', proxy.name)!r}"
        if isinstance(to, ProxyInfo):
            return to.host, f"proxy {to.name!r}"
        if isinstance(to, str) and is_address(to.strip("[]")):
            return to.strip("[]"), "address"
        what = f"chaos.resolve({name!r})"
        if isinstance(to, str):
            host, sep, port = to.rpartition(":")
            if sep and port.isdigit() and is_address(host.strip("[]")):
                raise FaultError(
                    f"{what}: to={to!r} has a port; a name resolves to an address only (the"
                    f" client brings the port: give to={host!r})"
                )
            proxies = self.client.proxies()
            if to in proxies:
                return proxies[to].host, f"proxy {to!r}"
            raise FaultError(
                f"{what}: to={to!r} is neither an IP address nor a known proxy; known proxies:"
                f" {known(proxies)}"
            )
        raise FaultError(
            f"{what}: to must be a proxy (its name, chaos.proxy()'s result or a service) or an"
            f" IP address, got {to!r}"
        )

    @property
    def dns_server(self) -> DnsServerInfo:
        """The plugin's DNS server (UDP and TCP on one loopback port, started on first use):
        `.host`, `.port`, `.nameserver` ("host:port"). It answers the names of
        `chaos.resolve`, `chaos_hosts` and services, fails as the `dns_failure` faults say,
        and refuses other names (or forwards them to `chaos_dns_forward`)."""
        return self.dns_session().server()

    def lookups(self, name: str | None = None) -> list[Lookup]:
        """The DNS lookups of this test (in-process and at the DNS server), oldest first,
        optionally of one name."""
        from pytest_chaos.dns.lookups import DnsTimeline
        from pytest_chaos.faults import normalize_dns_name

        session = self._dns(False) if self._dns is not None else None
        if session is None:
            return []
        found = DnsTimeline(session.log, self.started_at).lookups()
        if name is None:
            return found
        wanted = normalize_dns_name(name)
        return [lookup for lookup in found if lookup.name == wanted]

    def _attach_dns(self) -> None:
        """Show the session's DNS events in this test's timeline, once there is a session."""
        session = self._dns(False) if self._dns is not None else None
        if session is None:
            return
        from pytest_chaos.dns.lookups import DnsTimeline

        if not any(isinstance(source, DnsTimeline) for source in self._timeline.sources):
            self._timeline.sources.append(DnsTimeline(session.log, self.started_at))


class FaultContext:
    """`with chaos.latency(...) as applied:` applies the fault on entry, reverts it on exit.

    A class rather than a generator-based context manager so that a fault which cannot be
    applied is reported at the user's `with` line, without contextlib's frames.
    """

    def __init__(self, chaos: Chaos, fault: Fault) -> None:
        self.chaos = chaos
        self.fault = fault
        self.applied: AppliedFault | None = None

    def __enter__(self) -> AppliedFault:
        __tracebackhide__ = True
        self.applied = self.chaos.inject(self.fault)
        return self.applied

    def __exit__(self, *exc_info: object) -> None:
        if self.applied is not None:
            self.applied.revert()


class ProcessFault:
    """A process fault already applied by `chaos.kill(...)` and friends: use it as a plain
    call (reverted when the test ends), call `.revert()`, or use it in a `with` block to bring
    the service back at the block's end."""

    def __init__(self, applied: AppliedFault) -> None:
        self.applied = applied

    def revert(self) -> None:
        """Bring the service back to serving now (start it, or resume it)."""
        self.applied.revert()

    def __enter__(self) -> AppliedFault:
        return self.applied

    def __exit__(self, *exc_info: object) -> None:
        self.applied.revert()


def _service_error() -> type[Exception]:
    """The services' error class, without importing them in runs that declare none."""
    import sys

    module = sys.modules.get("pytest_chaos.services.base")
    return module.ServiceError if module is not None else _NoServiceError


class _NoServiceError(Exception):
    """Never raised: stands for ServiceError while the services are not loaded."""


def _address_problem(what: str, address: Any) -> str | None:
    """Why `address` is not a usable `host:port`, or None."""
    if not isinstance(address, str):
        return f"{what} must be 'host:port', got {address!r}"
    host, sep, port = address.rpartition(":")
    if not sep or (not host and what == "upstream"):
        return f"{what} must be 'host:port' (e.g. '127.0.0.1:6379'), got {address!r}: no port"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        return f"{what} must be 'host:port' with a port from 0 to 65535, got {address!r}"
    if what == "upstream" and int(port) == 0:
        return f"upstream port must be from 1 to 65535, got {address!r}"
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        return (
            f"{what} must be 'host:port'; an IPv6 host goes in brackets ('[::1]:6379'),"
            f" got {address!r}"
        )
    return None
