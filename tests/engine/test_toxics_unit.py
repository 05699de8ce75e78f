"""Each toxic on its own, driven by a fake stub on a virtual clock: no sockets, no event loop.

A toxic waits only through its stub (`receive`, `receive_until`, `sleep_until`), so a test can
run its `pipe` coroutine step by step: deliver items at chosen times, move the clock to the
next thing anyone waits for, and record exactly what was sent, dropped or closed, and when.
`late` makes every wake-up that late, as a busy event loop would.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_chaos.engine.errors import ApiError
from pytest_chaos.engine.stream import Chunk, EndOfStream, Item
from pytest_chaos.engine.toxics import TOXIC_TYPES, Toxic
from pytest_chaos.engine.toxics.slicer import slice_bounds


class _Suspend:
    """What the toxic's coroutine yields to the driver when it has to wait."""

    def __await__(self) -> Generator[_Suspend, None, None]:
        yield self


@dataclass
class Sent:
    time: float  # the virtual time it was sent
    data: bytes | None  # None: the end of stream
    arrived: float  # the stamp it carries to the next stage


@dataclass
class FakeStub:
    """A ToxicStub on a virtual clock."""

    seed: int = 0
    late: float = 0.0
    clock: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)
    inbox: deque[Item] = field(default_factory=deque)
    sent: list[Sent] = field(default_factory=list)
    dropped: list[tuple[float, Item]] = field(default_factory=list)
    closed: list[tuple[float, str, bool]] = field(default_factory=list)
    held: Item | None = None
    held_sent: int = 0
    # What the toxic waits for: a time (inf: none), and whether an item would wake it.
    wake_at: float = math.inf
    wants_input: bool = False
    # The round trip the connection's latency toxics add (for packet_loss), and its events.
    path_round_trip: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def now(self) -> float:
        return self.clock

    async def receive(self) -> Item:
        item = await self.receive_until(math.inf)
        assert item is not None
        return item

    async def receive_until(self, deadline: float) -> Item | None:
        while not self.inbox:
            if self.clock >= deadline:
                return None
            self.wants_input, self.wake_at = True, deadline + self.late
            await _Suspend()
        item = self.inbox.popleft()
        self.held, self.held_sent = item, 0
        return item

    async def sleep_until(self, deadline: float) -> None:
        while self.clock < deadline:
            self.wants_input, self.wake_at = False, deadline + self.late
            await _Suspend()

    def send(self, item: Item, at: float | None = None) -> None:
        self.held = None
        item.arrived = self.clock if at is None else at
        data = item.data if isinstance(item, Chunk) else None
        self.sent.append(Sent(self.clock, data, item.arrived))

    def hold(self, chunk: Chunk, sent: int) -> None:
        self.held, self.held_sent = chunk, sent

    def drop(self, item: Item) -> None:
        self.held = None
        self.dropped.append((self.clock, item))

    def close_connection(self, reason: str, *, reset: bool = False) -> None:
        self.closed.append((self.clock, reason, reset))

    def round_trip(self) -> float:
        return self.path_round_trip

    def record(self, kind: str, *, at: float, **fields: Any) -> None:
        self.records.append({"kind": kind, "time": at, **fields})

    # -- the driver
    def run(
        self, toxic: Toxic, arrivals: Iterable[tuple[float, Item]], until: float = math.inf
    ) -> FakeStub:
        """Run `toxic` until it returns, waits for ever, or the clock would pass `until`."""
        pending = deque(sorted(arrivals, key=lambda arrival: arrival[0]))
        pipe = toxic.pipe(self)
        try:
            pipe.send(None)
            while True:
                next_arrival = pending[0][0] if pending else math.inf
                woken_by_input = self.wants_input and next_arrival + self.late < self.wake_at
                wake = next_arrival + self.late if woken_by_input else self.wake_at
                # Items arriving while the toxic sleeps just queue up.
                while pending and pending[0][0] <= min(wake, until):
                    at, item = pending.popleft()
                    item.arrived = at
                    self.inbox.append(item)
                if wake == math.inf or wake > until:
                    return self
                self.clock = max(self.clock, wake)
                pipe.send(None)
        except StopIteration:
            return self
        finally:
            pipe.close()

    def sent_data(self) -> bytes:
        return b"".join(s.data for s in self.sent if s.data is not None)


