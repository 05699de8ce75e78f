"""Applying faults: the one place that turns a fault value object into changes on its target,
and a handle whose `revert()` undoes exactly those changes, even when applying stopped halfway.

Each kind of fault has an `Applier` (registered for its class, found through the class's MRO):
toxics and proxy changes through the Toxiproxy API for faults on a proxy, process signals for
faults on a service. The `chaos` fixture, the markers and the strategies all go through
`applier_for(type(fault))`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from pytest_chaos.faults import Down, Fault, FaultError, RawToxic, ToxicFault

if TYPE_CHECKING:
    from pytest_chaos.backends.client import ProxyInfo, ToxiproxyClient
    from pytest_chaos.backends.server import ToxicNames


@dataclass
class AppliedFault:
    """What one application of a fault changed, and how to undo it."""

    fault: Fault
    applied_at: float
    reverted_at: float | None = None
    undo: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def revert(self) -> None:
        """Undo every change, newest first; changes already gone (e.g. after a reset) are fine.
        Every undo runs, whatever the others did; the first error is raised at the end."""
        from pytest_chaos.backends.client import ToxiproxyError

        if self.reverted_at is not None:
            return
        errors: list[Exception] = []
        while self.undo:
            undo = self.undo.pop()
            try:
                undo()
            except ToxiproxyError as error:
                if error.status != 404:
                    errors.append(error)
            except revert_errors() as error:
                errors.append(error)
        self.reverted_at = time.monotonic()
        if errors:
            raise errors[0]

    @property
    def active(self) -> bool:
        """True until the fault is reverted."""
        return self.reverted_at is None


def revert_errors() -> tuple[type[Exception], ...]:
    """What undoing a fault may raise: the API's errors, and the services' when a process
    fault was applied (their module is only imported by runs that declare services)."""
    from pytest_chaos.backends.client import ToxiproxyError

    services = sys.modules.get("pytest_chaos.services.base")
    return (ToxiproxyError, services.ServiceError) if services is not None else (ToxiproxyError,)


class Targets(Protocol):
    """What appliers need of the test's `chaos` object."""

    @property
    def client(self) -> ToxiproxyClient:
        """The Toxiproxy API client of the session's server."""
        ...

    @property
    def toxic_names(self) -> ToxicNames:
        """Where the names of the plugin's toxics come from."""
        ...

    def service_for(self, fault: Down) -> ServiceControl:
        """The running service a process fault acts on (FaultError saying why there is none)."""
        ...


class ServiceControl(Protocol):
    """What a process fault needs of a service (RunningService has it)."""

    def kill(self) -> None:
        """SIGKILL it (docker kill)."""
        ...

    def terminate(self) -> None:
        """SIGTERM it and wait until it has exited."""
        ...

    def stop(self) -> None:
        """Stop it gracefully."""
        ...

    def pause(self) -> None:
        """Freeze it (SIGSTOP, docker pause)."""
        ...

    def ensure_serving(self) -> None:
        """Bring it back to serving (start it, or resume it), however it was left."""
        ...


class Applier(Protocol):
    """How one kind of fault is checked against the known targets, then applied."""

    def check_target(
        self, fault: Fault, targets: Targets, proxies: dict[str, ProxyInfo] | None
    ) -> None:
        """Raise FaultError naming the known targets if the fault's target is not one."""
        ...

    def apply(self, fault: Fault, targets: Targets) -> AppliedFault:
        """Apply the fault; on failure undo what was done and raise."""
        ...


APPLIERS: dict[type[Fault], Applier] = {}
ApplierT = TypeVar("ApplierT", bound=Applier)


def register_applier(*classes: type[Fault]) -> Callable[[ApplierT], ApplierT]:
    """Register the decorated applier for every fault class in `classes`."""

    def add(applier: ApplierT) -> ApplierT:
        for cls in classes:
            APPLIERS[cls] = applier
        return applier

    return add


def applier_for(fault: Fault) -> Applier:
    """The applier of `fault`'s class (or of its nearest base class that has one)."""
    for cls in type(fault).__mro__:
        applier = APPLIERS.get(cls)
        if applier is not None:
            return applier
    raise FaultError(f"{fault.kind}: no way to apply {type(fault).__name__} faults is registered")


