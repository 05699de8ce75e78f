"""The `chaos` fixture's object: proxies by name, faults as context managers, events, timeline.

Everything a test changes through it is reverted when the test ends, passed or failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_chaos.backends import ToxiproxyServer
from pytest_chaos.client import FeatureUnavailable, ProxyInfo, ToxiproxyError
from pytest_chaos.faults import (
    AppliedFault,
    Bandwidth,
    Down,
    Fault,
    FaultError,
    Latency,
    LimitData,
    RawToxic,
    ResetPeer,
    Slicer,
    SlowClose,
    Stall,
    apply_fault,
    apply_process_fault,
)
from pytest_chaos.timeline import Timeline

if TYPE_CHECKING:
    from pytest_chaos.services.fixtures import RunningService, ServiceRegistry

AFTER_EVERYTHING = 2**62


class Chaos:
    """Fault injection for one test (the `chaos` fixture)."""

    def __init__(
        self,
        server: ToxiproxyServer,
        seed: int,
        services: Callable[[], ServiceRegistry | None] | None = None,
    ) -> None:
        self.server = server
        self.client = server.client
        self._services = services
        self.started_at = time.monotonic()
        self._timeline = Timeline(self.started_at, seed)
        self._applied: list[AppliedFault] = []
        self._events_since = 0
        self._has_events = self.client.engine() is not None
        if self._has_events:
            # Start from now without reading the history: ask for events past any sequence
            # number; the answer is empty but carries the current last sequence number.
            _, self._events_since = self.client.events(since=AFTER_EVERYTHING)

    # -- proxies
    def proxy(
        self, name: str, upstream: str | None = None, *, listen: str = "127.0.0.1:0"
    ) -> ProxyInfo:
        """The proxy called `name`, created if it does not exist, listening on `listen`
        (default: a free loopback port; a Toxiproxy in a container needs e.g. "0.0.0.0:26379").

        Proxies live for the whole session, so clients made in other fixtures keep working;
        with `upstream`, an existing proxy is pointed at it.
        """
        __tracebackhide__ = True
        proxies = self.client.proxies()
        existing = proxies.get(name)
        if existing is None:
            if upstream is None:
                raise FaultError(
                    f"no proxy named {name!r}; pass upstream='host:port' to create it"
                    f" (known proxies: {_known(proxies)})"
                )
            return self.server.create_proxy(name, upstream, listen=listen)
        if upstream is not None:
            return self.server.point(name, upstream, existing)
        return existing

    # -- faults
    def check_target(self, fault: Fault, proxies: dict[str, ProxyInfo] | None = None) -> None:
        """Raise FaultError, naming the known proxies (or services, for a process fault), if
        `fault`'s target is not one."""
        __tracebackhide__ = True
        if isinstance(fault, Down) and fault.acts_on_process:
            self._service_for(fault)
            return
        proxies = self.client.proxies() if proxies is None else proxies
        if fault.target not in proxies:
            raise FaultError(
                f"{fault.name}: target {fault.target!r} names no known proxy; known proxies:"
                f" {_known(proxies)} (declare them with chaos_proxies in the ini file, or"
                " chaos.proxy(name, upstream=...))"
            )

    def inject(self, fault: Fault) -> AppliedFault:
        """Apply `fault` until `revert()` is called on the result, or the test ends."""
        __tracebackhide__ = True
        self.check_target(fault)
        if isinstance(fault, Down) and fault.acts_on_process:
            return self._record(self._apply_process_fault(fault))
        problem: str | None = None
        try:
            applied = apply_fault(fault, self.client, self.server.toxic_names)
        except ToxiproxyError as error:
            # A request the server turned down (an unknown toxic type, an attribute out of
            # range) is the test's mistake: say so without the client's traceback.
            if not 400 <= error.status < 500:
                raise
            problem = f"{fault.name}: the server refused {fault}: {error.message}"
        if problem is not None:
            raise FaultError(problem)
        return self._record(applied)

    def _record(self, applied: AppliedFault) -> AppliedFault:
        self._applied.append(applied)
        self._timeline.faults.append(applied)
        return applied

    # -- services
    @property
    def services(self) -> ServiceRegistry | None:
        """The session's running services (None while none was declared)."""
        return self._services() if self._services is not None else None

    def service(self, name: str) -> RunningService:
        """The running service called `name` (declared with service_fixture in conftest.py)."""
        __tracebackhide__ = True
        from pytest_chaos.services import ServiceError

        problem: str | None = None
        try:
            return self._lookup(name)
        except ServiceError as error:
            problem = str(error)
        raise FaultError(problem)

    def _service_for(self, fault: Down) -> RunningService:
        __tracebackhide__ = True
        from pytest_chaos.services import ServiceError

        problem: str | None = None
        try:
            return self._lookup(fault.target)
        except ServiceError as error:
            problem = (
                f"{fault.name}: mode {fault.mode!r} acts on a service started by pytest-chaos,"
                f" and {fault.target!r} {error.cause}"
            )
        raise FaultError(problem)

    def _lookup(self, name: str) -> RunningService:
        """The service `name` of this test (ServiceError saying why there is none)."""
        from pytest_chaos.services.fixtures import ServiceRegistry

        # With no service declared there is no registry yet: an empty one says the same.
        return (self.services or ServiceRegistry()).get(name)

    def _apply_process_fault(self, fault: Down) -> AppliedFault:
        __tracebackhide__ = True
        from pytest_chaos.services import ServiceError

        service = self._service_for(fault)
        problem: str | None = None
        try:
            return apply_process_fault(fault, service)
        except ServiceError as error:
            problem = f"{fault.name}: cannot {fault.mode} {fault.target!r}: {error.cause}"
        raise FaultError(problem)

    def kill(self, target: str) -> ProcessFault:
        """SIGKILL the service now (docker kill for a container). It is started again (same
        port, same data) at the end of a `with` block, on `.revert()`, or when the test ends."""
        __tracebackhide__ = True
        return ProcessFault(self.inject(Down(target=target, mode="kill")))

    def terminate(self, target: str) -> ProcessFault:
        """SIGTERM the service now and wait until it has exited; started again like kill()."""
        __tracebackhide__ = True
        return ProcessFault(self.inject(Down(target=target, mode="terminate")))

    def stop(self, target: str) -> ProcessFault:
        """Stop the service gracefully now; started again like kill()."""
        __tracebackhide__ = True
        return ProcessFault(self.inject(Down(target=target, mode="stop")))

    def pause(self, target: str) -> ProcessFault:
        """Freeze the service now (SIGSTOP, docker pause): its connections stay open and
        nothing answers. Resumed at the end of a `with` block, on `.revert()`, or at test end."""
        __tracebackhide__ = True
        return ProcessFault(self.inject(Down(target=target, mode="pause")))

    def restart(self, target: str) -> None:
        """Stop the service gracefully and start it again now (same port, same data), waiting
        until it is ready; its proxy keeps pointing at it. The timeline shows it as a `stop`
        applied and reverted."""
        __tracebackhide__ = True
        self.inject(Down(target=target, mode="stop")).revert()

    def fault(self, fault: Fault) -> FaultContext:
        """Apply `fault` for the body of a `with` block."""
        return FaultContext(self, fault)

    def latency(
        self,
        target: str,
        ms: int,
        *,
        jitter: int = 0,
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> FaultContext:
        """Delay data by `ms` milliseconds +/- `jitter` ms."""
        return self.fault(
            Latency(target=target, ms=ms, jitter=jitter, stream=stream, toxicity=toxicity)
        )

    def bandwidth(
        self, target: str, rate: int, *, stream: str = "downstream", toxicity: float = 1.0
    ) -> FaultContext:
        """Limit throughput to `rate` KB/s (1 KB = 1000 bytes); 0 stops data."""
        return self.fault(Bandwidth(target=target, rate=rate, stream=stream, toxicity=toxicity))

    def stall(
        self, target: str, *, timeout: int = 0, stream: str = "downstream", toxicity: float = 1.0
    ) -> FaultContext:
        """Swallow data; close after `timeout` ms without data (0: never)."""
        return self.fault(Stall(target=target, timeout=timeout, stream=stream, toxicity=toxicity))

    def reset_peer(
        self, target: str, *, timeout: int = 0, stream: str = "downstream", toxicity: float = 1.0
    ) -> FaultContext:
        """Reset connections (TCP RST) `timeout` ms after their first data."""
        return self.fault(
            ResetPeer(target=target, timeout=timeout, stream=stream, toxicity=toxicity)
        )

    def slow_close(
        self, target: str, delay: int, *, stream: str = "downstream", toxicity: float = 1.0
    ) -> FaultContext:
        """Hold each close back by `delay` ms."""
        return self.fault(SlowClose(target=target, delay=delay, stream=stream, toxicity=toxicity))

    def slicer(
        self,
        target: str,
        average_size: int,
        *,
        size_variation: int = 0,
        delay: int = 0,
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> FaultContext:
        """Cut data into writes of `average_size` +/- `size_variation` bytes, `delay` us apart."""
        return self.fault(
            Slicer(
                target=target,
                average_size=average_size,
                size_variation=size_variation,
                delay=delay,
                stream=stream,
                toxicity=toxicity,
            )
        )

    def limit_data(
        self, target: str, bytes: int, *, stream: str = "downstream", toxicity: float = 1.0
    ) -> FaultContext:
        """Close connections after `bytes` bytes in the stream."""
        return self.fault(LimitData(target=target, bytes=bytes, stream=stream, toxicity=toxicity))

    def dependency_down(self, target: str, *, mode: str = "refuse") -> FaultContext:
        """Make the dependency unreachable: through its proxy (`refuse`, `blackhole`,
        `reset`), or, for a service the plugin started, `kill`, `terminate`, `stop`, `pause`."""
        return self.fault(Down(target=target, mode=mode))

    def toxic(
        self,
        target: str,
        type: str,
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
        **attributes: int,
    ) -> FaultContext:
        """Any Toxiproxy toxic by type name, with raw attributes."""
        return self.fault(
            RawToxic(
                target=target,
                type=type,
                stream=stream,
                toxicity=toxicity,
                toxic_attributes=attributes,
            )
        )

    # -- what happened
    def events(self, proxy: str | None = None) -> list[dict[str, Any]]:
        """What the engine saw since this test started, optionally for one proxy."""
        if not self._has_events:
            raise FeatureUnavailable(
                f"chaos.events() needs the pytest-chaos engine; the {self.server.backend} backend"
                f" at {self.server.url} is a plain Toxiproxy"
            )
        self._collect_events()
        return [e for e in self._timeline.events if proxy is None or e.get("proxy") == proxy]

    def timeline(self) -> Timeline:
        """Faults applied and reverted, and what the engine saw, relative to the test start."""
        if self._has_events:
            self._collect_events()
        else:
            self._timeline.note = (
                f"(the {self.server.backend} backend records no connection events)"
            )
        return self._timeline

    def timeline_without_events(self, note: str) -> Timeline:
        """The faults alone, with `note` saying why the engine's events are missing."""
        self._timeline.note = note
        return self._timeline

    def _collect_events(self) -> None:
        new, self._events_since = self.client.events(since=self._events_since)
        self._timeline.events.extend(new)

    def revert_all(self) -> None:
        """Undo every fault still applied, newest first (run when the test ends)."""
        errors: list[Exception] = []
        while self._applied:
            try:
                self._applied.pop().revert()
            except Exception as error:  # every fault gets its chance to revert
                errors.append(error)
        if errors:
            raise errors[0]

    @property
    def applied(self) -> list[AppliedFault]:
        return list(self._timeline.faults)


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


def _known(proxies: dict[str, ProxyInfo]) -> str:
    return ", ".join(sorted(proxies)) or "none"