def make(type_name: str, **attributes: int) -> Toxic:
    return TOXIC_TYPES[type_name](TOXIC_TYPES[type_name].parse_attributes(attributes))


def chunk(data: bytes) -> Chunk:
    return Chunk(data, 0.0)  # the driver stamps the arrival time


def eos() -> EndOfStream:
    return EndOfStream(0.0)


# -- latency
def test_latency_delays_each_chunk_from_its_own_arrival() -> None:
    stub = FakeStub().run(
        make("latency", latency=100),
        [(0.0, chunk(b"a")), (0.010, chunk(b"b")), (0.5, chunk(b"c")), (0.6, eos())],
    )

    assert [(s.time, s.data) for s in stub.sent] == [
        (pytest.approx(0.100), b"a"),
        (pytest.approx(0.110), b"b"),
        (pytest.approx(0.600), b"c"),
        (pytest.approx(0.600), None),  # the end of stream follows the last chunk at once
    ]
    assert [s.arrived for s in stub.sent[:3]] == [s.time for s in stub.sent[:3]]


def test_latency_with_jitter_draws_each_delay_and_keeps_order() -> None:
    arrivals = [(i * 0.001, chunk(bytes([i]))) for i in range(50)]
    rolls = random.Random(7)
    due = [i * 0.001 + 0.1 + rolls.uniform(-0.05, 0.05) for i in range(50)]

    stub = FakeStub(seed=7).run(make("latency", latency=100, jitter=50), arrivals)

    assert stub.sent_data() == bytes(range(50))
    expected_times = []
    previous = 0.0
    for when in due:
        previous = max(previous, when)  # never overtakes an earlier chunk
        expected_times.append(previous)
    assert [s.time for s in stub.sent] == pytest.approx(expected_times)
    # Stamped with its own due time, so a next latency adds exactly.
    assert [s.arrived for s in stub.sent] == pytest.approx(due)


def test_a_late_timer_does_not_add_up_in_latency() -> None:
    arrivals = [(i * 0.01, chunk(b"x")) for i in range(20)]

    stub = FakeStub(late=0.004).run(make("latency", latency=30), arrivals)

    assert [s.time for s in stub.sent] == pytest.approx([i * 0.01 + 0.034 for i in range(20)])


# -- bandwidth
def test_bandwidth_sends_a_chunk_in_pieces_at_the_rate() -> None:
    stub = FakeStub().run(make("bandwidth", rate=1), [(0.0, chunk(b"x" * 23)), (0.1, eos())])

    # 1 KB/s: a first piece of 1 ms (1 byte), then pieces of 5 ms (5 bytes), each when the
    # link has sent it.
    assert [(s.time, s.data and len(s.data)) for s in stub.sent] == [
        (pytest.approx(0.001), 1),
        (pytest.approx(0.006), 5),
        (pytest.approx(0.011), 5),
        (pytest.approx(0.016), 5),
        (pytest.approx(0.021), 5),
        (pytest.approx(0.023), 2),
        (pytest.approx(0.1), None),
    ]
    assert stub.sent_data() == b"x" * 23


@pytest.mark.parametrize("rate_kb", [1, 1_000, 100_000])
def test_bandwidth_sends_the_first_byte_of_a_large_read_on_time(rate_kb: int) -> None:
    # A 64 KB read on an idle link: its first bytes leave 1 ms after they arrived, as on a
    # link of that rate (give or take 1 ms), not once the link would have sent the whole read
    # or 100 ms of it.
    stub = FakeStub().run(make("bandwidth", rate=rate_kb), [(0.0, chunk(b"f" * 65536))], until=0.5)

    assert stub.sent[0].time <= 0.001 + 1e-9


def test_bandwidth_holds_what_it_has_not_sent_yet() -> None:
    data = b"0123456789" * 25
    stub = FakeStub().run(make("bandwidth", rate=1), [(0.0, chunk(data))], until=0.1025)

    # 1 byte at 1 ms, then 5 bytes every 5 ms: 101 bytes by 101 ms.
    assert stub.sent_data() == data[:101]
    assert isinstance(stub.held, Chunk)
    assert stub.held.data[stub.held_sent :] == data[101:]


