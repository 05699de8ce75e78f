"""The datagram toxics of a UDP proxy on a virtual clock (the stream toxics' fake stub, sending
datagrams): what each does to which datagram, and when."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_chaos.engine.toxics.base import Toxic
from pytest_chaos.engine.udp import DATAGRAM_TOXIC_TYPES
from pytest_chaos.engine.udp.datagram import Datagram, DatagramToxic
from tests.engine.test_packet_loss_unit import Scripted
from tests.engine.test_toxics_unit import FakeStub


@dataclass
class Out:
    time: float  # when it leaves the stage (a scheduled send's time)
    data: bytes
    number: int


@dataclass
class FakeDatagramStub(FakeStub):
    """A DatagramStub on a virtual clock; sends for later are recorded at their time."""

    out: list[Out] = field(default_factory=list)
    marks: list[tuple[str, int]] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    sessions_closed: list[tuple[float, str]] = field(default_factory=list)

    def send(self, item: Any, at: float | None = None) -> None:
        self.out.append(
            Out(self.clock if at is None else max(at, self.clock), item.data, item.number)
        )

    def drop(self, item: Any) -> None:
        self.lost.append(item.number)

    def mark(self, datagram: Datagram, what: str) -> None:
        self.marks.append((what, datagram.number))

    def close_session(self, reason: str) -> None:
        self.sessions_closed.append((self.clock, reason))

    def run_datagrams(
        self, toxic: Toxic, arrivals: Iterable[tuple[float, bytes]], until: float = math.inf
    ) -> FakeDatagramStub:
        assert isinstance(toxic, DatagramToxic)
        datagrams = [(at, Datagram(data, at, n)) for n, (at, data) in enumerate(arrivals)]
        pipe_owner = _Piped(toxic)
        return self.run(pipe_owner, datagrams, until)  # type: ignore[arg-type]

    def order(self) -> list[int]:
        return [o.number for o in sorted(self.out, key=lambda o: o.time)]


class _Piped:
    """Runs a datagram toxic's `datagram_pipe` where the fake's driver runs `pipe`."""

    def __init__(self, toxic: DatagramToxic) -> None:
        self.toxic = toxic

    def pipe(self, stub: Any) -> Any:
        return self.toxic.datagram_pipe(stub)


def make(type_name: str, **attributes: float) -> Toxic:
    cls = DATAGRAM_TOXIC_TYPES[type_name]
    return cls(cls.parse_attributes(attributes))


def steady(count: int, gap: float = 0.001, size: int = 8) -> list[tuple[float, bytes]]:
    return [(i * gap, i.to_bytes(size, "big")) for i in range(count)]


def test_latency_without_jitter_delays_each_datagram_and_keeps_order() -> None:
    stub = FakeDatagramStub().run_datagrams(make("latency", latency=50), steady(5))

    assert [(o.time, o.number) for o in stub.out] == [
        (pytest.approx(0.05 + i * 0.001), i) for i in range(5)
    ]


def test_latency_with_jitter_reorders_as_netem_does() -> None:
    stub = FakeDatagramStub(seed=4).run_datagrams(
        make("latency", latency=50, jitter=40), steady(200)
    )

    delays = [o.time - o.number * 0.001 for o in stub.out]
    assert min(delays) >= 0.01 - 1e-9
    assert max(delays) <= 0.09 + 1e-9
    assert stub.order() != list(range(200))
    assert sorted(stub.order()) == list(range(200))


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2])
def test_loss_drops_the_configured_share(rate: float) -> None:
    stub = FakeDatagramStub(seed=1).run_datagrams(
        make("packet_loss", loss_rate=rate), steady(10_000)
    )

    assert len(stub.lost) / 10_000 == pytest.approx(rate, abs=0.01)
    assert sorted([*stub.lost, *(o.number for o in stub.out)]) == list(range(10_000))


def test_correlated_loss_comes_in_bursts() -> None:
    plain = FakeDatagramStub(seed=2).run_datagrams(
        make("packet_loss", loss_rate=0.1), steady(10_000)
    )
    bursty = FakeDatagramStub(seed=2).run_datagrams(
        make("packet_loss", loss_rate=0.1, correlation=0.7), steady(10_000)
    )

    def runs(lost: list[int]) -> int:
        return sum(1 for n in lost if n - 1 not in set(lost))

    assert len(bursty.lost) / 10_000 == pytest.approx(0.1, abs=0.02)
    assert runs(bursty.lost) < runs(plain.lost) / 2


def test_duplicate_sends_a_copy_right_after() -> None:
    stub = FakeDatagramStub(seed=3).run_datagrams(make("duplicate", probability=0.3), steady(2000))

    copies = [number for what, number in stub.marks if what == "duplicated"]
    assert len(copies) / 2000 == pytest.approx(0.3, abs=0.03)
    assert len(stub.out) == 2000 + len(copies)
    for number in copies[:20]:
        index = stub.order().index(number)
        assert stub.order()[index + 1] == number


def test_corrupt_flips_exactly_one_bit() -> None:
    arrivals = steady(1000, size=32)
    stub = FakeDatagramStub(seed=5).run_datagrams(make("corrupt", probability=0.5), arrivals)

    corrupted = {number for what, number in stub.marks if what == "corrupted"}
    assert len(corrupted) / 1000 == pytest.approx(0.5, abs=0.05)
    for out in stub.out:
        original = arrivals[out.number][1]
        flipped = sum(bin(a ^ b).count("1") for a, b in zip(original, out.data, strict=True))
        assert flipped == (1 if out.number in corrupted else 0)


def test_reorder_holds_a_datagram_until_the_next_overtakes_it() -> None:
    stub = FakeDatagramStub()
    stub.rng = Scripted([0.0, 0.9, 0.9, 0.9])
    stub.run_datagrams(make("reorder", probability=0.5), steady(4))

    assert stub.order() == [1, 0, 2, 3]
    assert stub.marks == [("reordered", 0)]


def test_reorder_releases_a_lone_datagram_after_its_delay_without_calling_it_reordered() -> None:
    stub = FakeDatagramStub()
    stub.rng = Scripted([0.0])
    stub.run_datagrams(make("reorder", probability=0.5, delay=30), [(0.0, b"alone")])

    assert [(o.time, o.number) for o in stub.out] == [(pytest.approx(0.03), 0)]
    assert stub.marks == []


def test_reorder_distance_lets_that_many_overtake() -> None:
    stub = FakeDatagramStub()
    stub.rng = Scripted([0.0, *[0.9] * 5])
    stub.run_datagrams(make("reorder", probability=0.5, distance=3), steady(6))

    assert stub.order() == [1, 2, 3, 0, 4, 5]


def test_bandwidth_in_datagrams_per_second_paces_and_drops_past_the_queue() -> None:
    burst = [(0.0, b"d")] * 1500

    stub = FakeDatagramStub().run_datagrams(make("bandwidth", datagrams=100), burst)

    assert len(stub.out) == 1000  # netem's queue limit
    assert stub.lost == list(range(1000, 1500))
    assert [o.time for o in stub.out[:3]] == pytest.approx([0.01, 0.02, 0.03])


def test_bandwidth_in_bytes_paces_by_size() -> None:
    stub = FakeDatagramStub().run_datagrams(
        make("bandwidth", rate=10), [(0.0, b"x" * 500), (0.0, b"y" * 1000)]
    )

    assert [o.time for o in stub.out] == pytest.approx([0.05, 0.15])


def test_bandwidth_zero_drops_everything() -> None:
    stub = FakeDatagramStub().run_datagrams(make("bandwidth"), steady(3))

    assert stub.out == []
    assert stub.lost == [0, 1, 2]


def test_timeout_drops_everything_and_ends_the_idle_session() -> None:
    stub = FakeDatagramStub().run_datagrams(make("timeout", timeout=100), steady(3))

    assert stub.out == []
    assert stub.lost == [0, 1, 2]
    assert stub.sessions_closed == [(pytest.approx(0.102), "timeout")]


def test_the_same_seed_gives_the_same_fates() -> None:
    def fates(seed: int) -> tuple[list[int], list[float]]:
        lossy = FakeDatagramStub(seed=seed).run_datagrams(
            make("packet_loss", loss_rate=0.3), steady(100)
        )
        jittery = FakeDatagramStub(seed=seed).run_datagrams(
            make("latency", latency=20, jitter=10), steady(100)
        )
        return lossy.lost, [o.time for o in jittery.out]

    assert fates(8) == fates(8)
    assert fates(8) != fates(9)
