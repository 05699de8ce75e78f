"""The fault markers, derived from the fault classes in `faults.py`: one marker per fault kind,
with the class's signature plus `when`, its help line registered with pytest, and its
arguments checked by the same `build_fault` that the `chaos` methods use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pytest_chaos.faults import FAULT_TYPES, Fault, FaultError, build_fault, signature

When = Literal["call", "setup"]
WHEN: tuple[str, ...] = get_args(When)


@dataclass(frozen=True)
class MarkedFault:
    """A fault read from a marker, and when it applies (around the test body, or from setup)."""

    fault: Fault
    when: When
    marker: str


def marker_names() -> tuple[str, ...]:
    """The fault markers' names (one per fault kind)."""
    return tuple(FAULT_TYPES)


def marker_signature(name: str) -> str:
    """`latency(target, ms, *, jitter=0, stream='downstream', toxicity=1.0, when='call')`."""
    base = signature(FAULT_TYPES[name])
    if base.endswith(", **attributes)"):
        return base.removesuffix(", **attributes)") + ", when='call', **attributes)"
    separator = ", " if "*" in base else ", *, "
    return f"{base[:-1]}{separator}when='call')"


def marker_help() -> list[str]:
    """The lines registered with pytest's `markers` ini, shown by `pytest --markers`."""
    return [f"{marker_signature(name)}: {cls.help}" for name, cls in FAULT_TYPES.items()]


def parse_marker(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> MarkedFault:
    """Turn one marker's arguments into a fault; FaultError names what is wrong, as
    `@pytest.mark.<name>: ...`."""
    options = dict(kwargs)
    when = options.pop("when", "call")
    if when not in WHEN:
        raise FaultError(
            f"@pytest.mark.{name}: when must be one of {', '.join(WHEN)}, got {when!r}"
        )
    try:
        fault = build_fault(FAULT_TYPES[name], args, options, also_allowed=("when",))
    except FaultError as error:
        raise FaultError(restate_for_marker(name, error)) from None
    return MarkedFault(fault, when, name)


def restate_for_marker(marker: str, error: FaultError) -> str:
    """A fault's message ("latency: ms must ...") restated for its marker
    ("@pytest.mark.latency: ms must ..."); signatures in it gain the marker's `when`."""
    head, sep, rest = str(error).partition(": ")
    text = rest if sep and " " not in head else str(error)
    base = signature(FAULT_TYPES[marker]) if marker in FAULT_TYPES else None
    if base is not None and base in text:
        text = text.replace(base, marker_signature(marker))
    text = text.replace(f"e.g. {marker}(", f"e.g. @pytest.mark.{marker}(")
    return f"@pytest.mark.{marker}: {text}"


def faults_of(marks: Iterable[tuple[str, tuple[Any, ...], Mapping[str, Any]]]) -> list[MarkedFault]:
    """The faults of a test's fault markers (other markers are ignored), each with its `when`."""
    return [parse_marker(name, args, kwargs) for name, args, kwargs in marks if name in FAULT_TYPES]
