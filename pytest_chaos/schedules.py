"""Fault schedules, and `chaos.apply`: faults for one `with` block, at once or on a timer.

A `Schedule` is plain data: `Step`s, each a fault, when it starts (seconds from the start of
the block) and how long it lasts, plus the seed the engine draws from while it runs.
`str(schedule)` is a table; `repr(schedule)` is Python that builds it again, which is how
Hypothesis prints a falsifying example (so it can be pasted into `@example(...)`)::

    >>> print(Schedule([Step(Latency("redis", 150), offset=0.1, duration=0.25)], seed=7))
    schedule, seed 7 (seconds from the start of the block):
      0.100 - 0.350  latency('redis', ms=150)

`chaos.apply(x)` returns an `Application`: entering it applies a fault, an iterable of faults
(all at once) or a schedule (each step applied at its offset by a timer thread, and reverted
after its duration); leaving it reverts everything it applied, however the block ended. Inside
an example of a Hypothesis test, the first block of each example starts a fresh record on the
`chaos` object and seeds the engine from the schedule's seed or from a seed drawn from the
example (`chaos.begin_example`): every draw of the engine (jitter, toxicity rolls, slicing)
during the example then follows from what Hypothesis generated, so a failing example replays
identically and shrinks.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any

from pytest_chaos.apply import AppliedFault, revert_errors
from pytest_chaos.faults import Down, Fault, FaultError
from pytest_chaos.seeds import SEED_BITS

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from pytest_chaos.chaos import Chaos

MAX_SECONDS = 86_400.0


@dataclass(frozen=True)
class Step:
    """`fault` applied `offset` seconds after the start of the block, for `duration` seconds."""

    fault: Fault
    _: KW_ONLY
    offset: float = 0.0
    duration: float

    def __post_init__(self) -> None:
        __tracebackhide__ = True
        if not isinstance(self.fault, Fault):
            raise FaultError(f"schedule step: fault must be a fault object, got {self.fault!r}")
        _check_seconds("offset", self.offset, minimum_allowed=True)
        _check_seconds("duration", self.duration, minimum_allowed=False)

    @property
    def target(self) -> str:
        """The proxy or service the step's fault acts on."""
        return self.fault.target

    @property
    def end(self) -> float:
        """Seconds from the start of the block at which the step is reverted."""
        return self.offset + self.duration

    def __str__(self) -> str:
        return f"{self.offset:.3f} - {self.end:.3f}  {self.fault}"

    def __repr__(self) -> str:
        return (
            f"Step({self.fault.as_python()}, offset={_seconds(self.offset)},"
            f" duration={_seconds(self.duration)})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _check_seconds(name: str, value: object, *, minimum_allowed: bool) -> None:
    __tracebackhide__ = True
    valid = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if minimum_allowed else value > 0)
        and value <= MAX_SECONDS
    )
    if not valid:
        lowest = "from 0" if minimum_allowed else "above 0"
        raise FaultError(
            f"schedule step: {name} must be a number of seconds {lowest} to"
            f" {MAX_SECONDS:.0f}, got {value!r}"
        )


def _seconds(value: float) -> str:
    return repr(round(value, 6))


@dataclass(frozen=True)
class Schedule:
    """Faults on a timer: `steps` (kept sorted by offset) and the engine's `seed` while they run
    (None: the engine's draws are left as they are)."""

    steps: tuple[Step, ...] = ()
    _: KW_ONLY
    seed: int | None = None

    def __post_init__(self) -> None:
        __tracebackhide__ = True
        steps = tuple(self.steps)
        for step in steps:
            if not isinstance(step, Step):
                raise FaultError(f"schedule: every step must be a Step, got {step!r}")
        object.__setattr__(self, "steps", tuple(sorted(steps, key=lambda s: s.offset)))
        check_seed("schedule", self.seed)
        clash = first_overlapping_downs(self.steps)
        if clash is not None:
            first, second = clash
            raise FaultError(
                f"schedule: {first} and {second} overlap; a target can be down in one way at a time"
            )

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def span(self) -> float:
        """Seconds from the start of the block until the last step has ended."""
        return max((step.end for step in self.steps), default=0.0)

    @property
    def fault_time(self) -> float:
        """The steps' durations added up."""
        return sum(step.duration for step in self.steps)

    def __str__(self) -> str:
        seed = "" if self.seed is None else f", seed {self.seed}"
        if not self.steps:
            return f"schedule{seed}: no faults"
        lines = [f"schedule{seed} (seconds from the start of the block):"]
        lines += [f"  {step}" for step in self.steps]
        return "\n".join(lines)

    def __repr__(self) -> str:
        steps = ", ".join(repr(step) for step in self.steps)
        seed = "" if self.seed is None else f", seed={self.seed}"
        return f"Schedule([{steps}]{seed})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # How Hypothesis prints a falsifying example: one step a line once there are two.
        if len(self.steps) < 2:
            printer.text(repr(self))
            return
        lines = ["Schedule(", "    ["]
        lines += [f"        {step!r}," for step in self.steps]
        lines += ["    ],", *([] if self.seed is None else [f"    seed={self.seed},"]), ")"]
        for index, line in enumerate(lines):
            if index:
                printer.break_()
            printer.text(line)


