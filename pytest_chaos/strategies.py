"""Hypothesis strategies for faults and fault schedules.

In Hypothesis's own API style: plural nouns, required arguments first and everything with a
default keyword-only, bounds as `min_value`/`max_value`, and invalid arguments raising
`hypothesis.errors.InvalidArgument` when the strategy is first used (drawn from, or validated
at the start of the test), never when it is defined.

    from hypothesis import given
    from pytest_chaos.strategies import fault_schedules, faults, latencies

    @given(fault=faults(["redis", "postgres"]))                 # any kind, either target
    @given(schedule=fault_schedules(["redis"], max_faults=2))   # faults on a timer

Every strategy produces the value objects of `pytest_chaos.faults` (or a
`pytest_chaos.schedules.Schedule`) and shrinks toward harmless: fewer faults first, then
shorter steps, then weaker faults (no latency, more bandwidth, more bytes before a close,
`refuse` rather than `blackhole`, the kinds earlier in the harm order). Times are milliseconds
and sizes bytes, as in the fault classes; a schedule's offsets and durations are seconds, on a
millisecond grid.

One strategy per fault kind: `latencies`, `jitters` (latency with jitter: the engine's seeded
draws), `bandwidths`, `stalls`, `resets`, `slow_closes`, `slicers`, `limit_datas` and
`dependency_downs`. `faults()` draws from every kind in `FAULT_STRATEGIES`, the registry that a
new kind joins with one `register_fault_strategy(kind, strategy, harm=...)` call. Across kinds,
shrinking is Hypothesis's best effort: it prefers examples that take fewer draws, then the kinds
of lower harm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from pytest_chaos.faults import (
    FAULT_TYPES,
    NETWORK_DOWN_MODES,
    STREAMS,
    Bandwidth,
    Down,
    Fault,
    FaultError,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Stall,
    Stream,
    ToxicFault,
)
from pytest_chaos.schedules import MAX_SECONDS, Schedule, Step, first_overlapping_downs, seeds

__all__ = [
    "FAULT_STRATEGIES",
    "HARM_ORDER_OF_MODES",
    "KindStrategy",
    "bandwidths",
    "dependency_downs",
    "fault_schedules",
    "faults",
    "jitters",
    "latencies",
    "limit_datas",
    "register_fault_strategy",
    "resets",
    "seeds",
    "slicers",
    "slow_closes",
    "stalls",
]

T = TypeVar("T")
ToxicT = TypeVar("ToxicT", bound=ToxicFault)
DOWNSTREAM: tuple[Stream, ...] = ("downstream",)
# `dependency_down` modes from the least to the most harmful: a refused connection fails at
# once, a reset fails on first use, a blackhole hangs until the client's timeout; a graceful
# stop, SIGTERM and SIGKILL lose ever more; a paused server holds connections open silently.
HARM_ORDER_OF_MODES = ("refuse", "reset", "blackhole", "stop", "terminate", "kill", "pause")
MAX_FAULTS = 100


# ------------------------------------------------------------------------- argument checks
def _lazy(build: Callable[[], SearchStrategy[T]]) -> SearchStrategy[T]:
    """`build()` on first use: its InvalidArgument is raised when the strategy is drawn from
    (or validated by @given), as Hypothesis's own strategies do."""
    return st.deferred(build)


def _targets(where: str, targets: object) -> tuple[str, ...]:
    if isinstance(targets, str) or not isinstance(targets, Collection):
        raise InvalidArgument(
            f"{where}: targets must be a list of proxy or service names, e.g. ['redis'],"
            f" got {targets!r}"
        )
    names = tuple(targets)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise InvalidArgument(
            f"{where}: targets must be a non-empty list of proxy or service names, got {targets!r}"
        )
    return names


def _bounds(
    where: str, cls: type[Fault], option: str, min_value: object, max_value: object
) -> tuple[int, int]:
    """`min_value` and `max_value` checked against the bound of `cls`'s option `option` (the
    same rule, and message, as the fault's own)."""
    rule = next(f for f in fields(cls) if f.name == option).metadata["bound"]
    for name, value in (("min_value", min_value), ("max_value", max_value)):
        try:
            rule.check(where, name, value)
        except FaultError as error:
            raise InvalidArgument(str(error)) from None
    assert isinstance(min_value, int)
    assert isinstance(max_value, int)
    if min_value > max_value:
        raise InvalidArgument(
            f"{where}: min_value={min_value} must not be above max_value={max_value}"
        )
    return min_value, max_value