def test_bandwidth_zero_holds_data_for_ever_but_lets_an_early_end_through() -> None:
    stalled = FakeStub().run(make("bandwidth", rate=0), [(0.0, chunk(b"held")), (1.0, eos())])
    closing = FakeStub().run(make("bandwidth", rate=0), [(0.0, eos())])

    assert stalled.sent == []
    assert isinstance(stalled.held, Chunk)
    assert stalled.held.data == b"held"
    assert len(stalled.inbox) == 1  # the end of stream waits behind the data
    assert [s.data for s in closing.sent] == [None]


@pytest.mark.parametrize("rate_kb", [1, 10, 100, 1_000, 10_000, 50_000, 100_000])
def test_bandwidth_keeps_its_rate_when_timers_fire_late(rate_kb: int) -> None:
    bytes_per_second = rate_kb * 1000
    size = min(65536, max(1, bytes_per_second // 100))  # socket-sized reads, 10 ms or less each
    count = 200
    backlog = [(0.0, chunk(b"r" * size)) for _ in range(count)]

    stub = FakeStub(late=0.0005).run(make("bandwidth", rate=rate_kb), backlog)

    total = size * count
    assert stub.sent_data() == b"r" * total
    achieved = total / stub.sent[-1].time
    assert achieved == pytest.approx(bytes_per_second, rel=0.03)
    # The first piece leaves when the link has sent it, plus one late timer, not more.
    first = min(size, max(1, int(bytes_per_second * 0.001)))
    assert stub.sent[0].time == pytest.approx(first / bytes_per_second + 0.0005)


def test_bandwidth_paces_chunks_arriving_over_time_from_their_arrival() -> None:
    # 1000 bytes every 100 ms at 20 KB/s: each goes 50 ms after it arrived, however late the
    # previous timer fired.
    arrivals = [(i * 0.1, chunk(b"y" * 1000)) for i in range(10)]

    stub = FakeStub(late=0.002).run(make("bandwidth", rate=20), arrivals)

    # (Each in pieces; the last of each is when the whole chunk has gone.)
    sizes = itertools.accumulate(len(s.data or b"") for s in stub.sent)
    last_pieces = [s for s, total in zip(stub.sent, sizes, strict=True) if total % 1000 == 0]
    assert [s.time for s in last_pieces] == pytest.approx([i * 0.1 + 0.052 for i in range(10)])
    assert [s.arrived for s in last_pieces] == pytest.approx([i * 0.1 + 0.05 for i in range(10)])


# -- slicer
def test_slicer_halves_chunks_as_upstream_does() -> None:
    data = bytes(range(100))

    stub = FakeStub().run(make("slicer", average_size=10), [(0.0, chunk(data))])

    # 100 -> 50 -> 25 -> 12 + 13 -> 6 + 6, 6 + 7: every slice at most average + variation.
    assert [len(s.data or b"") for s in stub.sent] == [6, 6, 6, 7] * 4
    assert stub.sent_data() == data
    assert {s.time for s in stub.sent} == {0.0}


def test_slicer_waits_its_delay_in_microseconds_after_each_slice() -> None:
    stub = FakeStub().run(
        make("slicer", average_size=10, delay=1000),
        [(0.0, chunk(b"s" * 40)), (0.0, chunk(b"t" * 5))],
    )

    assert [len(s.data or b"") for s in stub.sent] == [10, 10, 10, 10, 5]
    assert [s.time for s in stub.sent] == pytest.approx([0.0, 0.001, 0.002, 0.003, 0.004])


@pytest.mark.parametrize(("average", "variation"), [(1000, 1000), (1, 1), (10, 3), (1, 0)])
def test_slicer_never_writes_an_empty_slice(average: int, variation: int) -> None:
    rng = random.Random(3)
    sizes = [rng.randrange(1, 20_000) for _ in range(100)]
    arrivals = [(0.0, chunk(bytes(rng.randrange(256) for _ in range(n)))) for n in sizes[:10]]
    expected = b"".join(c.data for _, c in arrivals if isinstance(c, Chunk))

    stub = FakeStub(seed=5).run(
        make("slicer", average_size=average, size_variation=variation), arrivals
    )

    assert stub.sent_data() == expected
    lengths = [len(s.data or b"") for s in stub.sent]
    assert min(lengths) >= 1
    assert max(lengths) <= average + variation
    for size in sizes:
        bounds = list(slice_bounds(size, average, variation, random.Random(size)))
        assert all(end > start for start, end in bounds)
        assert [start for start, _ in bounds[1:]] == [end for _, end in bounds[:-1]]
        assert (bounds[0][0], bounds[-1][1]) == (0, size)


def test_slicer_holds_the_rest_of_a_chunk_while_it_waits() -> None:
    stub = FakeStub().run(
        make("slicer", average_size=10, delay=1000), [(0.0, chunk(b"0123456789" * 4))], until=0.0015
    )

    assert stub.sent_data() == b"0123456789" * 2
    assert isinstance(stub.held, Chunk)
    assert stub.held.data[stub.held_sent :] == b"0123456789" * 2


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"average_size": 0}, "attribute average_size of slicer must be at least 1 (bytes)"),
        (
            {"average_size": 10, "size_variation": 11},
            "attribute size_variation of slicer must be at most average_size (10) (bytes), got 11",
        ),
    ],
)
def test_slicer_refuses_what_upstream_crashes_on(attributes: dict[str, int], message: str) -> None:
    with pytest.raises(ApiError) as refused:
        TOXIC_TYPES["slicer"].parse_attributes(attributes)
    assert refused.value.message == f"bad request body: {message}"


