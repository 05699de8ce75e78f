"""How packet faults are applied: `packet_loss` (TCP and UDP proxies), `duplicate`, `reorder`
and `corrupt` (UDP proxies), and `bandwidth` counted in datagrams.

They are toxics like the others, applied through the Toxiproxy API, but only the pytest-chaos
engine has them: against a plain Toxiproxy (the `toxiproxy` or `container` backend with
upstream's image), or on a proxy of the wrong protocol, the fault is refused before anything
is sent, with a message naming the backend or the protocol and the way out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pytest_chaos.apply import (
    AppliedFault,
    Applier,
    apply_proxy_fault,
    check_proxy_target,
    register_applier,
)
from pytest_chaos.faults import (
    Bandwidth,
    Corrupt,
    Duplicate,
    Fault,
    FaultError,
    PacketLoss,
    Reorder,
)

if TYPE_CHECKING:
    from pytest_chaos.apply import Targets
    from pytest_chaos.backends.client import ProxyInfo
    from pytest_chaos.backends.server import ToxiproxyServer

DATAGRAM_ONLY = (Duplicate, Reorder, Corrupt)
ENGINE_ONLY = (PacketLoss, *DATAGRAM_ONLY)
WHY_NOT_TCP = {
    "duplicate": "TCP never delivers a byte twice",
    "reorder": "TCP never delivers bytes out of order",
    "corrupt": "TCP's checksum turns a corrupted segment into a lost one",
}


class ServerTargets(Protocol):
    """What these faults need of the test's `chaos` object besides `Targets`."""

    @property
    def server(self) -> ToxiproxyServer:
        """The session's server (its backend and URL name it in messages)."""
        ...


def engine_only_problem(fault: Fault, targets: Targets) -> str | None:
    """Why the session's server cannot apply `fault` (None when it is the pytest-chaos
    engine): the backend named, and the embedded engine suggested."""
    if targets.client.engine() is not None:
        return None
    server = getattr(targets, "server", None)
    backend = getattr(server, "backend", "toxiproxy")
    lacks = (
        "no packet_loss toxic that stalls as TCP does"
        if isinstance(fault, PacketLoss)
        else "no UDP proxies"
    )
    return (
        f"{fault.kind} needs the pytest-chaos engine; the {backend} backend at"
        f" {targets.client.url} is a plain Toxiproxy, which has {lacks}. Use the embedded"
        " engine (--chaos-backend embedded, the default), or run `pytest-chaos serve` and point"
        " --toxiproxy-url at it"
    )


def protocol_problem(fault: Fault, proxy: ProxyInfo) -> str | None:
    """Why `fault` cannot act on `proxy` (a TCP or UDP proxy), or None."""
    name = repr(proxy.name)
    if isinstance(fault, DATAGRAM_ONLY) and proxy.protocol != "udp":
        return (
            f"{name} is a TCP proxy, and {WHY_NOT_TCP[fault.kind]}: {fault.kind} acts on UDP"
            " proxies (chaos.proxy(name, upstream=..., protocol='udp')); on TCP, packet_loss"
            " gives what a lossy network does to it"
        )
    if isinstance(fault, PacketLoss) and proxy.protocol == "udp":
        changed = [
            option
            for option, default in (("retries", 15), ("syn_retries", 6))
            if getattr(fault, option) != default
        ]
        if changed:
            return (
                f"{' and '.join(changed)} count TCP's retransmissions, and {name} is a UDP"
                " proxy, where a lost datagram is gone: leave them out"
            )
    if isinstance(fault, Bandwidth) and fault.unit == "datagrams/s" and proxy.protocol != "udp":
        return f"unit 'datagrams/s' counts datagrams, and {name} is a TCP proxy: use 'KB/s'"
    return None


class PacketFaults(Applier):
    """Packet faults: checked against the backend and the proxy's protocol, then applied as
    toxics through the Toxiproxy API."""

    def check_target(
        self, fault: Fault, targets: Targets, proxies: dict[str, ProxyInfo] | None
    ) -> None:
        __tracebackhide__ = True
        if isinstance(fault, ENGINE_ONLY):
            problem = engine_only_problem(fault, targets)
            if problem is not None:
                raise FaultError(f"{fault.kind}: {problem}")
        known = targets.client.proxies() if proxies is None else proxies
        check_proxy_target(fault, known)
        problem = protocol_problem(fault, known[fault.target])
        if problem is not None:
            raise FaultError(f"{fault.kind}: {problem}")

    def apply(self, fault: Fault, targets: Targets) -> AppliedFault:
        return apply_proxy_fault(fault, targets.client, targets.toxic_names)


register_applier(PacketLoss, Duplicate, Reorder, Corrupt, Bandwidth)(PacketFaults())