def _whole(where: str, name: str, value: object, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidArgument(
            f"{where}: {name} must be a whole number from {minimum} to {maximum}, got {value!r}"
        )
    return value


def _between(low: int, high: int) -> SearchStrategy[int]:
    """Integers from `low` to `high`, shrinking toward `low`. A range of one value draws
    nothing: Hypothesis counts every draw when it compares examples, and `faults()` shrinks
    toward the least harmful kind only while the kinds cost the same number of draws."""
    return st.just(low) if low == high else st.integers(low, high)


def _weaker_toward_max(low: int, high: int) -> SearchStrategy[int]:
    """Integers from `low` to `high` shrinking toward `high` (for options where more is
    kinder: bandwidth, bytes before a close, slice sizes)."""
    return _between(0, high - low).map(lambda below: high - below)


def _toxic_options(
    where: str, streams: object, min_toxicity: object, max_toxicity: object
) -> SearchStrategy[dict[str, Any]]:
    """`stream` (shrinking toward the first of `streams`) and `toxicity` (from `min_toxicity`
    to `max_toxicity` in hundredths, shrinking toward `min_toxicity`: the weakest)."""
    if isinstance(streams, str) or not isinstance(streams, Sequence) or not streams:
        raise InvalidArgument(
            f"{where}: streams must be a non-empty list of {', '.join(STREAMS)}, got {streams!r}"
        )
    for stream in streams:
        if stream not in STREAMS:
            raise InvalidArgument(
                f"{where}: streams must hold only {', '.join(STREAMS)}, got {stream!r}"
            )
    for name, value in (("min_toxicity", min_toxicity), ("max_toxicity", max_toxicity)):
        valid = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and 0 <= value <= 1
        )
        if not valid:
            raise InvalidArgument(
                f"{where}: {name} must be a probability from 0 to 1, got {value!r}"
            )
    lowest = math.ceil(float(min_toxicity) * 100)  # type: ignore[arg-type]
    highest = math.floor(float(max_toxicity) * 100)  # type: ignore[arg-type]
    if lowest > highest:
        raise InvalidArgument(
            f"{where}: min_toxicity={min_toxicity} must not be above max_toxicity={max_toxicity}"
        )
    # builds(dict, ...) rather than fixed_dictionaries(), which costs a draw of its own.
    return st.builds(
        dict,
        stream=st.sampled_from(tuple(streams)),
        toxicity=_between(lowest, highest).map(lambda hundredths: hundredths / 100),
    )


def _toxic_faults(
    where: str,
    cls: type[ToxicT],
    option: str,
    targets: object,
    bounds: tuple[object, object],
    toxic: tuple[object, object, object],
    *,
    kinder_up: bool = False,
) -> SearchStrategy[ToxicT]:
    """Faults of `cls` on one of `targets` whose `option` is drawn within `bounds` (checked
    against the option's own bound), shrinking toward the lower bound, or toward the upper one
    when more is kinder (`kinder_up`); `toxic` is (streams, min_toxicity, max_toxicity)."""

    def build() -> SearchStrategy[ToxicT]:
        names = _targets(where, targets)
        low, high = _bounds(where, cls, option, *bounds)
        return st.builds(
            lambda target, value, options: cls(target, **{option: value}, **options),
            st.sampled_from(names),
            _weaker_toward_max(low, high) if kinder_up else _between(low, high),
            _toxic_options(where, *toxic),
        )

    return _lazy(build)


# ----------------------------------------------------------------------- one kind per strategy
def latencies(
    targets: Sequence[str],
    *,
    min_value: int = 0,
    max_value: int = 500,
    streams: Sequence[Stream] = DOWNSTREAM,
    min_toxicity: float = 1.0,
    max_toxicity: float = 1.0,
) -> SearchStrategy[Latency]:
    """`Latency` faults of `min_value` to `max_value` milliseconds (no jitter) on one of
    `targets`, shrinking toward `min_value`."""
    return _toxic_faults(
        "latencies()",
        Latency,
        "ms",
        targets,
        (min_value, max_value),
        (streams, min_toxicity, max_toxicity),
    )


def jitters(
    targets: Sequence[str],
    *,
    min_value: int = 0,
    max_value: int = 200,
    latency: int | None = None,
    streams: Sequence[Stream] = DOWNSTREAM,
    min_toxicity: float = 1.0,
    max_toxicity: float = 1.0,
) -> SearchStrategy[Latency]:
    """`Latency` faults whose jitter is `min_value` to `max_value` ms around `latency` ms
    (default: as much as the jitter, so that delays spread over 0 to twice the jitter and are
    never cut at 0). The engine draws each chunk's delay from its seed. Shrinks toward the
    smallest jitter."""

    def build() -> SearchStrategy[Latency]:
        names = _targets("jitters()", targets)
        low, high = _bounds("jitters()", Latency, "jitter", min_value, max_value)
        if latency is not None:
            _bounds("jitters()", Latency, "ms", latency, latency)
        return st.builds(
            lambda target, jitter, options: Latency(
                target, jitter if latency is None else latency, jitter=jitter, **options
            ),
            st.sampled_from(names),
            _between(low, high),
            _toxic_options("jitters()", streams, min_toxicity, max_toxicity),
        )

    return _lazy(build)


