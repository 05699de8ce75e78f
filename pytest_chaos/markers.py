"""The fault markers: their signatures (registered with pytest) and their parsing into faults.

A marker names its target first, then its options; every option is checked by the fault value
object itself, so a marker and the matching `chaos` method accept exactly the same things.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_chaos.faults import (
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
)

WHEN = ("call", "setup")
TOXIC_OPTIONS: Mapping[str, object] = {"stream": "downstream", "toxicity": 1.0}


@dataclass(frozen=True)
class MarkerSpec:
    name: str
    fault: type[Fault]
    required: tuple[str, ...]
    options: Mapping[str, object]
    help: str
    accepts_any_keyword: bool = False

    def signature(self) -> str:
        parts = ["target", *self.required, "*"]
        parts += [f"{key}={value!r}" for key, value in self.options.items()]
        parts.append("when='call'")
        if self.accepts_any_keyword:
            parts.append("**attributes")
        return f"{self.name}({', '.join(parts)})"

    def allowed_keywords(self) -> list[str]:
        return [*self.required, *self.options, "when"]


MARKERS: dict[str, MarkerSpec] = {
    spec.name: spec
    for spec in (
        MarkerSpec(
            "latency",
            Latency,
            ("ms",),
            {"jitter": 0, **TOXIC_OPTIONS},
            "delay data through the proxy by ms milliseconds, +/- jitter ms.",
        ),
        MarkerSpec(
            "bandwidth",
            Bandwidth,
            ("rate",),
            dict(TOXIC_OPTIONS),
            "limit throughput to rate KB/s (1 KB = 1000 bytes); 0 stops data.",
        ),
        MarkerSpec(
            "stall",
            Stall,
            (),
            {"timeout": 0, **TOXIC_OPTIONS},
            "swallow all data; close after timeout ms without data (0: never). "
            "Toxiproxy's timeout toxic.",
        ),
        MarkerSpec(
            "reset_peer",
            ResetPeer,
            (),
            {"timeout": 0, **TOXIC_OPTIONS},
            "reset connections (TCP RST) timeout ms after their first data.",
        ),
        MarkerSpec(
            "slow_close",
            SlowClose,
            ("delay",),
            dict(TOXIC_OPTIONS),
            "hold each connection's close back by delay ms.",
        ),
        MarkerSpec(
            "slicer",
            Slicer,
            ("average_size",),
            {"size_variation": 0, "delay": 0, **TOXIC_OPTIONS},
            "cut data into writes of average_size +/- size_variation bytes, "
            "delay MICROseconds apart.",
        ),
        MarkerSpec(
            "limit_data",
            LimitData,
            ("bytes",),
            dict(TOXIC_OPTIONS),
            "close connections after bytes bytes in the stream.",
        ),
        MarkerSpec(
            "dependency_down",
            Down,
            (),
            {"mode": "refuse"},
            "make the dependency unreachable: mode 'refuse' (connection refused), "
            "'blackhole' (nothing answers, nothing closes) or 'reset' (TCP resets) at its "
            "proxy; or, on a service the plugin started, 'kill' (SIGKILL), 'terminate' "
            "(SIGTERM), 'stop' (graceful) or 'pause' (frozen), undone after the test.",
        ),
        MarkerSpec(
            "toxic",
            RawToxic,
            ("type",),
            dict(TOXIC_OPTIONS),
            "add any Toxiproxy toxic type with raw integer attributes.",
            accepts_any_keyword=True,
        ),
    )
}


@dataclass(frozen=True)
class MarkedFault:
    fault: Fault
    when: str
    marker: str


def marker_help() -> list[str]:
    """The lines registered with pytest's `markers` ini, shown by `pytest --markers`."""
    return [f"{spec.signature()}: {spec.help}" for spec in MARKERS.values()]


def parse_marker(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> MarkedFault:
    """Turn one marker's arguments into a fault; FaultError names what is wrong."""
    spec = MARKERS[name]
    prefix = f"@pytest.mark.{name}"
    if "target" in kwargs:
        # The signature names it `target`, so `target="redis"` must work too.
        if args:
            raise FaultError(f"{prefix}: target given twice (positionally and by keyword)")
        kwargs = dict(kwargs)
        args = (kwargs.pop("target"),)
    if not args:
        raise FaultError(
            f"{prefix}: the first argument must be the target proxy, e.g. "
            f"@pytest.mark.{name}('redis', ...); signature: {spec.signature()}"
        )
    target, *positional = args
    if len(positional) > len(spec.required):
        raise FaultError(
            f"{prefix}: too many positional arguments {tuple(args)!r};"
            f" signature: {spec.signature()}"
        )
    values: dict[str, Any] = dict(zip(spec.required, positional, strict=False))
    options = dict(kwargs)
    when = options.pop("when", "call")
    if when not in WHEN:
        raise FaultError(f"{prefix}: when must be one of {', '.join(WHEN)}, got {when!r}")
    attributes: dict[str, Any] = {}
    for key, value in options.items():
        if key in values:
            raise FaultError(f"{prefix}: {key} given twice (positionally and by keyword)")
        if key in spec.required or key in spec.options:
            values[key] = value
        elif spec.accepts_any_keyword:
            attributes[key] = value
        else:
            raise FaultError(
                f"{prefix}: unknown keyword {key!r}; allowed: {', '.join(spec.allowed_keywords())}"
            )
    missing = [key for key in spec.required if key not in values]
    if missing:
        raise FaultError(
            f"{prefix}: missing required argument {missing[0]!r}; signature: {spec.signature()}"
        )
    if spec.accepts_any_keyword:
        values["toxic_attributes"] = attributes
    try:
        fault = spec.fault(target=target, **values)
    except FaultError as error:
        raise FaultError(restate_for_marker(name, error)) from None
    return MarkedFault(fault, when, name)


def restate_for_marker(marker: str, error: FaultError) -> str:
    """A fault's message ("latency: ms must ...") restated for its marker
    ("@pytest.mark.latency: ms must ...")."""
    head, sep, rest = str(error).partition(": ")
    return f"@pytest.mark.{marker}: {rest if sep and ' ' not in head else error}"


def faults_of(marks: Iterable[tuple[str, tuple[Any, ...], Mapping[str, Any]]]) -> list[MarkedFault]:
    return [parse_marker(name, args, kwargs) for name, args, kwargs in marks if name in MARKERS]