# -- timeout
def test_timeout_drops_data_and_closes_after_the_idle_time() -> None:
    stub = FakeStub().run(make("timeout", timeout=100), [(0.0, chunk(b"a")), (0.05, chunk(b"b"))])

    assert stub.sent == []
    assert [(t, item.data) for t, item in stub.dropped if isinstance(item, Chunk)] == [
        (0.0, b"a"),
        (0.05, b"b"),
    ]
    assert stub.closed == [(pytest.approx(0.15), "timeout", False)]


def test_timeout_zero_never_closes_until_the_end_of_stream() -> None:
    idle = FakeStub().run(make("timeout"), [(0.0, chunk(b"a"))])
    ended = FakeStub().run(make("timeout"), [(0.0, chunk(b"a")), (5.0, eos())])

    assert idle.closed == []
    assert ended.closed == [(5.0, "timeout", False)]
    assert ended.sent == []


# -- reset_peer
def test_reset_peer_resets_its_timeout_after_the_first_data() -> None:
    stub = FakeStub().run(make("reset_peer", timeout=100), [(0.2, chunk(b"x"))])
    quiet = FakeStub().run(make("reset_peer", timeout=100), [])

    assert stub.closed == [(pytest.approx(0.3), "reset_peer", True)]
    assert stub.sent == []
    assert quiet.closed == []


# -- slow_close
def test_slow_close_passes_data_and_holds_back_the_close() -> None:
    stub = FakeStub().run(make("slow_close", delay=300), [(0.0, chunk(b"data")), (0.1, eos())])

    assert [(s.time, s.data) for s in stub.sent] == [
        (0.0, b"data"),
        (pytest.approx(0.4), None),
    ]


# -- limit_data
def test_limit_data_forwards_the_limit_then_closes() -> None:
    stub = FakeStub().run(
        make("limit_data", bytes=10),
        [(0.0, chunk(b"1234")), (0.1, chunk(b"5678")), (0.2, chunk(b"90ab")), (0.3, chunk(b"z"))],
    )

    assert [(s.time, s.data) for s in stub.sent] == [(0.0, b"1234"), (0.1, b"5678"), (0.2, b"90")]
    assert [(t, item.data) for t, item in stub.dropped if isinstance(item, Chunk)] == [(0.2, b"ab")]
    assert stub.closed == [(0.2, "limit_data", False)]