def bandwidths(
    targets: Sequence[str],
    *,
    min_value: int = 1,
    max_value: int = 1000,
    streams: Sequence[Stream] = DOWNSTREAM,
    min_toxicity: float = 1.0,
    max_toxicity: float = 1.0,
) -> SearchStrategy[Bandwidth]:
    """`Bandwidth` limits of `min_value` to `max_value` KB/s, shrinking toward `max_value`
    (the least harmful). 0 stops data entirely: allow it with `min_value=0`."""
    return _toxic_faults(
        "bandwidths()",
        Bandwidth,
        "rate",
        targets,
        (min_value, max_value),
        (streams, min_toxicity, max_toxicity),
        kinder_up=True,
    )


def stalls(
    targets: Sequence[str],
    *,
    min_value: int = 0,
    max_value: int = 1000,
    streams: Sequence[Stream] = DOWNSTREAM,
    min_toxicity: float = 1.0,
    max_toxicity: float = 1.0,
) -> SearchStrategy[Stall]:
    """`Stall` faults (all data swallowed) closing the connection after `min_value` to
    `max_value` ms without data (0: never), shrinking toward `min_value`."""
    return _toxic_faults(
        "stalls()",
        Stall,
        "timeout",
        targets,
        (min_value, max_value),
        (streams, min_toxicity, max_toxicity),
    )


def resets(
    targets: Sequence[str],
    *,
    min_value: int = 0,
    max_value: int = 1000,
    streams: Sequence[Stream] = DOWNSTREAM,
    min_toxicity: float = 1.0,
    max_toxicity: float = 1.0,
) -> SearchStrategy[ResetPeer]:
    """`ResetPeer` faults: a connection's first data is swallowed and the connection reset
    `min_value` to `max_value` ms later, shrinking toward `min_value` (an immediate reset is
    a prompt error; a later one is a hang first)."""
    return _toxic_faults(
        "resets()",
        ResetPeer,
        "timeout",
        targets,
        (min_value, max_value),
        (streams, min_toxicity, max_toxicity),
    )


def slow_closes(
    targets: Sequence[str],
    *,
    min_value: int = 0,
    max_value: int = 1000,
    streams: Sequence[Stream] = DOWNSTREAM,
    min_toxicity: float = 1.0,
    max_toxicity: float = 1.0,
) -> SearchStrategy[SlowClose]:
    """`SlowClose` faults holding each close back by `min_value` to `max_value` ms,
    shrinking toward `min_value`."""
    return _toxic_faults(
        "slow_closes()",
        SlowClose,
        "delay",
        targets,
        (min_value, max_value),
        (streams, min_toxicity, max_toxicity),
    )


def slicers(
    targets: Sequence[str],
    *,
    min_size: int = 1,
    max_size: int = 1024,
    max_delay: int = 1000,
    streams: Sequence[Stream] = DOWNSTREAM,
    min_toxicity: float = 1.0,
    max_toxicity: float = 1.0,
) -> SearchStrategy[Slicer]:
    """`Slicer` faults cutting data into writes of `min_size` to `max_size` bytes on average,
    +/- less than the average, `0` to `max_delay` MICROseconds apart. Shrinks toward the largest
    slices, no variation and no delay."""

    def build() -> SearchStrategy[Slicer]:
        names = _targets("slicers()", targets)
        low, high = _bounds("slicers()", Slicer, "average_size", min_size, max_size)
        _bounds("slicers()", Slicer, "delay", 0, max_delay)

        @st.composite
        def sliced(draw: st.DrawFn) -> Slicer:
            target = draw(st.sampled_from(names))
            average = draw(_weaker_toward_max(low, high))
            # A share of the average, below it (the engine refuses a variation as large as the
            # average), drawn the same way whatever the average: an average whose variation
            # took no draw would look simpler to Hypothesis than a larger, kinder one.
            variation = (average - 1) * draw(st.integers(0, 100)) // 100
            delay = draw(_between(0, max_delay))
            options = draw(_toxic_options("slicers()", streams, min_toxicity, max_toxicity))
            return Slicer(target, average, size_variation=variation, delay=delay, **options)

        return sliced()

    return _lazy(build)


