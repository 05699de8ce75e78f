"""One direction of one UDP session: datagrams in -> datagram toxic stages -> out.

With no toxic a datagram read is sent on at once. With toxics, it goes through a chain of
`DatagramStage`s, one per toxic, each running its toxic's `datagram_pipe` in a task. A stage
keeps every datagram it holds (in its inbox, taken by the toxic and neither sent nor dropped
yet, or scheduled for later), so a toxic removed or updated on a live session hands them on
rather than losing them: a UDP proxy loses datagrams only where a toxic says so.

What happened is recorded per 50 ms run, as TCP `data` events are: a `datagrams` event counts
the datagrams received and sent in the run and lists, by number, those dropped, duplicated,
corrupted and reordered (see `engine/events.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pytest_chaos.engine.link import (
    DATA_RUN_SECONDS,
    StageInbox,
    StageMemories,
    StageMemory,
    ToxicSetting,
    chain,
    receiver_after,
)
from pytest_chaos.engine.udp.datagram import Datagram, DatagramToxic

if TYPE_CHECKING:
    from pytest_chaos.engine.udp.session import Session


class Receiver(Protocol):
    """Whatever a stage hands its datagrams to: the next stage, or the link's output."""

    def put(self, datagram: Datagram) -> None:
        """Take `datagram`."""
        ...


class DatagramStage(StageInbox[Datagram]):
    """One datagram toxic on one session direction: the engine's `DatagramStub` (its waits
    are `StageInbox`'s, as a TCP stage's)."""

    def __init__(self, link: DatagramLink, setting: ToxicSetting, memory: StageMemory) -> None:
        super().__init__()
        self.link = link
        self.setting = setting
        self.memory = memory
        self.rng = memory.rng
        self.state = memory.state
        self.next: Receiver = link.output
        # Taken by the toxic, neither sent nor dropped yet (a datagram `reorder` holds back).
        self._taken: dict[int, Datagram] = {}
        # Sent for a later time: key -> (timer, datagram, when).
        self._scheduled: dict[int, tuple[asyncio.TimerHandle, Datagram, float]] = {}
        self._keys = itertools.count()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the toxic's `datagram_pipe` in a task, if its toxicity roll succeeded."""
        if self.memory.active:
            name = f"toxic {self.setting.name} {self.link.label}"
            self.task = self.link.session.proxy.tasks.spawn(self._run(), name=name)

    async def _run(self) -> None:
        self._busy_since = time.monotonic()
        toxic = self.setting.toxic
        assert isinstance(toxic, DatagramToxic)  # a UDP proxy's collection holds no other
        await toxic.datagram_pipe(self)

    def put(self, datagram: Datagram) -> None:
        """Queue `datagram` for the toxic, or pass it on if the toxic is not active here."""
        if not self.memory.active:
            self.next.put(datagram)
            return
        self._deliver(datagram)

    # -- the DatagramStub side
    # (`receive` and `receive_until`: see `StageInbox`)
    def _hold_taken(self, datagram: Datagram) -> None:
        self._taken[id(datagram)] = datagram

    def send(self, datagram: Datagram, at: float | None = None) -> None:
        """Pass `datagram` on now, or schedule it for `at` (a `now()` time)."""
        self._taken.pop(id(datagram), None)
        now = self.now()
        if at is None or at <= now:
            datagram.arrived = now if at is None else at
            self.next.put(datagram)
            return
        key = next(self._keys)
        timer = asyncio.get_running_loop().call_later(at - now, self._due, key)
        self._scheduled[key] = (timer, datagram, at)

    def _due(self, key: int) -> None:
        _, datagram, at = self._scheduled[key]
        if (wait := at - self.now()) > 0:
            # Timers may fire up to a millisecond early (uvloop rounds them): wait again.
            timer = asyncio.get_running_loop().call_later(wait, self._due, key)
            self._scheduled[key] = (timer, datagram, at)
            return
        del self._scheduled[key]
        datagram.arrived = at
        self.next.put(datagram)

    def drop(self, datagram: Datagram) -> None:
        """Discard `datagram` on purpose, and count it as dropped."""
        self._taken.pop(id(datagram), None)
        self.link.note(datagram, "dropped")

    def mark(self, datagram: Datagram, what: str) -> None:
        """Count `datagram` as duplicated, corrupted or reordered."""
        self.link.note(datagram, what)

    def close_session(self, reason: str) -> None:
        """Close this session on behalf of the toxic."""
        self.link.session.close(by=f"toxic {self.setting.name} ({reason})")

    # -- hand-over when the chain changes
    def detach(self) -> list[Datagram]:
        """Stop this stage and return every datagram it holds, scheduled ones by their time."""
        if self.task is not None:
            self.task.cancel()
        scheduled = sorted(self._scheduled.values(), key=lambda entry: entry[2])
        for timer, _, _ in scheduled:
            timer.cancel()
        pending = [datagram for _, datagram, _ in scheduled]
        pending += [*self._taken.values(), *self.inbox]
        self._scheduled.clear()
        self._taken.clear()
        self.inbox.clear()
        return pending