def test_limit_data_counts_across_updates_of_the_toxic() -> None:
    state: dict[str, Any] = {}
    FakeStub(state=state).run(make("limit_data", bytes=10), [(0.0, chunk(b"123456"))])

    stub = FakeStub(state=state).run(make("limit_data", bytes=8), [(1.0, chunk(b"7890"))])

    assert [s.data for s in stub.sent] == [b"78"]
    assert stub.closed == [(1.0, "limit_data", False)]


# -- noop
def test_noop_passes_everything_at_once() -> None:
    stub = FakeStub().run(make("noop"), [(0.0, chunk(b"a")), (0.5, chunk(b"b")), (0.7, eos())])

    assert [(s.time, s.data) for s in stub.sent] == [(0.0, b"a"), (0.5, b"b"), (0.7, None)]


# -- passes_through: the stage then forwards without running `pipe`, so both must agree
@pytest.mark.parametrize(
    ("type_name", "attributes"),
    [
        ("noop", {}),
        ("latency", {"latency": 0, "jitter": 0}),
        ("slow_close", {"delay": 0}),
    ],
)
def test_a_toxic_that_passes_through_sends_everything_at_once_unchanged(
    type_name: str, attributes: dict[str, int]
) -> None:
    toxic = make(type_name, **attributes)
    arrivals = [(0.0, chunk(b"a")), (0.5, chunk(b"bc")), (0.5, chunk(b"d")), (0.7, eos())]

    stub = FakeStub().run(toxic, arrivals)

    assert toxic.passes_through()
    assert [(s.time, s.data, s.arrived) for s in stub.sent] == [
        (0.0, b"a", 0.0),
        (0.5, b"bc", 0.5),
        (0.5, b"d", 0.5),
        (0.7, None, 0.7),
    ]


@pytest.mark.parametrize(
    ("type_name", "attributes"),
    [
        ("latency", {"latency": 1}),
        ("latency", {"jitter": 1}),
        ("slow_close", {"delay": 1}),
        ("slicer", {"average_size": 1}),
        ("bandwidth", {"rate": 10**9}),
        ("limit_data", {"bytes": 10**9}),
        ("timeout", {}),
        ("reset_peer", {}),
        ("packet_loss", {}),
    ],
)
def test_a_toxic_that_can_change_anything_does_not_pass_through(
    type_name: str, attributes: dict[str, int]
) -> None:
    assert not make(type_name, **attributes).passes_through()


# -- due_time: the engine sends a latency's items from timers, the fake clock runs its pipe
@pytest.mark.parametrize(
    "attributes", [{"latency": 100}, {"latency": 100, "jitter": 80}, {"jitter": 30}]
)
def test_scheduling_by_due_time_sends_what_the_pipe_sends(attributes: dict[str, int]) -> None:
    """What `Stage` does with `due_time` (send each item once due and after every earlier
    one, a chunk stamped with its due time) gives the pipe's sends, item for item."""
    arrivals: list[tuple[float, Item]] = [
        (0.0, chunk(b"a")),
        (0.01, chunk(b"b")),
        (0.05, chunk(b"c")),
        (0.05, eos()),
    ]
    toxic = make("latency", **attributes)
    due_time = toxic.due_time()
    assert due_time is not None
    scheduler = FakeStub(seed=7)
    scheduled: list[Sent] = []
    last_sent = 0.0
    for at, item in arrivals:
        item.arrived = at
        due = due_time(scheduler, item)
        last_sent = max(last_sent, due, at)
        data = item.data if isinstance(item, Chunk) else None
        scheduled.append(Sent(last_sent, data, due if data is not None else last_sent))

    fresh = [
        (at, Chunk(item.data, 0.0) if isinstance(item, Chunk) else eos()) for at, item in arrivals
    ]
    piped = FakeStub(seed=7).run(toxic, fresh).sent

    assert scheduled == piped
    assert [s.data for s in piped] == [b"a", b"b", b"c", None]


def test_only_latency_is_scheduled_by_due_time() -> None:
    scheduled = [name for name, cls in TOXIC_TYPES.items() if cls.due_time is not Toxic.due_time]
    assert scheduled == ["latency"]