def check_seed(where: str, seed: object) -> None:
    """A seed is None (leave the engine's draws alone) or what `POST /seed` accepts."""
    __tracebackhide__ = True
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**SEED_BITS
    ):
        raise FaultError(
            f"{where}: seed must be None or a whole number from 0 to 2**{SEED_BITS}-1, got {seed!r}"
        )


def first_overlapping_downs(steps: Iterable[Step]) -> tuple[Step, Step] | None:
    """Two `dependency_down` steps on one target at the same time (two kills of one service
    cannot both be undone), or None."""
    last_down: dict[str, Step] = {}
    for step in sorted(steps, key=lambda s: s.offset):
        if not isinstance(step.fault, Down):
            continue
        previous = last_down.get(step.target)
        if previous is not None and step.offset < previous.end:
            return previous, step
        if previous is None or step.end > previous.end:
            last_down[step.target] = step
    return None


# --------------------------------------------------------------------------- chaos.apply
class Application:
    """`with chaos.apply(x) as applied:`: the faults of `x` for the body of the block.

    `x` is a fault, an iterable of faults (applied together), a `Schedule` or an iterable of
    `Step`s (run on a timer from the start of the block). Everything is reverted when the block
    ends; steps that had not started by then never start. `applied.active` lists the faults
    applied right now, `applied.finished` says whether every step has ended, and
    `applied.wait()` blocks until then.
    """

    def __init__(self, chaos: Chaos, what: object, *, seed: int | None = None) -> None:
        __tracebackhide__ = True
        self.chaos = chaos
        self.faults, self.schedule = _read(what)
        check_seed("chaos.apply", seed)
        self.seed = self.schedule.seed if seed is None and self.schedule is not None else seed
        self.handles: list[AppliedFault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._errors: list[Exception] = []
        self._timer: threading.Thread | None = None
        self._started_at = 0.0

    # -- the block
    def __enter__(self) -> Application:
        __tracebackhide__ = True
        faults = self.faults or [step.fault for step in self.schedule or ()]
        proxies = self.chaos.client.proxies()
        for fault in faults:
            self.chaos.check_target(fault, proxies)
        if self.schedule is None:
            clash = _downs_at_once(self.faults)
            if clash is not None:
                raise FaultError(
                    f"chaos.apply: {clash[0]} and {clash[1]} at once; a target can be down in"
                    " one way at a time"
                )
        self._begin()
        self._started_at = time.monotonic()
        if self.schedule is None:
            try:
                for fault in self.faults:
                    self.handles.append(self.chaos.inject(fault))
            except BaseException:
                self._revert_all()
                raise
            self._finished.set()
        elif not self.schedule.steps:
            self._finished.set()
        else:
            self._timer = threading.Thread(
                target=self._run_schedule, name="pytest-chaos schedule", daemon=True
            )
            self._timer.start()
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        __tracebackhide__ = True
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        errors = self._errors + self._revert_all()
        if not errors:
            return
        if exc is not None:
            # The block's own failure says more; the revert's is attached to it.
            exc.add_note(f"pytest-chaos: also, reverting failed: {errors[0]}")
            return
        raise errors[0]

    # -- what the block can ask
    @property
    def active(self) -> list[Fault]:
        """The faults applied by this block right now, oldest first."""
        with self._lock:
            return [handle.fault for handle in self.handles if handle.active]

    @property
    def finished(self) -> bool:
        """Every step has ended (always True for faults applied at once). A step that could
        not be applied ends the schedule too; its error is raised when the block ends."""
        return self._finished.is_set()

    @property
    def elapsed(self) -> float:
        """Seconds since the block started."""
        return time.monotonic() - self._started_at

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every step has ended (or `timeout` seconds); True if they have."""
        return self._finished.wait(timeout)

    # -- inside
    def _begin(self) -> None:
        """A new Hypothesis example starts a fresh record, seeded; outside Hypothesis an
        explicit seed (the argument, or the schedule's) seeds the engine."""
        example = current_example()
        if example is not None and example is not self.chaos.example_key:
            seed = self.seed if self.seed is not None else draw_seed(example)
            note = self._note(seed)
            self.chaos.begin_example(seed, key=example, note=f"{note}\n{self._replay_hint()}")
            _hypothesis_note(note)
            return
        if self.seed is not None:
            self.chaos.client.set_seed(self.seed)
        if example is not None:
            _hypothesis_note(self._note(self.seed))

    def _note(self, seed: int | None) -> str:
        what = (
            str(self.schedule)
            if self.schedule is not None
            else "faults: " + (", ".join(str(f) for f in self.faults) or "none")
        )
        seeded = "" if seed is None else f", engine seed {seed}"
        return f"chaos.apply{seeded}; {what}"

    @staticmethod
    def _replay_hint() -> str:
        return (
            "This is the last example Hypothesis ran. Hypothesis replays a failing example from"
            " its database (.hypothesis/, when it keeps one) before anything else; with"
            " print_blob=True it also prints a @reproduce_failure line that replays it"
            " anywhere, with the same engine seed."
        )

    def _run_schedule(self) -> None:
        assert self.schedule is not None
        # Reverts before applies at the same instant: a step may follow another on its target.
        actions = sorted(
            [(step.offset, 1, index) for index, step in enumerate(self.schedule.steps)]
            + [(step.end, 0, index) for index, step in enumerate(self.schedule.steps)]
        )
        handles: dict[int, AppliedFault] = {}
        try:
            for at, is_apply, index in actions:
                if self._stop.wait(max(0.0, self._started_at + at - time.monotonic())):
                    return
                with self._lock:
                    if is_apply:
                        handles[index] = self.chaos.inject(self.schedule.steps[index].fault)
                        self.handles.append(handles[index])
                    elif index in handles:
                        handles[index].revert()
        except Exception as error:  # raised when the block ends
            self._errors.append(error)
        # Over (a step that failed ends the schedule): a block waiting for the end goes on.
        self._finished.set()

    def _revert_all(self) -> list[Exception]:
        with self._lock:
            return revert_newest_first(self.handles)


def revert_newest_first(handles: Sequence[AppliedFault]) -> list[Exception]:
    """Revert every fault still applied, newest first, each whatever the others did; the errors
    (reverting one already reverted does nothing)."""
    errors: list[Exception] = []
    for handle in reversed(handles):
        try:
            handle.revert()
        except revert_errors() as error:
            errors.append(error)
    return errors


def _read(what: object) -> tuple[list[Fault], Schedule | None]:
    """The faults to apply at once, or the schedule, that `what` stands for."""
    __tracebackhide__ = True
    if isinstance(what, Fault):
        return [what], None
    if isinstance(what, Schedule):
        return [], what
    items: list[object] | None = None
    if isinstance(what, Iterable) and not isinstance(what, str | bytes):
        items = list(what)
    if items is not None and all(isinstance(item, Fault) for item in items):
        return [item for item in items if isinstance(item, Fault)], None
    if items and all(isinstance(item, Step) for item in items):
        problem: str | None = None
        try:
            return [], Schedule(tuple(item for item in items if isinstance(item, Step)))
        except FaultError as error:  # raised below, from the caller's line
            problem = str(error)
        raise FaultError(problem)
    raise FaultError(
        "chaos.apply takes a fault, an iterable of faults, a Schedule or an iterable of Steps,"
        f" got {what!r}"
    )


def _downs_at_once(faults: list[Fault]) -> tuple[Fault, Fault] | None:
    seen: dict[str, Fault] = {}
    for fault in faults:
        if isinstance(fault, Down):
            if fault.target in seen:
                return seen[fault.target], fault
            seen[fault.target] = fault
    return None


# ------------------------------------------------------------------- Hypothesis examples
def current_example() -> object | None:
    """The build context of the Hypothesis example running now, or None (Hypothesis is only
    looked at when something has imported it already)."""
    hypothesis = sys.modules.get("hypothesis")
    if hypothesis is None or not hypothesis.currently_in_test_context():
        return None
    from hypothesis.control import current_build_context

    return current_build_context()


def seeds() -> SearchStrategy[int]:
    """Seeds for the engine's draws (jitter, toxicity rolls, slicing), shrinking toward 0
    (also `pytest_chaos.strategies.seeds`)."""
    from hypothesis import strategies as st

    return st.integers(min_value=0, max_value=2**SEED_BITS - 1)


def draw_seed(example: Any) -> int:
    """A seed for the engine, drawn from the example as a `st.data()` draw would be: part of
    what Hypothesis generates, shrinks (toward 0) and replays. An explicit example
    (`@example(...)`) has nothing to draw from: it runs with seed 0."""
    if getattr(example.data, "max_choices", None) == 0:
        return 0
    return int(example.data.draw(seeds()))


def _hypothesis_note(text: str) -> None:
    from hypothesis import note

    note(text)
