"""Stateful fault fuzzing: Hypothesis state machines whose nemesis rules hurt real dependencies.

Subclass `ChaosMachine` and add your own workload rules and invariants; the nemesis rules
come with it and mix with yours:

- `start_fault(fault)`: a fault drawn from `faults(targets)` (or the strategy you give) is
  applied until a later step stops it;
- `stop_fault(fault)`: one of the active faults is reverted;
- `kill_service(name)` / `pause_service(name)`: SIGKILL or SIGSTOP one of `services`
  (started by the plugin with `service_fixture`); stopping it brings the service back;
- `heal_all()`: everything is reverted.

Hypothesis cannot inject pytest fixtures into a machine, so the test hands them over, and
runs it with `run_chaos_machine`::

    class CounterMachine(ChaosMachine):
        def __init__(self, chaos, redis):
            super().__init__(chaos, targets=["redis"], services=["redis"])
            self.client = Redis(host=redis.host, port=redis.port, socket_timeout=0.2)

        @rule(amount=st.integers(1, 5))
        def add(self, amount): ...

        @invariant()
        def total_is_right(self): ...

    def test_counter(chaos, redis):
        run_chaos_machine(lambda: CounterMachine(chaos, redis))

Each run (one Hypothesis example) seeds the engine with a seed drawn from the run, and starts
a fresh record on `chaos`, so a failing test shows the chaos timeline of the final, shrunk run.
Every fault is healed at the end of every run (`teardown`; `run_chaos_machine` also heals a run
whose `teardown` forgot to call this one's). The faults active at each step are written beside
it in the program Hypothesis prints for a failure (`state.add(amount=2)  # faults: ...`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.strategies import SearchStrategy

from pytest_chaos.apply import AppliedFault, known
from pytest_chaos.faults import Down, Fault, FaultError
from pytest_chaos.schedules import current_example, draw_seed, revert_newest_first
from pytest_chaos.strategies import faults

if TYPE_CHECKING:
    from pytest_chaos.chaos import Chaos

MachineT = TypeVar("MachineT", bound="ChaosMachine")


class ChaosMachine(RuleBasedStateMachine):
    """A state machine with nemesis rules acting on `targets` (proxy names) and `services`
    (services the plugin started, for kill and pause), through `chaos`.

    `faults` is the strategy `start_fault` draws from (default: `faults(targets)`, every kind
    with its default bounds).
    """

    def __init__(
        self,
        chaos: Chaos,
        *,
        targets: Sequence[str] = (),
        services: Sequence[str] = (),
        faults: SearchStrategy[Fault] | None = None,
    ) -> None:
        super().__init__()
        self.chaos = chaos
        self.chaos_targets = _names("targets", targets)
        self.chaos_services = _names("services", services)
        self._check_known()
        if faults is None and self.chaos_targets:
            faults = _default_faults(self.chaos_targets)
        self.nemesis_faults = faults
        self.active: list[AppliedFault] = []
        self._begin_run()

    # -- nemesis rules
    @precondition(lambda self: self.nemesis_faults is not None)
    @rule(fault=st.runner().flatmap(lambda machine: machine.nemesis_faults))
    def start_fault(self, fault: Fault) -> None:
        """Apply `fault` until a later step stops it (a second way down for a target that is
        already down is left out: one at a time)."""
        if isinstance(fault, Down) and self.is_down(fault.target):
            note(f"# {fault.target!r} is already down: {fault} left out")
            return
        self.active.append(self.chaos.inject(fault))

    @precondition(lambda self: bool(self.active))
    @rule(fault=st.runner().flatmap(lambda machine: st.sampled_from(machine.active_faults)))
    def stop_fault(self, fault: Fault) -> None:
        """Revert one active fault (a killed or paused service is brought back)."""
        for applied in self.active:
            if applied.fault == fault:
                self.active.remove(applied)
                applied.revert()
                return

    @precondition(lambda self: bool(self.chaos_services))
    @rule(name=st.runner().flatmap(lambda machine: st.sampled_from(machine.chaos_services)))
    def kill_service(self, name: str) -> None:
        """SIGKILL the service (docker kill); `stop_fault` or `heal_all` starts it again."""
        self.start_fault(Down(name, mode="kill"))

    @precondition(lambda self: bool(self.chaos_services))
    @rule(name=st.runner().flatmap(lambda machine: st.sampled_from(machine.chaos_services)))
    def pause_service(self, name: str) -> None:
        """Freeze the service (SIGSTOP, docker pause); `stop_fault` or `heal_all` resumes it."""
        self.start_fault(Down(name, mode="pause"))

    @precondition(lambda self: bool(self.active))
    @rule()
    def heal_all(self) -> None:
        """Revert every active fault, newest first."""
        self.heal()

    # -- the run
    @property
    def active_faults(self) -> list[Fault]:
        """The faults applied right now, oldest first."""
        return [applied.fault for applied in self.active]

    def heal(self) -> None:
        """Revert every active fault, newest first, each whatever the others did; the first
        failure is raised at the end."""
        errors = revert_newest_first(self.active)
        self.active.clear()
        if errors:
            raise errors[0]

    def teardown(self) -> None:
        """Heal everything at the end of the run (call it from an override)."""
        if self.active:
            note(f"# healed at the end of the run: {', '.join(map(str, self.active_faults))}")
        self.heal()

    def _begin_run(self) -> None:
        example = current_example()
        if example is None:
            return
        seed = draw_seed(example)
        text = (
            f"{type(self).__name__}: engine seed {seed}, drawn for this run; faults on"
            f" {', '.join(self.chaos_targets) or 'no proxy'}, services"
            f" {', '.join(self.chaos_services) or 'none'}"
        )
        self.chaos.begin_example(seed, key=example, note=text)
        note(f"# {text}")

    def is_down(self, target: str) -> bool:
        """A `dependency_down` (kill and pause included) on `target` is active."""
        return any(isinstance(f, Down) and f.target == target for f in self.active_faults)

    def _repr_step(self, *args: Any, **kwargs: Any) -> str:
        # How Hypothesis prints each step of the program it reports (after the step ran):
        # the faults active then, beside it.
        line: str = super()._repr_step(*args, **kwargs)
        first, newline, rest = line.partition("\n")
        faults = ", ".join(str(fault) for fault in self.active_faults) or "none"
        return f"{first}  # faults: {faults}{newline}{rest}"

    def _check_known(self) -> None:
        __tracebackhide__ = True
        proxies = self.chaos.client.proxies()
        for target in self.chaos_targets:
            if target not in proxies:
                raise FaultError(
                    f"ChaosMachine: target {target!r} names no known proxy; known proxies:"
                    f" {known(proxies)}"
                )
        for service in self.chaos_services:
            self.chaos.service(service)


def _names(what: str, names: object) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise FaultError(f"ChaosMachine: {what} must be a list of names, got {names!r}")
    if not all(isinstance(name, str) and name for name in names):
        raise FaultError(f"ChaosMachine: {what} must be a list of names, got {names!r}")
    return tuple(names)


def _default_faults(targets: Sequence[str]) -> SearchStrategy[Fault]:
    return faults(targets)


def run_chaos_machine(factory: Callable[[], MachineT], *, settings: settings | None = None) -> None:
    """Run the state machine that `factory()` makes (a fresh one per run) as a test: Hypothesis
    searches for a failing program, shrinks it, and prints it with the active faults beside
    each step. `settings` (default: the current profile's) get no deadline, as faults make
    steps slow by design, unless they set one of their own. Every run is healed when it ends."""
    machines: list[ChaosMachine] = []

    def fresh() -> MachineT:
        # A run whose teardown did not heal (an override without super()) is healed now,
        # before it can leak into the next run.
        while machines:
            machines.pop().heal()
        machine = factory()
        machines.append(machine)
        return machine

    try:
        # Hypothesis documents any callable that returns a machine; its annotation says type.
        run_state_machine_as_test(fresh, settings=_without_default_deadline(settings))  # type: ignore[arg-type]
    finally:
        while machines:
            machines.pop().heal()


def _without_default_deadline(chosen: settings | None) -> settings:
    """`chosen` (default: the current profile's settings) with no deadline, unless it has a
    deadline of its own (another than Hypothesis's default)."""
    current: Any = chosen if chosen is not None else settings.default
    if current.deadline == settings.get_profile("default").deadline:
        return settings(current, deadline=None)
    return settings(current)
