"""The Hypothesis strategies of `pytest_chaos.strategies`: what they draw, how they shrink,
and how they refuse bad arguments. No engine here: see test_engine_accepts.py for that."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import SearchStrategy

from pytest_chaos.faults import (
    FAULT_TYPES,
    Bandwidth,
    Down,
    Fault,
    Latency,
    LimitData,
    RawToxic,
    ResetPeer,
    Slicer,
    SlowClose,
    Stall,
)
from pytest_chaos.schedules import Schedule, Step
from pytest_chaos.strategies import (
    FAULT_STRATEGIES,
    bandwidths,
    dependency_downs,
    fault_schedules,
    faults,
    jitters,
    latencies,
    limit_datas,
    register_fault_strategy,
    resets,
    seeds,
    slicers,
    slow_closes,
    stalls,
)

TARGETS = ["redis", "postgres"]
# The minimal examples below are found by shrinking: no need for many examples.
FIND = settings(database=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


def minimal(strategy: SearchStrategy[Any], condition: Callable[[Any], bool] = bool) -> Any:
    """The value Hypothesis shrinks to among those satisfying `condition`."""
    from hypothesis import find

    return find(strategy, lambda value: condition(value) or condition is bool, settings=FIND)


# --------------------------------------------------------------------------------- shrinking
HARMLESS = [
    (faults(TARGETS), Latency("redis", 0)),
    (faults(["redis"], kinds=["dependency_down", "stall", "reset_peer"]), ResetPeer("redis")),
    (latencies(TARGETS, min_value=5), Latency("redis", 5)),
    (jitters(TARGETS), Latency("redis", 0, jitter=0)),
    (bandwidths(TARGETS), Bandwidth("redis", 1000)),
    (stalls(TARGETS), Stall("redis")),
    (resets(TARGETS), ResetPeer("redis")),
    (slow_closes(TARGETS), SlowClose("redis", 0)),
    (slicers(TARGETS), Slicer("redis", 1024)),
    (limit_datas(TARGETS), LimitData("redis", 10_000)),
    (dependency_downs(TARGETS), Down("redis", mode="refuse")),
    (
        dependency_downs(TARGETS, modes=["pause", "kill", "blackhole"]),
        Down("redis", mode="blackhole"),
    ),
    (
        latencies(TARGETS, streams=["both", "upstream"], min_toxicity=0.25),
        Latency("redis", 0, stream="both", toxicity=0.25),
    ),
]


@pytest.mark.parametrize(
    ("strategy", "harmless"),
    HARMLESS,
    ids=lambda value: str(value) if isinstance(value, Fault) else None,
)
def test_every_strategy_shrinks_toward_its_most_harmless_fault(
    strategy: SearchStrategy[Fault], harmless: Fault
) -> None:
    assert minimal(strategy) == harmless


def test_a_fault_shrinks_to_the_weakest_that_still_satisfies_the_condition() -> None:
    # As when a test fails from 120 ms on: the shrunk example is exactly 120 ms, on the first
    # target, with nothing else changed.
    breaking = minimal(faults(TARGETS), lambda f: isinstance(f, Latency) and f.ms >= 120)
    assert breaking == Latency("redis", 120)
    # A down dependency shrinks to the least harmful mode that still breaks.
    silent = minimal(faults(TARGETS), lambda f: isinstance(f, Down) and f.mode != "refuse")
    assert silent == Down("redis", mode="reset")


def test_a_schedule_shrinks_to_no_fault_and_seed_0() -> None:
    assert minimal(fault_schedules(TARGETS)) == Schedule((), seed=0)


def test_a_schedule_shrinks_to_the_two_weakest_shortest_faults_that_coincide() -> None:
    # As when code breaks only while the cache is slow (150 ms or more) and the database is
    # down at the same time: two steps, the shortest, at once, 150 ms, and `refuse`.
    def coincide(schedule: Schedule) -> bool:
        slow = [s for s in schedule if isinstance(s.fault, Latency) and s.fault.ms >= 150]
        down = [s for s in schedule if isinstance(s.fault, Down) and s.fault.mode != "refuse"]
        return any(a.offset < b.end and b.offset < a.end for a in slow for b in down)

    schedule = minimal(fault_schedules(TARGETS, kinds=["latency", "dependency_down"]), coincide)
    assert schedule == Schedule(
        [
            Step(Latency("redis", 150), offset=0.0, duration=0.01),
            Step(Down("redis", mode="reset"), offset=0.0, duration=0.01),
        ],
        seed=0,
    )


def test_a_schedule_shrinks_each_fault_toward_harmless() -> None:
    schedule = minimal(
        fault_schedules(TARGETS),
        lambda s: any(isinstance(step.fault, Bandwidth) and step.fault.rate < 500 for step in s),
    )
    step = Step(Bandwidth("redis", 499), offset=0.0, duration=0.01)
    assert schedule == Schedule([step], seed=0)


def test_seeds_shrink_to_0_and_fit_the_engine() -> None:
    assert minimal(seeds()) == 0
    assert minimal(seeds(), lambda seed: seed > 2**62) == 2**62 + 1


# --------------------------------------------------------------------------------- drawing
@settings(max_examples=200, database=None)
@given(fault=faults(TARGETS))
def test_every_fault_prints_as_the_python_that_builds_it(fault: Fault) -> None:
    assert eval(fault.as_python(), vars_of_faults()) == fault


@settings(max_examples=100, database=None)
@given(schedule=fault_schedules(TARGETS, max_faults=4))
def test_every_schedule_prints_as_the_python_that_builds_it(schedule: Schedule) -> None:
    assert eval(repr(schedule), vars_of_faults()) == schedule


def vars_of_faults() -> dict[str, Any]:
    return {cls.__name__: cls for cls in FAULT_TYPES.values()} | {
        "Step": Step,
        "Schedule": Schedule,
    }


@settings(max_examples=200, database=None)
@given(
    schedule=fault_schedules(["redis"], kinds=["dependency_down"], max_faults=6, max_duration=0.5)
)
def test_a_schedule_takes_a_target_down_one_way_at_a_time_and_ends_in_time(
    schedule: Schedule,
) -> None:
    downs = sorted(schedule, key=lambda step: step.offset)
    for first, second in itertools.pairwise(downs):
        assert second.offset >= first.end
    assert schedule.span <= 0.5
    assert all(step.duration >= 0.01 for step in schedule)


@settings(max_examples=100, database=None)
@given(fault=faults(TARGETS, kinds=["latency", "reset_peer"]))
def test_kinds_limit_what_is_drawn(fault: Fault) -> None:
    assert isinstance(fault, Latency | ResetPeer)
    assert fault.target in TARGETS


def test_a_new_kind_is_one_registry_entry() -> None:
    def raw_toxics(targets: Any) -> SearchStrategy[Fault]:
        return st.builds(RawToxic, st.sampled_from(targets), st.just("noop"))

    register_fault_strategy("toxic", raw_toxics, harm=1)
    try:
        assert minimal(faults(TARGETS), lambda f: isinstance(f, RawToxic)) == RawToxic(
            "redis", "noop"
        )
        assert minimal(faults(TARGETS, kinds=["toxic"])) == RawToxic("redis", "noop")
    finally:
        del FAULT_STRATEGIES["toxic"]


def test_only_known_kinds_join_the_registry() -> None:
    with pytest.raises(ValueError, match=r"^no fault kind 'packet_los'; kinds: latency, "):
        register_fault_strategy("packet_los", faults, harm=1)


# ------------------------------------------------------------------------- bad arguments
KINDS = "latency, slicer, bandwidth, slow_close, limit_data, reset_peer, stall, dependency_down"
MODES = "refuse, reset, blackhole, stop, terminate, kill, pause"
MS = "a whole number of milliseconds from 0 to 86400000"
NAMES = "list of proxy or service names"
BAD_ARGUMENTS = [
    (faults("redis"), f"faults(): targets must be a {NAMES}, e.g. ['redis'], got 'redis'"),
    (faults([]), f"faults(): targets must be a non-empty {NAMES}, got []"),
    (faults(["redis", ""]), f"faults(): targets must be a non-empty {NAMES}, got ['redis', '']"),
    (
        faults(TARGETS, kinds=["latncy"]),
        f"faults(): unknown fault kind 'latncy'; kinds with a strategy: {KINDS}",
    ),
    (
        faults(TARGETS, kinds=["toxic"]),
        f"faults(): no strategy for kind 'toxic'; kinds with a strategy: {KINDS}",
    ),
    (
        faults(TARGETS, kinds="latency"),
        f"faults(): kinds must be None or a non-empty list of fault kinds ({KINDS}), got 'latency'",
    ),
    (latencies(TARGETS, min_value=-1), f"latencies(): min_value must be {MS}, got -1"),
    (latencies(TARGETS, max_value=1.5), f"latencies(): max_value must be {MS}, got 1.5"),  # type: ignore[arg-type]
    (
        latencies(TARGETS, min_value=10, max_value=5),
        "latencies(): min_value=10 must not be above max_value=5",
    ),
    (
        latencies(TARGETS, streams=["down"]),  # type: ignore[list-item]
        "latencies(): streams must hold only downstream, upstream, both, got 'down'",
    ),
    (
        latencies(TARGETS, min_toxicity=2),
        "latencies(): min_toxicity must be a probability from 0 to 1, got 2",
    ),
    (jitters(TARGETS, latency=-5), f"jitters(): min_value must be {MS}, got -5"),
    (
        bandwidths(TARGETS, max_value=10**10),
        "bandwidths(): max_value must be a whole number of KB/s from 0 to 1000000000,"
        " got 10000000000",
    ),
    (
        slicers(TARGETS, min_size=0),
        "slicers(): min_value must be a whole number of bytes from 1 to 2147483648, got 0",
    ),
    (
        dependency_downs(TARGETS, modes=["refuse", "explode"]),
        f"dependency_downs(): unknown mode 'explode'; modes: {MODES}",
    ),
    (
        dependency_downs(TARGETS, modes=[]),
        f"dependency_downs(): modes must be a non-empty list of {MODES}, got []",
    ),
    (fault_schedules(), "fault_schedules(): give either targets or elements, not both or none"),
    (
        fault_schedules(TARGETS, elements=faults(TARGETS)),
        "fault_schedules(): give either targets or elements, not both or none",
    ),
    (
        fault_schedules(elements=faults(TARGETS), kinds=["latency"]),
        "fault_schedules(): kinds goes with targets, not with elements",
    ),
    (
        fault_schedules(elements=[Latency("redis", 1)]),  # type: ignore[arg-type]
        "fault_schedules(): elements must be a strategy of faults, got"
        " [Latency(target='redis', stream='downstream', toxicity=1.0, ms=1, jitter=0)]",
    ),
    (
        fault_schedules(TARGETS, kinds=["nope"]),
        f"fault_schedules(): unknown fault kind 'nope'; kinds with a strategy: {KINDS}",
    ),
    (
        fault_schedules(TARGETS, max_faults=-1),
        "fault_schedules(): max_faults must be a whole number from 0 to 100, got -1",
    ),
    (
        fault_schedules(TARGETS, min_faults=3, max_faults=2),
        "fault_schedules(): min_faults=3 must not be above max_faults=2",
    ),
    (
        fault_schedules(TARGETS, max_duration=0),
        "fault_schedules(): max_duration must be a number of seconds from 0.001 to 86400, got 0",
    ),
    (
        fault_schedules(TARGETS, max_duration=0.1, min_step_duration=0.2),
        "fault_schedules(): min_step_duration=0.2 must not be above max_duration=0.1",
    ),
]


@pytest.mark.parametrize(("strategy", "message"), BAD_ARGUMENTS)
def test_bad_arguments_raise_invalid_argument_when_drawn(
    strategy: SearchStrategy[Any], message: str
) -> None:
    # Defining the strategy raised nothing: the error comes when it is used.
    with pytest.raises(InvalidArgument) as raised:
        minimal(strategy)
    assert str(raised.value) == message


def test_a_test_with_a_bad_strategy_fails_when_it_runs_not_when_it_is_imported() -> None:
    @given(fault=latencies(["redis"], min_value=-1))
    def inner(fault: Fault) -> None:
        raise AssertionError("never runs")

    with pytest.raises(InvalidArgument, match=r"^latencies\(\): min_value must be"):
        inner()