def limit_datas(
    targets: Sequence[str],
    *,
    min_value: int = 0,
    max_value: int = 10_000,
    streams: Sequence[Stream] = DOWNSTREAM,
    min_toxicity: float = 1.0,
    max_toxicity: float = 1.0,
) -> SearchStrategy[LimitData]:
    """`LimitData` faults closing connections after `min_value` to `max_value` bytes,
    shrinking toward `max_value` (more data gets through)."""
    return _toxic_faults(
        "limit_datas()",
        LimitData,
        "bytes",
        targets,
        (min_value, max_value),
        (streams, min_toxicity, max_toxicity),
        kinder_up=True,
    )


def dependency_downs(
    targets: Sequence[str], *, modes: Collection[str] = NETWORK_DOWN_MODES
) -> SearchStrategy[Down]:
    """`Down` faults on one of `targets`, in one of `modes` (default: those acting at the
    proxy; `kill`, `terminate`, `stop` and `pause` need services the plugin started).
    Shrinks toward the least harmful mode given (see HARM_ORDER_OF_MODES)."""

    def build() -> SearchStrategy[Down]:
        names = _targets("dependency_downs()", targets)
        if isinstance(modes, str) or not isinstance(modes, Collection) or not modes:
            raise InvalidArgument(
                "dependency_downs(): modes must be a non-empty list of"
                f" {', '.join(HARM_ORDER_OF_MODES)}, got {modes!r}"
            )
        unknown = [mode for mode in modes if mode not in HARM_ORDER_OF_MODES]
        if unknown:
            raise InvalidArgument(
                f"dependency_downs(): unknown mode {unknown[0]!r}; modes:"
                f" {', '.join(HARM_ORDER_OF_MODES)}"
            )
        ordered = [mode for mode in HARM_ORDER_OF_MODES if mode in modes]
        return st.builds(
            lambda target, mode: Down(target, mode=mode),
            st.sampled_from(names),
            st.sampled_from(ordered),
        )

    return _lazy(build)


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class KindStrategy:
    """How `faults()` draws one kind: `strategy(targets)` with its default bounds, and `harm`
    (faults() shrinks toward the kinds of lowest harm)."""

    kind: str
    strategy: Callable[[Sequence[str]], SearchStrategy[Fault]]
    harm: int


FAULT_STRATEGIES: dict[str, KindStrategy] = {}


def register_fault_strategy(
    kind: str, strategy: Callable[[Sequence[str]], SearchStrategy[Fault]], *, harm: int
) -> None:
    """Let `faults()` and `fault_schedules()` draw faults of `kind` (a kind of
    `pytest_chaos.faults.FAULT_TYPES`) with `strategy(targets)`. `harm` places it in the
    shrink order: 1 slows data down, 2 distorts or throttles it, 3 cuts connections,
    4 hangs them, 5 takes the dependency away."""
    if kind not in FAULT_TYPES:
        raise ValueError(f"no fault kind {kind!r}; kinds: {', '.join(FAULT_TYPES)}")
    FAULT_STRATEGIES[kind] = KindStrategy(kind, strategy, harm)


# Each entry draws a target and one magnitude (a slicer, three), so that faults() shrinks
# toward the kinds listed first. Jitter is not drawn here: `faults(...) | jitters(...)`.
register_fault_strategy("latency", latencies, harm=1)
register_fault_strategy("slicer", slicers, harm=2)
register_fault_strategy("bandwidth", bandwidths, harm=2)
register_fault_strategy("slow_close", slow_closes, harm=2)
register_fault_strategy("limit_data", limit_datas, harm=3)
register_fault_strategy("reset_peer", resets, harm=3)
register_fault_strategy("stall", stalls, harm=4)
register_fault_strategy("dependency_down", dependency_downs, harm=5)


def _kinds(where: str, kinds: object) -> list[KindStrategy]:
    """The registry's entries for `kinds` (None: all), least harmful first."""
    known = ", ".join(FAULT_STRATEGIES)
    if kinds is None:
        chosen = list(FAULT_STRATEGIES.values())
    else:
        if isinstance(kinds, str) or not isinstance(kinds, Collection) or not kinds:
            raise InvalidArgument(
                f"{where}: kinds must be None or a non-empty list of fault kinds ({known}),"
                f" got {kinds!r}"
            )
        chosen = []
        for kind in kinds:
            if kind not in FAULT_STRATEGIES:
                what = "no strategy for kind" if kind in FAULT_TYPES else "unknown fault kind"
                raise InvalidArgument(f"{where}: {what} {kind!r}; kinds with a strategy: {known}")
            chosen.append(FAULT_STRATEGIES[kind])
    return sorted(chosen, key=lambda entry: entry.harm)


