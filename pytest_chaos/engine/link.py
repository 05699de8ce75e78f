"""One direction of one proxied connection: source -> toxic stages -> output.

With no toxic the link is a straight pipe: each chunk read is written at once. With toxics,
every chunk enters a chain of `Stage`s, one per toxic, each running its toxic's `pipe` in a task.
A stage whose toxic does nothing as configured (noop, latency 0: `Toxic.passes_through`), or
lost its toxicity roll, runs no task and holds nothing: it hands each item on as it comes, in
the same call. When every stage of a link is such a stage, nothing is pending anywhere in the
chain, so the link writes what it reads at once, as with no toxic: such toxics cost nothing.
A stage whose toxic only delays items in order (latency: `Toxic.due_time`) runs no task either:
it keeps its items in its inbox, each with its due time, and a timer sends them.

Never dropping, duplicating or reordering a byte when toxics change on a live link rests on one
rule: a stage's pending items are its `held` item (taken from the inbox but not yet fully sent)
followed by its inbox, and every item pending in a stage arrived later than every item pending
in the stages after it. So a removed stage hands its pending items to the end of the next
stage's inbox, and a replaced (updated) stage hands them, in order, to its replacement.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pytest_chaos.engine.stream import Chunk, EndOfStream, Item
from pytest_chaos.engine.toxics import Toxic

if TYPE_CHECKING:
    from pytest_chaos.engine.connection import Connection

# Pause reading from the source once this many bytes wait inside the toxic chain.
PIPELINE_HIGH_WATER = 4 * 1024 * 1024
PIPELINE_LOW_WATER = 1024 * 1024
# A toxic working longer than this without waiting yields to the loop at its next wait.
BUSY_SECONDS = 0.002
# A "data" event covers the reads of one link within this many seconds of the run's first one.
DATA_RUN_SECONDS = 0.05


@dataclass(frozen=True)
class ToxicSetting:
    """A toxic as configured on the proxy: what the links need to run it."""

    name: str
    type: str
    toxicity: float
    toxic: Toxic


class Receiver(Protocol):
    """Whatever a stage hands its items to: the next stage, or the link's output."""

    def put(self, item: Item) -> None:
        """Take `item`, which arrived later than everything put here before."""
        ...


@dataclass
class StageMemory:
    """What a toxic keeps per connection and direction across updates of its configuration."""

    rng: random.Random
    toxicity: float
    active: bool
    state: dict[str, Any] = field(default_factory=dict)


class StageMemories:
    """The `StageMemory` of each toxic of one link, by toxic name, for TCP and UDP links alike:
    kept while the toxic stays (an update of its attributes keeps its generator, its roll and
    its state), forgotten when it goes."""

    def __init__(self, rng_factory: Callable[[str], random.Random]) -> None:
        self._memories: dict[str, StageMemory] = {}
        self._rng_factory = rng_factory

    def memory_for(self, setting: ToxicSetting) -> StageMemory:
        """The memory of `setting`'s toxic, made and rolled on first use, rolled again when the
        toxicity changed."""
        memory = self._memories.get(setting.name)
        if memory is None:
            rng = self._rng_factory(setting.name)
            memory = StageMemory(rng, setting.toxicity, rng.random() < setting.toxicity)
            self._memories[setting.name] = memory
        elif memory.toxicity != setting.toxicity:
            # A new toxicity is a new roll; an update of attributes alone keeps the roll.
            memory.toxicity = setting.toxicity
            memory.active = memory.rng.random() < setting.toxicity
        return memory

    def forget(self, name: str) -> None:
        """The toxic called `name` left the link: a toxic added again later starts afresh."""
        self._memories.pop(name, None)


class HasSetting(Protocol):
    """A stage, TCP or UDP, as the hand-over sees it: the toxic setting it runs."""

    setting: ToxicSetting


NamedStage = TypeVar("NamedStage", bound=HasSetting)
End = TypeVar("End")


def receiver_after(
    index: int, old_index: dict[str, int], new_stages: Sequence[NamedStage], end: End
) -> NamedStage | End:
    """Where the pending items of the stage that was at `index` go when it is removed: the
    first of `new_stages` that was after it or is new, else `end` (the link's output)."""
    for stage in new_stages:
        position = old_index.get(stage.setting.name)
        if position is None or position > index:
            return stage
    return end