def check_proxy_target(fault: Fault, proxies: dict[str, ProxyInfo]) -> None:
    """Raise FaultError, naming the known proxies, if `fault`'s target is not one of them."""
    __tracebackhide__ = True
    if fault.target not in proxies:
        raise FaultError(
            f"{fault.kind}: target {fault.target!r} names no known proxy; known proxies:"
            f" {known(proxies)} (declare them with chaos_proxies in the ini file, or"
            " chaos.proxy(name, upstream=...))"
        )


def known(proxies: dict[str, ProxyInfo]) -> str:
    """The proxies' names for a message, sorted (`none` when there are none)."""
    return ", ".join(sorted(proxies)) or "none"


class ProxyFaults(Applier):
    """Toxics and proxy changes through the Toxiproxy API: every fault on a proxy."""

    def check_target(
        self, fault: Fault, targets: Targets, proxies: dict[str, ProxyInfo] | None
    ) -> None:
        __tracebackhide__ = True
        if isinstance(fault, Down) and fault.acts_on_process:
            targets.service_for(fault)
            return
        check_proxy_target(fault, targets.client.proxies() if proxies is None else proxies)

    def apply(self, fault: Fault, targets: Targets) -> AppliedFault:
        if isinstance(fault, Down) and fault.acts_on_process:
            return apply_process_fault(fault, targets.service_for(fault))
        return apply_proxy_fault(fault, targets.client, targets.toxic_names)


register_applier(ToxicFault, Down)(ProxyFaults())


def apply_proxy_fault(fault: Fault, client: ToxiproxyClient, names: ToxicNames) -> AppliedFault:
    """Apply `fault` through `client`; on failure, undo what was done and re-raise."""
    applied = AppliedFault(fault, applied_at=time.monotonic())
    try:
        for toxic_type, stream, attributes, toxicity in _toxics_for(fault):
            toxic_name = names.next(fault.target, toxic_type, stream)
            client.add_toxic(
                fault.target,
                toxic_type,
                name=toxic_name,
                stream=stream,
                toxicity=toxicity,
                attributes=attributes,
            )
            applied.undo.append(
                lambda name=toxic_name: _remove_toxic(client, names, fault.target, name)  # type: ignore[misc]
            )
        if isinstance(fault, Down) and fault.mode == "refuse":
            client.update_proxy(fault.target, enabled=False)
            applied.undo.append(lambda: _enable(client, fault.target))
    except BaseException:
        applied.revert()
        raise
    return applied


def _remove_toxic(client: ToxiproxyClient, names: ToxicNames, proxy: str, name: str) -> None:
    try:
        client.remove_toxic(proxy, name)
    finally:
        names.release(proxy, name)


def _enable(client: ToxiproxyClient, proxy: str) -> None:
    client.update_proxy(proxy, enabled=True)


def apply_process_fault(fault: Down, service: ServiceControl) -> AppliedFault:
    """Kill, terminate, stop or pause `service`; reverting brings it back to serving (started
    on the same port with the same data, or resumed), however it was left meanwhile."""
    applied = AppliedFault(fault, applied_at=time.monotonic())
    getattr(service, fault.mode)()
    applied.undo.append(service.ensure_serving)
    return applied


def _toxics_for(fault: Fault) -> list[tuple[str, str, dict[str, int], float]]:
    if isinstance(fault, RawToxic):
        return [(fault.type, s, fault.attributes(), fault.toxicity) for s in fault.streams()]
    if isinstance(fault, ToxicFault):
        return [(fault.toxic_type, s, fault.attributes(), fault.toxicity) for s in fault.streams()]
    if isinstance(fault, Down) and fault.mode == "blackhole":
        return [("timeout", s, {"timeout": 0}, 1.0) for s in ("upstream", "downstream")]
    if isinstance(fault, Down) and fault.mode == "reset":
        return [("reset_peer", s, {"timeout": 0}, 1.0) for s in ("upstream", "downstream")]
    return []
