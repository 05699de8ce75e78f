"""How an HTTP fault is applied: as a toxic of the engine when its target is a proxy, or put
at work in the process's registry when its target is an in-process app's name (a live
`ChaosASGIMiddleware` or `ChaosWSGIMiddleware`). Reverting removes exactly that."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Protocol

from pytest_chaos.apply import AppliedFault, Applier, known, register_applier
from pytest_chaos.faults import Fault, FaultError, HttpFault
from pytest_chaos.http.registry import APPS, HttpTimeline
from pytest_chaos.http_rules import HttpFaultState

if TYPE_CHECKING:
    from pytest_chaos.apply import Targets
    from pytest_chaos.backends.client import ProxyInfo
    from pytest_chaos.backends.server import ToxiproxyServer
    from pytest_chaos.report.timeline import Timeline

# The stream an HTTP toxic is added on: the engine ignores it (an HTTP toxic sees both), and
# upstream is where a request is first seen.
HTTP_TOXIC_STREAM = "upstream"


class HttpTargets(Protocol):
    """What the HTTP applier needs of the test's `chaos` object."""

    server: ToxiproxyServer

    @property
    def test_seed(self) -> int:
        """The test's seed, which in-process draws start from."""
        ...

    @property
    def applied(self) -> list[AppliedFault]:
        """The faults this test applied so far."""
        ...

    def timeline(self) -> Timeline:
        """The test's timeline, which shows the in-process requests too."""
        ...


class HttpFaults(Applier):
    """HTTP faults: engine toxics on a proxy, or the in-process middleware's registry."""

    def check_target(
        self, fault: Fault, targets: Targets, proxies: dict[str, ProxyInfo] | None
    ) -> None:
        __tracebackhide__ = True
        if APPS.knows(fault.target):
            return
        found = targets.client.proxies() if proxies is None else proxies
        if fault.target not in found:
            raise FaultError(
                f"{fault.kind}: target {fault.target!r} names no known proxy or in-process app;"
                f" known proxies: {known(found)}; in-process apps:"
                f" {', '.join(APPS.names()) or 'none'} (an app is known while a"
                " ChaosASGIMiddleware or ChaosWSGIMiddleware of that name exists:"
                " chaos.http_app(name, app) makes one)"
            )
        if targets.client.engine() is None:
            server: ToxiproxyServer = targets.server  # type: ignore[attr-defined]
            raise FaultError(
                f"{fault.kind}: HTTP faults at a proxy need the pytest-chaos engine; the"
                f" {server.backend} backend at {server.url} is a plain Toxiproxy, which only"
                " proxies TCP (use --chaos-backend embedded, the default, or point"
                " --toxiproxy-url at `pytest-chaos serve`; an in-process app takes HTTP faults"
                " through ChaosASGIMiddleware or ChaosWSGIMiddleware)"
            )

    def apply(self, fault: Fault, targets: Targets) -> AppliedFault:
        assert isinstance(fault, HttpFault)
        if APPS.knows(fault.target):
            chaos: HttpTargets = targets  # type: ignore[assignment]  # the chaos object is both
            return _apply_in_process(fault, chaos)
        return _apply_at_proxy(fault, targets)


def _apply_at_proxy(fault: HttpFault, targets: Targets) -> AppliedFault:
    client = targets.client
    applied = AppliedFault(fault, applied_at=time.monotonic())
    name = targets.toxic_names.next(fault.target, fault.kind, HTTP_TOXIC_STREAM)
    client.add_toxic(
        fault.target,
        fault.kind,
        name=name,
        stream=HTTP_TOXIC_STREAM,
        toxicity=1.0,
        attributes=fault.options(),
    )
    applied.undo.append(lambda: client.remove_toxic(fault.target, name))
    return applied


def _apply_in_process(fault: HttpFault, chaos: HttpTargets) -> AppliedFault:
    # Named and seeded as the engine's toxics are: by kind and rank in the test, and the test's
    # seed, so that a test draws the same alone as inside the whole run.
    rank = 1 + sum(isinstance(applied.fault, HttpFault) for applied in chaos.applied)
    name = f"{fault.kind}_{rank}"
    draws = random.Random(f"{chaos.test_seed}/{fault.target}/{name}")
    state = HttpFaultState(name, fault, draws)
    timeline = chaos.timeline()
    if not any(isinstance(source, HttpTimeline) for source in timeline.sources):
        timeline.sources.append(HttpTimeline(timeline.started_at))
    APPS.add_fault(fault.target, state)
    applied = AppliedFault(fault, applied_at=time.monotonic())
    applied.undo.append(lambda: APPS.remove_fault(fault.target, state))
    return applied


register_applier(HttpFault)(HttpFaults())