class DatagramOutput:
    """The end of a session direction: the datagram leaves the proxy."""

    def __init__(self, link: DatagramLink) -> None:
        self.link = link

    def put(self, datagram: Datagram) -> None:
        """Send `datagram` out of the proxy."""
        self.link.write(datagram)


@dataclass
class Run:
    """What happened in one direction of a session within one run (see the module doc)."""

    first: float
    last: float
    received: int = 0
    received_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0
    numbers: dict[str, list[int]] = field(
        default_factory=lambda: {"dropped": [], "duplicated": [], "corrupted": [], "reordered": []}
    )


class DatagramLink:
    """Carries one direction of a session through the toxics configured for that stream."""

    def __init__(
        self,
        session: Session,
        direction: str,
        write: Callable[[bytes], None],
        rng_factory: Callable[[str], random.Random],
    ) -> None:
        self.session = session
        self.direction = direction
        self.label = f"{session.label} {direction}"
        self._write = write
        self.output: DatagramOutput = DatagramOutput(self)
        self.stages: list[DatagramStage] = []
        self._memories = StageMemories(rng_factory)
        # Totals for the session's `session_closed` event.
        self.totals = {"in": 0, "out": 0, "bytes_in": 0, "bytes_out": 0, "dropped": 0}
        self.totals.update(duplicated=0, corrupted=0, reordered=0)
        self.stopped = False
        self._run: Run | None = None

    # -- datagrams
    def feed(self, data: bytes) -> None:
        """Take a datagram read from the source: send it, or pass it into the toxic chain."""
        now = time.monotonic()
        datagram = Datagram(data, now, self.totals["in"])
        self.totals["in"] += 1
        self.totals["bytes_in"] += len(data)
        run = self._run_at(now)
        run.received += 1
        run.received_bytes += len(data)
        if self.stages:
            self.stages[0].put(datagram)
        else:
            self.write(datagram)

    def write(self, datagram: Datagram) -> None:
        """Send `datagram` to the destination and count it."""
        if self.stopped:
            return
        self._write(datagram.data)
        self.totals["out"] += 1
        self.totals["bytes_out"] += len(datagram.data)
        run = self._run_at(time.monotonic())
        run.sent += 1
        run.sent_bytes += len(datagram.data)

    def note(self, datagram: Datagram, what: str) -> None:
        """Record that `datagram` was dropped, duplicated, corrupted or reordered."""
        self.totals[what] += 1
        self._run_at(time.monotonic()).numbers[what].append(datagram.number)

    # -- the record
    def _run_at(self, now: float) -> Run:
        run = self._run
        if run is not None and now - run.first < DATA_RUN_SECONDS:
            run.last = now
            return run
        self.close_data_run()
        self._run = Run(now, now)
        self.session.proxy.events.run_opened(self)
        return self._run

    def close_data_run(self) -> None:
        """Record the current run, if any (`EventLog.close_open_runs` calls it before reads)."""
        run, self._run = self._run, None
        if run is None:
            return
        self.session.proxy.events.run_closed(self)
        self.session.record(
            "datagrams",
            at=run.first,
            until=run.last,
            direction=self.direction,
            received=run.received,
            received_bytes=run.received_bytes,
            sent=run.sent,
            sent_bytes=run.sent_bytes,
            **run.numbers,
        )

    # -- toxics
    def set_toxics(self, settings: Sequence[ToxicSetting]) -> None:
        """Make the chain match `settings`, handing on the datagrams of removed or replaced
        stages (kept and updated toxics keep their place; new ones come last)."""
        old_stages = self.stages
        old_index = {stage.setting.name: i for i, stage in enumerate(old_stages)}
        new_stages: list[DatagramStage] = []
        for setting in settings:
            index = old_index.get(setting.name)
            if index is not None and old_stages[index].setting == setting:
                new_stages.append(old_stages[index])
            else:
                new_stages.append(DatagramStage(self, setting, self._memories.memory_for(setting)))
        chain(new_stages, self.output)
        self.stages = new_stages
        kept = {id(stage) for stage in new_stages}
        by_name = {stage.setting.name: stage for stage in new_stages}
        for index, old in enumerate(old_stages):
            if id(old) in kept:
                continue
            # A replaced stage's datagrams go through its replacement, a removed one's on.
            receiver: Receiver = by_name.get(old.setting.name) or receiver_after(
                index, old_index, new_stages, self.output
            )
            if old.setting.name not in by_name:
                self._memories.forget(old.setting.name)
            for datagram in old.detach():
                receiver.put(datagram)
        for stage in new_stages:
            if stage.task is None:
                stage.start()

    def active_toxics(self) -> list[str]:
        """Names of this direction's toxics that act on it (their toxicity roll succeeded)."""
        return [stage.setting.name for stage in self.stages if stage.memory.active]

    def stop(self) -> None:
        """Stop every stage (the session is closing); what they hold is gone with it."""
        self.stopped = True
        for stage in self.stages:
            stage.detach()
        self.stages = []
        self.close_data_run()
