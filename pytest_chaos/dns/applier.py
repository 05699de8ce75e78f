"""How a `DnsFailure` is applied: put in force in the session's DNS rules, which both layers
(the in-process resolver and the DNS server) read; reverting takes it out and releases the
lookups it was holding back. Its target is a host pattern, checked as such, not a proxy."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from pytest_chaos.apply import AppliedFault, register_applier
from pytest_chaos.dns import glibc
from pytest_chaos.faults import DnsFailure, Fault, FaultError, dns_name_problem

if TYPE_CHECKING:
    from pytest_chaos.apply import Targets
    from pytest_chaos.backends.client import ProxyInfo
    from pytest_chaos.dns.session import DnsSession


class DnsTargets(Protocol):
    """What the DNS applier needs of the test's `chaos` object."""

    @property
    def test_seed(self) -> int:
        """The test's seed, from which each DNS fault's rolls are drawn."""
        ...

    @property
    def applied(self) -> list[AppliedFault]:
        """Every fault this test applied, reverted or not, oldest first."""
        ...

    def dns_session(self) -> DnsSession:
        """The session's DNS names, faults and server (made on first use)."""
        ...


class DnsFaults:
    """DNS failures, through the session's DNS rules."""

    def check_target(
        self, fault: Fault, targets: Targets, proxies: dict[str, ProxyInfo] | None
    ) -> None:
        """Raise FaultError if the fault's target is not a host pattern, or if this platform's
        resolver is not glibc, whose errors the in-process layer reproduces (`proxies` play
        no part: the target is a host)."""
        __tracebackhide__ = True
        problem = dns_name_problem(fault.target, pattern=True)
        if problem is not None:
            raise FaultError(
                f"{fault.kind}: host must be {DnsFailure.target_help}, got {fault.target!r}:"
                f" {problem}"
            )
        platform = glibc.platform_problem()
        if platform is not None:
            raise FaultError(f"{fault.kind}: {platform}")

    def apply(self, fault: Fault, targets: Targets) -> AppliedFault:
        """Put the fault in force in the session's DNS rules, its rolls drawn from the test's
        seed and its place among the test's DNS faults; reverting takes it out and releases
        the lookups it is holding back."""
        assert isinstance(fault, DnsFailure)
        chaos: DnsTargets = targets  # type: ignore[assignment]  # the chaos object is both
        session = chaos.dns_session()
        ordinal = sum(isinstance(applied.fault, DnsFailure) for applied in chaos.applied)
        active = session.add_fault(fault, seed=chaos.test_seed, ordinal=ordinal)
        applied = AppliedFault(fault, applied_at=time.monotonic())
        applied.undo.append(lambda: session.remove_fault(active))
        return applied


register_applier(DnsFailure)(DnsFaults())