def faults(
    targets: Sequence[str], *, kinds: Collection[str] | None = None
) -> SearchStrategy[Fault]:
    """One fault of any of `kinds` (default: every kind in FAULT_STRATEGIES) on any of
    `targets`, with each kind's default bounds. Shrinks toward the least harmful kind, and
    within it toward the weakest fault. For other bounds, combine the per-kind strategies:
    `st.one_of(latencies(["redis"], max_value=50), resets(["redis"]))`."""

    def build() -> SearchStrategy[Fault]:
        names = _targets("faults()", targets)
        return st.one_of([entry.strategy(names) for entry in _kinds("faults()", kinds)])

    return _lazy(build)


# ----------------------------------------------------------------------------- schedules
def fault_schedules(
    targets: Sequence[str] | None = None,
    *,
    kinds: Collection[str] | None = None,
    elements: SearchStrategy[Fault] | None = None,
    min_faults: int = 0,
    max_faults: int = 3,
    max_duration: float = 1.0,
    min_step_duration: float = 0.01,
) -> SearchStrategy[Schedule]:
    """Schedules of `min_faults` to `max_faults` steps, each a fault from `faults(targets,
    kinds=kinds)` (or from `elements`, a strategy of faults, instead of targets and kinds),
    starting at an offset and lasting at least `min_step_duration` seconds, every step over
    by `max_duration` seconds: the bound on fault time per example. Each schedule carries a
    seed for the engine. One target is down in one way at a time (a later overlapping
    `dependency_down` on it is left out). Shrinks toward fewer steps, then shorter ones
    starting earlier, then weaker faults, then seed 0."""

    def build() -> SearchStrategy[Schedule]:
        where = "fault_schedules()"
        if (targets is None) == (elements is None):
            raise InvalidArgument(f"{where}: give either targets or elements, not both or none")
        if elements is not None and kinds is not None:
            raise InvalidArgument(f"{where}: kinds goes with targets, not with elements")
        if elements is not None and not isinstance(elements, SearchStrategy):
            raise InvalidArgument(
                f"{where}: elements must be a strategy of faults, got {elements!r}"
            )
        if targets is not None:
            _kinds(where, kinds)
            _targets(where, targets)
        chosen_faults = faults(targets, kinds=kinds) if elements is None else elements  # type: ignore[arg-type]
        low = _whole(where, "min_faults", min_faults, 0, MAX_FAULTS)
        high = _whole(where, "max_faults", max_faults, 0, MAX_FAULTS)
        if low > high:
            raise InvalidArgument(f"{where}: min_faults={low} must not be above max_faults={high}")
        span_ms = _milliseconds(where, "max_duration", max_duration, MAX_SECONDS)
        shortest_ms = _milliseconds(where, "min_step_duration", min_step_duration, MAX_SECONDS)
        if shortest_ms > span_ms:
            raise InvalidArgument(
                f"{where}: min_step_duration={min_step_duration} must not be above"
                f" max_duration={max_duration}"
            )

        @st.composite
        def schedule(draw: st.DrawFn) -> Schedule:
            # The faults first, then their times: Hypothesis then drops a fault without
            # disturbing the others' draws, and so shrinks to fewer faults much more surely.
            chosen = draw(st.lists(chosen_faults, min_size=low, max_size=high))
            steps = []
            for fault in chosen:
                offset = draw(_between(0, span_ms - shortest_ms))
                duration = draw(_between(shortest_ms, span_ms - offset))
                steps.append(Step(fault, offset=offset / 1000, duration=duration / 1000))
            return _one_down_at_a_time(steps, draw(seeds()))

        return schedule().filter(lambda drawn: len(drawn) >= low)

    return _lazy(build)


def _milliseconds(where: str, name: str, seconds: object, maximum: float) -> int:
    valid = (
        isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and 0.001 <= seconds <= maximum
    )
    if not valid:
        raise InvalidArgument(
            f"{where}: {name} must be a number of seconds from 0.001 to {maximum:.0f},"
            f" got {seconds!r}"
        )
    return round(float(seconds) * 1000)  # type: ignore[arg-type]


def _one_down_at_a_time(steps: list[Step], seed: int) -> Schedule:
    kept: list[Step] = []
    for step in sorted(steps, key=lambda s: s.offset):
        if first_overlapping_downs([*kept, step]) is None:
            kept.append(step)
    return Schedule(tuple(kept), seed=seed)
