"""Faults: one vocabulary of frozen value objects, and the one function that applies them.

Markers, the `chaos` fixture's methods and (later) Hypothesis strategies all build these
objects; `apply_fault` turns one into toxics or proxy changes and returns a handle whose
`revert()` undoes exactly what was done, even when applying stopped halfway.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from pytest_chaos.client import ToxiproxyClient

STREAMS = ("downstream", "upstream", "both")
NETWORK_DOWN_MODES = ("refuse", "blackhole", "reset")
# Modes that act on the service's process (or container) rather than on its proxy; each is
# undone by bringing the service back to serving (start, or resume after pause).
PROCESS_DOWN_MODES = ("kill", "terminate", "stop", "pause")
DOWN_MODES = NETWORK_DOWN_MODES + PROCESS_DOWN_MODES
MS_PER_DAY = 86_400_000


class FaultError(ValueError):
    """A fault was described with a value that is not allowed; the message says what is."""


@dataclass(frozen=True)
class Bound:
    """How one numeric option of a fault is checked, and its unit for messages."""

    unit: str
    minimum: float = 0
    maximum: float = MS_PER_DAY
    whole: bool = True


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_number(fault: str, option: str, value: object, bound: Bound) -> None:
    span = f"from {_number(bound.minimum)} to {_number(bound.maximum)}"
    if bound.unit == "probability":
        allowed = f"a probability {span}"
    else:
        kind = "a whole number" if bound.whole else "a number"
        allowed = f"{kind} of {bound.unit} {span}"
    valid_type = isinstance(value, int) if bound.whole else isinstance(value, int | float)
    if isinstance(value, bool) or not valid_type:
        raise FaultError(f"{fault}: {option} must be {allowed}, got {value!r}")
    assert isinstance(value, int | float)
    if not bound.minimum <= value <= bound.maximum:
        raise FaultError(f"{fault}: {option} must be {allowed}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Fault:
    """Something wrong with a dependency, reached through the proxy named `target`."""

    target: str
    name: ClassVar[str] = "fault"
    bounds: ClassVar[Mapping[str, Bound]] = {}

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise FaultError(f"{self.name}: target must be a proxy name, got {self.target!r}")
        for option, bound in self.bounds.items():
            _check_number(self.name, option, getattr(self, option), bound)

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "target"}

    def __str__(self) -> str:
        # The fault's own options first, inherited ones (stream, toxicity) last; options left
        # at their defaults are not shown.
        own = sorted((f for f in fields(self) if f.name != "target"), key=_declared_late_first)
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in own if not _is_default(self, f)]
        return f"{self.name}({', '.join([repr(self.target), *shown])})"


def _is_default(fault: Fault, f: Any) -> bool:
    if f.default is not MISSING:
        return bool(getattr(fault, f.name) == f.default)
    if f.default_factory is not MISSING:
        return bool(getattr(fault, f.name) == f.default_factory())
    return False


def _declared_late_first(f: Any) -> int:
    return 1 if f.name in ("stream", "toxicity") else 0


@dataclass(frozen=True, kw_only=True)
class ToxicFault(Fault):
    """A fault made of one Toxiproxy toxic per stream."""

    stream: str = "downstream"
    toxicity: float = 1.0
    toxic_type: ClassVar[str]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stream not in STREAMS:
            raise FaultError(
                f"{self.name}: stream must be one of {', '.join(STREAMS)}, got {self.stream!r}"
            )
        _check_number(self.name, "toxicity", self.toxicity, Bound("probability", 0, 1, False))

    def streams(self) -> tuple[str, ...]:
        return ("upstream", "downstream") if self.stream == "both" else (self.stream,)

    def attributes(self) -> dict[str, int]:
        return {}


@dataclass(frozen=True, kw_only=True)
class Latency(ToxicFault):
    """Delay each chunk by `ms` milliseconds, +/- `jitter` ms."""

    ms: int
    jitter: int = 0
    name = "latency"
    toxic_type = "latency"
    bounds: ClassVar[Mapping[str, Bound]] = {
        "ms": Bound("milliseconds"),
        "jitter": Bound("milliseconds"),
    }

    def attributes(self) -> dict[str, int]:
        return {"latency": self.ms, "jitter": self.jitter}


@dataclass(frozen=True, kw_only=True)
class Bandwidth(ToxicFault):
    """Limit throughput to `rate` KB/s (1 KB = 1000 bytes); 0 stops data entirely."""

    rate: int
    name = "bandwidth"
    toxic_type = "bandwidth"
    bounds: ClassVar[Mapping[str, Bound]] = {"rate": Bound("KB/s", maximum=10**9)}

    def attributes(self) -> dict[str, int]:
        return {"rate": self.rate}


@dataclass(frozen=True, kw_only=True)
class Stall(ToxicFault):
    """Swallow all data; close after `timeout` ms without data (0: never close)."""

    timeout: int = 0
    name = "stall"
    toxic_type = "timeout"
    bounds: ClassVar[Mapping[str, Bound]] = {"timeout": Bound("milliseconds")}

    def attributes(self) -> dict[str, int]:
        return {"timeout": self.timeout}


@dataclass(frozen=True, kw_only=True)
class ResetPeer(ToxicFault):
    """Reset the connection (TCP RST) `timeout` ms after the first data."""

    timeout: int = 0
    name = "reset_peer"
    toxic_type = "reset_peer"
    bounds: ClassVar[Mapping[str, Bound]] = {"timeout": Bound("milliseconds")}

    def attributes(self) -> dict[str, int]:
        return {"timeout": self.timeout}


@dataclass(frozen=True, kw_only=True)
class SlowClose(ToxicFault):
    """Hold the close (FIN) back by `delay` ms."""

    delay: int
    name = "slow_close"
    toxic_type = "slow_close"
    bounds: ClassVar[Mapping[str, Bound]] = {"delay": Bound("milliseconds")}

    def attributes(self) -> dict[str, int]:
        return {"delay": self.delay}


@dataclass(frozen=True, kw_only=True)
class Slicer(ToxicFault):
    """Cut data into writes of `average_size` +/- `size_variation` bytes, `delay` us apart."""

    average_size: int
    size_variation: int = 0
    delay: int = 0
    name = "slicer"
    toxic_type = "slicer"
    bounds: ClassVar[Mapping[str, Bound]] = {
        "average_size": Bound("bytes", minimum=1, maximum=2**31),
        "size_variation": Bound("bytes", maximum=2**31),
        "delay": Bound("microseconds", maximum=MS_PER_DAY * 1000),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size_variation >= self.average_size:
            raise FaultError(
                f"slicer: size_variation must be smaller than average_size ({self.average_size}),"
                f" got {self.size_variation}"
            )

    def attributes(self) -> dict[str, int]:
        return {
            "average_size": self.average_size,
            "size_variation": self.size_variation,
            "delay": self.delay,
        }


@dataclass(frozen=True, kw_only=True)
class LimitData(ToxicFault):
    """Close the connection after `bytes` bytes in the stream."""

    bytes: int
    name = "limit_data"
    toxic_type = "limit_data"
    bounds: ClassVar[Mapping[str, Bound]] = {"bytes": Bound("bytes", maximum=2**53)}

    def attributes(self) -> dict[str, int]:
        return {"bytes": self.bytes}


@dataclass(frozen=True, kw_only=True)
class RawToxic(ToxicFault):
    """Any toxic type by its Toxiproxy name, with raw attributes (the `toxic` marker)."""

    type: str
    toxic_attributes: dict[str, int] = field(default_factory=dict)
    name = "toxic"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.type, str) or not self.type:
            raise FaultError(f"toxic: type must be a toxic type name, got {self.type!r}")
        for key, value in self.toxic_attributes.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise FaultError(f"toxic: attribute {key} must be a whole number, got {value!r}")

    def attributes(self) -> dict[str, int]:
        return dict(self.toxic_attributes)


@dataclass(frozen=True, kw_only=True)
class Down(Fault):
    """The dependency is unreachable. Through its proxy: `refuse` (connection refused),
    `blackhole` (traffic vanishes, nothing answers), `reset` (connections are reset). On a
    service the plugin started: `kill` (SIGKILL), `terminate` (SIGTERM), `stop` (graceful
    stop), `pause` (SIGSTOP / docker pause: connections open, nothing answers)."""

    mode: str = "refuse"
    name = "dependency_down"

    @property
    def acts_on_process(self) -> bool:
        return self.mode in PROCESS_DOWN_MODES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in DOWN_MODES:
            raise FaultError(
                f"dependency_down: mode must be one of {', '.join(DOWN_MODES)}, got {self.mode!r}"
            )


@dataclass
class AppliedFault:
    """What one application of a fault changed, and how to undo it."""

    fault: Fault
    applied_at: float
    reverted_at: float | None = None
    _undo: list[Callable[[], None]] = field(default_factory=list)

    def revert(self) -> None:
        """Undo every change, newest first; changes already gone (e.g. after a reset) are fine.
        Every undo runs, whatever the others did; the first error is raised at the end."""
        from pytest_chaos.client import ToxiproxyError

        if self.reverted_at is not None:
            return
        errors: list[Exception] = []
        while self._undo:
            undo = self._undo.pop()
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


def revert_errors() -> tuple[type[Exception], ...]:
    """What undoing a fault may raise: the API's errors, and the services' when a process
    fault was applied (their module is only imported by runs that declare services)."""
    from pytest_chaos.client import ToxiproxyError

    services = sys.modules.get("pytest_chaos.services.base")
    return (ToxiproxyError, services.ServiceError) if services is not None else (ToxiproxyError,)


class ToxicNames:
    """Unique toxic names, recognisable as the plugin's own (`chaos_<type>_<stream>_<n>`).

    Under pytest-xdist the worker id is part of the name (`chaos_gw0_latency_...`): workers
    sharing one external Toxiproxy must not take, or remove, each other's toxics.
    """

    PREFIX = "chaos_"

    def __init__(self, worker: str | None = None) -> None:
        self._counter = 0
        self._stem = f"{self.PREFIX}{worker}_" if worker else self.PREFIX
        # (proxy, toxic name) of every name handed out, for the clean-up at session end.
        self.issued: set[tuple[str, str]] = set()

    def next(self, proxy: str, toxic_type: str, stream: str) -> str:
        self._counter += 1
        name = f"{self._stem}{toxic_type}_{stream}_{self._counter}"
        self.issued.add((proxy, name))
        return name


def apply_fault(fault: Fault, client: ToxiproxyClient, names: ToxicNames) -> AppliedFault:
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
            applied._undo.append(
                lambda name=toxic_name: client.remove_toxic(fault.target, name)  # type: ignore[misc]
            )
        if isinstance(fault, Down) and fault.mode == "refuse":
            client.update_proxy(fault.target, enabled=False)
            applied._undo.append(lambda: _enable(client, fault.target))
    except BaseException:
        applied.revert()
        raise
    return applied


class ServiceControl(Protocol):
    """What a process fault needs of a service (RunningService has it)."""

    def kill(self) -> None: ...
    def terminate(self) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...
    def ensure_serving(self) -> None: ...


def apply_process_fault(fault: Down, service: ServiceControl) -> AppliedFault:
    """Kill, terminate, stop or pause `service`; reverting brings it back to serving (started
    on the same port with the same data, or resumed), however it was left meanwhile."""
    applied = AppliedFault(fault, applied_at=time.monotonic())
    getattr(service, fault.mode)()
    applied._undo.append(service.ensure_serving)
    return applied


def _enable(client: ToxiproxyClient, proxy: str) -> None:
    client.update_proxy(proxy, enabled=True)


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