class Chainable(Protocol):
    """A stage, TCP or UDP, as chaining sees it: it hands its items to `next`."""

    next: Any


def chain(stages: Sequence[Chainable], end: object) -> None:
    """Point each of `stages` at the one after it, and the last at `end` (the link's output)."""
    for stage, follower in itertools.pairwise(stages):
        stage.next = follower
    if stages:
        stages[-1].next = end


InboxItem = TypeVar("InboxItem")


class StageInbox(Generic[InboxItem]):
    """The waiting every toxic stage does, TCP (`Stage`) or UDP (`udp.link.DatagramStage`):
    an inbox its toxic's coroutine takes items from, with or without a deadline, and sleeps.

    Every wait yields to the event loop whenever the toxic has worked for `BUSY_SECONDS`
    without waiting, so no toxic (a 1-byte slicer with no delay, a bandwidth toxic catching
    up, a burst of datagrams) can stall the API and the other proxies.
    """

    def __init__(self) -> None:
        self.inbox: deque[InboxItem] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._busy_since = 0.0

    def _deliver(self, item: InboxItem) -> None:
        """Queue `item` and wake the toxic if it waits for one."""
        self.inbox.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def now(self) -> float:
        """The stage's clock: `time.monotonic()`."""
        return time.monotonic()

    async def _take(self, deadline: float) -> InboxItem | None:
        """The next item of the inbox, waiting until `deadline` at most (None: nothing came)."""
        if self.inbox:
            await self._yield_if_busy()
        while not self.inbox:
            if self.now() >= deadline:
                return None
            await self._wait_for_input(deadline)
        return self.inbox.popleft()

    async def _wait_for_input(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None
        if deadline != math.inf:
            # Timers may fire up to a millisecond early (uvloop rounds them): callers re-check.
            timer = loop.call_later(max(0.0, deadline - self.now()), _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
            self._busy_since = time.monotonic()

    async def receive(self) -> InboxItem:
        """Wait for the next item; the stage holds it until it is sent or dropped."""
        item = await self.receive_until(math.inf)
        assert item is not None  # no deadline: only an item ends the wait
        return item

    async def receive_until(self, deadline: float) -> InboxItem | None:
        """As `receive`, but give up at `deadline`: None when nothing came."""
        item = await self._take(deadline)
        if item is not None:
            self._hold_taken(item)
        return item

    def _hold_taken(self, item: InboxItem) -> None:
        """Keep `item`, just taken by the toxic, as pending until it is sent or dropped."""
        raise NotImplementedError

    async def sleep_until(self, deadline: float) -> None:
        """Wait until `now()` reaches `deadline`; `math.inf` waits until the task is cancelled."""
        if self.now() >= deadline:
            await self._yield_if_busy()
            return
        if deadline == math.inf:
            await asyncio.get_running_loop().create_future()  # until the task is cancelled
        # Timers may fire up to a millisecond early (uvloop rounds them): wait again.
        while (wait := deadline - self.now()) > 0:  # noqa: ASYNC110 - a deadline, no event
            await asyncio.sleep(wait)
        self._busy_since = time.monotonic()

    async def _yield_if_busy(self) -> None:
        if time.monotonic() - self._busy_since >= BUSY_SECONDS:
            await asyncio.sleep(0)
            self._busy_since = time.monotonic()


class Stage(StageInbox[Item]):
    """One toxic on one link: its inbox, the item it holds, its task, and the next receiver.

    This is the engine's `ToxicStub` (waits: see `StageInbox`). A stage works in one of three
    ways, fixed for its life (an update of the toxic makes a new stage): it forwards each item
    as it comes; or it schedules each item when it comes and a timer sends it when due; or it
    runs the toxic's `pipe` in a task.
    """

    def __init__(self, link: Link, setting: ToxicSetting, memory: StageMemory) -> None:
        super().__init__()
        self.link = link
        self.setting = setting
        self.memory = memory
        self.rng = memory.rng
        self.state = memory.state
        self.next: Receiver = link.output
        # The item taken from the inbox and not yet fully sent: `held.data[held_sent:]` is left.
        self.held: Item | None = None
        self.held_sent = 0
        self.task: asyncio.Task[None] | None = None
        # Forward in `put`, with no task: the toxic is inactive here or does nothing (see the
        # module doc). Fixed for the stage's life, since an update makes a new stage.
        self.forwards = not memory.active or setting.toxic.passes_through()
        # When the toxic only delays (see the module doc): the due time of each inbox item.
        self._due_time = None if self.forwards else setting.toxic.due_time()
        self._dues: deque[float] = deque()
        self._timer: asyncio.Handle | None = None

    def start(self) -> None:
        """Start the toxic's `pipe` in a task, unless this stage forwards or schedules."""
        if not self.forwards and self._due_time is None:
            name = f"toxic {self.setting.name} {self.link.label}"
            self.task = self.link.connection.proxy.tasks.spawn(self._run(), name=name)

    async def _run(self) -> None:
        self._busy_since = time.monotonic()
        await self.setting.toxic.pipe(self)

    # -- the side the previous stage (or the link's source) sees
    def put(self, item: Item) -> None:
        """Take `item`: hand it straight on (a forwarding stage holds nothing, so the order is
        kept), schedule it by its due time, or queue it for the toxic's `pipe`."""
        if self.forwards:
            self.next.put(item)
            return
        if self._due_time is None:
            self._deliver(item)
            return
        self.inbox.append(item)
        self._dues.append(self._due_time(self, item))
        if self._timer is None:
            self._send_due()

    def _send_due(self) -> None:
        """Send the items that are due, oldest first; set the timer for the next one."""
        self._timer = None
        inbox, dues, receiver = self.inbox, self._dues, self.next
        started = now = time.monotonic()
        while inbox:
            due = dues[0]
            if due > now:
                # Timers may fire up to a millisecond early (uvloop rounds them): re-armed.
                self._timer = self.link.loop.call_later(due - now, self._send_due)
                return
            if now - started >= BUSY_SECONDS:
                self._timer = self.link.loop.call_soon(self._send_due)  # let others work first
                return
            item = inbox.popleft()
            dues.popleft()
            # A chunk is stamped with its due time, so chained latencies add up exactly.
            item.arrived = due if isinstance(item, Chunk) else now
            receiver.put(item)
            now = time.monotonic()

    # -- the ToxicStub side, used by the toxic's pipe (`receive` and `receive_until`: see
    # `StageInbox`)
    def _hold_taken(self, item: Item) -> None:
        self.held = item
        self.held_sent = 0

    def send(self, item: Item, at: float | None = None) -> None:
        """Pass `item` to the next receiver, stamped as arriving there at `at` (default: now)."""
        # Whatever was held is sent now, unless the toxic holds the rest again (see `hold`).
        self.held = None
        item.arrived = self.now() if at is None else at
        self.next.put(item)

    def hold(self, chunk: Chunk, sent: int) -> None:
        """Record that `chunk.data[sent:]` is not sent yet (recovered if the chain changes)."""
        self.held = chunk
        self.held_sent = sent

    def drop(self, item: Item) -> None:
        """Discard `item` on purpose, and count its bytes out of the link's pipeline."""
        self.held = None
        if isinstance(item, Chunk):
            self.link.discarded(len(item.data))

    def close_connection(self, reason: str, *, reset: bool = False) -> None:
        """Close both sides of this connection on behalf of the toxic (an RST if `reset`)."""
        self.link.connection.close(by=f"toxic {self.setting.name} ({reason})", reset=reset)

    # -- for toxics that model the path (packet_loss: its RTO and its retransmission events)
    def round_trip(self) -> float:
        """Seconds the active latency toxics add to this connection's round trip."""
        links = self.link.connection.links.values()
        delays = [
            stage.setting.toxic.attributes.get("latency", 0)
            for link in links
            for stage in link.stages
            if stage.setting.type == "latency" and stage.memory.active
        ]
        return sum(delays) / 1000

    def record(self, kind: str, *, at: float, **fields: Any) -> None:
        """Record an event of this connection, direction and toxic, stamped `at`."""
        self.link.connection.record(
            kind, at=at, direction=self.link.direction, toxic=self.setting.name, **fields
        )

    # -- hand-over when the chain changes
    def cancel(self) -> None:
        """Stop the toxic's task or timer; pending items stay (see `detach`)."""
        if self.task is not None:
            self.task.cancel()
            # The finished task's traceback holds the stage: a cycle, unless dropped.
            self.task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def detach(self) -> list[Item]:
        """Stop this stage and return its pending items, oldest first."""
        self.cancel()
        pending: list[Item] = []
        held = self.held
        if isinstance(held, Chunk) and self.held_sent:
            rest = held.data[self.held_sent :]
            held = Chunk(rest, held.arrived) if rest else None
        if held is not None:
            pending.append(held)
        pending.extend(self.inbox)
        self.held = None
        self.inbox.clear()
        self._dues.clear()
        return pending


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LinkOutput:
    """The end of a link: writes to the destination transport, and its FIN."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def put(self, item: Item) -> None:
        """Write a chunk to the destination, or pass the end of stream on as a FIN."""
        link = self.link
        if isinstance(item, Chunk):
            link.write(item.data, from_pipeline=True)
        else:
            link.finish()


class _ReleasedOutput:
    """The output of a released link: whatever still reaches it is dropped."""

    def put(self, item: Item) -> None:
        """Drop `item`: its connection is closed and gone."""


_RELEASED_OUTPUT = _ReleasedOutput()


class Link:
    """Copies one direction of a connection through the toxics configured for that stream."""

    def __init__(
        self,
        connection: Connection,
        direction: str,
        source: asyncio.Transport,
        destination: asyncio.Transport,
    ) -> None:
        self.connection = connection
        self.direction = direction
        proxy = connection.proxy
        # Upstream's metric labels, fixed when the link starts: direction, listener, proxy,
        # upstream.
        self.metric_labels = (direction, proxy.listen, proxy.name, proxy.upstream)
        self.loop = connection.loop
        self.source = source
        self.destination = destination
        self.output: Receiver = LinkOutput(self)
        self.stages: list[Stage] = []
        # Some stage runs its toxic in a task, so items must go through the chain (see the
        # module doc): false with no toxic, or only toxics that do nothing.
        self._chain_active = False
        # Made with the first toxic: most links of most proxies never have one.
        self._memories: StageMemories | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.finished = False
        self._eof_received = False
        self._in_pipeline = 0
        self._destination_full = False
        self._reading_paused = False
        # The current data run: bytes read but not yet in a "data" event, first and last read.
        self._run_bytes = 0
        self._run_first = 0.0
        self._run_last = 0.0

    @property
    def label(self) -> str:
        """`proxy#connection direction`, for the names of the link's tasks."""
        return f"{self.connection.label} {self.direction}"

    # -- input from the source side
    def feed(self, data: bytes) -> None:
        """Take bytes read from the source: write them, or pass them into the toxic chain."""
        size = len(data)
        self.bytes_in += size
        now = time.monotonic()
        if self._run_bytes and now - self._run_first < DATA_RUN_SECONDS:
            self._run_bytes += size
            self._run_last = now
        else:
            self.close_data_run()
            self.connection.proxy.events.run_opened(self)
            self._run_bytes = size
            self._run_first = self._run_last = now
        if self._chain_active:
            self._in_pipeline += size
            self.stages[0].put(Chunk(data, now))
            if self._in_pipeline > PIPELINE_HIGH_WATER:
                self._update_flow()
        else:
            self.write(data, from_pipeline=False)

    def feed_eof(self) -> None:
        """Take the source's end of stream, behind whatever the chain still holds."""
        self._eof_received = True
        if self._chain_active:
            self.stages[0].put(EndOfStream(time.monotonic()))
        else:
            self.finish()

    # -- output to the destination side
    def write(self, data: bytes, *, from_pipeline: bool) -> None:
        """Write `data` to the destination (`from_pipeline`: it came out of the toxic chain)."""
        if self.finished or self.connection.closed:
            return
        self.destination.write(data)
        self.bytes_out += len(data)
        if from_pipeline:
            self._in_pipeline -= len(data)
            if self._reading_paused:
                self._update_flow()

    def discarded(self, size: int) -> None:
        """A toxic dropped `size` bytes: they no longer count as waiting in the chain."""
        self._in_pipeline -= size
        if self._reading_paused:
            self._update_flow()

    def finish(self) -> None:
        """The end of stream reached the destination: pass the FIN on (half-close)."""
        if self.finished:
            return
        self.finished = True
        self.close_data_run()
        self.connection.link_finished(self)

    def close_data_run(self) -> None:
        """Record the bytes read since the last data event, if any (see `events`)."""
        if not self._run_bytes:
            return
        self.connection.record_data(
            self.direction, self._run_bytes, at=self._run_first, until=self._run_last
        )
        self._run_bytes = 0
        self.connection.proxy.events.run_closed(self)

    # -- flow control: stop reading while the destination or the chain is full
    def destination_full(self, full: bool) -> None:
        """The destination's write buffer filled (or drained): pause (or resume) reading."""
        self._destination_full = full
        self._update_flow()

    def _update_flow(self) -> None:
        if self._reading_paused:
            if not self._destination_full and self._in_pipeline <= PIPELINE_LOW_WATER:
                self._reading_paused = False
                if not self._eof_received and not self.source.is_closing():
                    self.source.resume_reading()
        elif self._destination_full or self._in_pipeline > PIPELINE_HIGH_WATER:
            self._reading_paused = True
            if not self._eof_received and not self.source.is_closing():
                self.source.pause_reading()

    # -- toxics
    def set_toxics(self, settings: Sequence[ToxicSetting]) -> bool:
        """Make the chain match `settings`, moving pending items so none is lost or reordered.

        New toxics come last (as upstream appends them); kept and updated ones keep their place.
        Returns true when a removed toxic asks for the connection to be closed.
        """
        if not settings and not self.stages:
            return False  # no toxic, before or now (every new link of a proxy without toxics)
        memories = self._memories
        if memories is None:
            memories = self._memories = StageMemories(self.connection.rng_factory(self.direction))
        if not self.stages:
            # A new link (or one without toxics until now): nothing pending to hand over.
            self.stages = [
                Stage(self, setting, memories.memory_for(setting)) for setting in settings
            ]
            chain(self.stages, self.output)
            self._start_stages()
            return False
        old_index = {stage.setting.name: i for i, stage in enumerate(self.stages)}
        old_stages = self.stages
        new_stages: list[Stage] = []
        inherited: list[tuple[Stage, list[Item]]] = []
        for setting in settings:
            index = old_index.get(setting.name)
            stage = old_stages[index] if index is not None else None
            if stage is not None and stage.setting == setting:
                new_stages.append(stage)
                continue
            replacement = Stage(self, setting, memories.memory_for(setting))
            if stage is not None:
                inherited.append((replacement, stage.detach()))
            new_stages.append(replacement)

        self.stages = new_stages
        chain(new_stages, self.output)

        for replacement, items in inherited:
            for item in items:
                replacement.put(item)

        wanted = {setting.name for setting in settings}
        close_connection = False
        for index in reversed(range(len(old_stages))):
            removed = old_stages[index]
            if removed.setting.name in wanted:
                continue
            follower: Receiver = receiver_after(index, old_index, new_stages, self.output)
            for item in removed.detach():
                follower.put(item)
            memories.forget(removed.setting.name)
            close_connection |= removed.setting.toxic.closes_connection_when_removed

        self._start_stages()
        return close_connection

    def _start_stages(self) -> None:
        active = False
        for stage in self.stages:
            if stage.task is None:
                stage.start()
            active = active or not stage.forwards
        self._chain_active = active

    def stop(self) -> None:
        """Cancel every stage; the connection is closing and pending items are discarded."""
        for stage in self.stages:
            stage.cancel()
        self.stages = []
        self._chain_active = False

    def release(self) -> None:
        """Drop this stopped link's cycle with its output (see `Connection._release`)."""
        self.stages = []
        self.output = _RELEASED_OUTPUT

    def active_toxics(self) -> list[str]:
        """Names of this link's toxics that act on it (their toxicity roll succeeded)."""
        return [stage.setting.name for stage in self.stages if stage.memory.active]
