"""The TCP `packet_loss` model on a virtual clock: stalls, backoff, head-of-line blocking,
giving up, the handshake, and that no byte is ever lost, duplicated or reordered."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import pytest

from pytest_chaos.engine.errors import ApiError
from pytest_chaos.engine.stream import Chunk
from pytest_chaos.engine.toxics import TOXIC_TYPES
from pytest_chaos.engine.toxics.packet_loss import LossChain, backoff, handshake
from tests.engine.test_toxics_unit import FakeStub, chunk, eos

LOST, DELIVERED = 0.0, 0.99  # draws: below any loss rate, above any


class Scripted(random.Random):
    """A generator whose `random()` answers the given draws, in order."""

    def __init__(self, draws: Iterable[float]) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def loss(**attributes: float) -> object:
    cls = TOXIC_TYPES["packet_loss"]
    return cls(cls.parse_attributes(attributes))


def scripted_stub(draws: Iterable[float], **fields: object) -> FakeStub:
    stub = FakeStub(**fields)  # type: ignore[arg-type]
    stub.rng = Scripted(draws)
    return stub


def test_nothing_is_lost_the_stream_is_cut_into_segments() -> None:
    stub = FakeStub().run(loss(loss_rate=0.0), [(0.0, chunk(b"a" * 3000)), (0.5, eos())])

    assert [(s.time, len(s.data or b"")) for s in stub.sent] == [
        (0.0, 1448),
        (0.0, 1448),
        (0.0, 104),
        (0.5, 0),
    ]
    assert stub.records == []


def test_a_lost_segment_stalls_for_the_rto_and_everything_behind_it_waits() -> None:
    draws = [DELIVERED, LOST, LOST, DELIVERED, DELIVERED]
    stub = scripted_stub(draws).run(
        loss(loss_rate=0.5),
        [(0.0, chunk(b"1")), (0.1, chunk(b"2")), (0.15, chunk(b"3"))],
    )

    # "2" is lost twice: 200 ms, then 400 ms; "3" got through at once but waits behind it.
    assert [(s.data, s.time) for s in stub.sent] == [
        (b"1", 0.0),
        (b"2", pytest.approx(0.7)),
        (b"3", pytest.approx(0.7)),
    ]
    # Stamped with their delivery, so a later stage (a latency) counts from it.
    assert [s.arrived for s in stub.sent] == [0.0, pytest.approx(0.7), pytest.approx(0.7)]
    assert stub.records == [
        {
            "kind": "retransmitted",
            "time": 0.1,
            "bytes": 1,
            "fin": False,
            "losses": 2,
            "rto_ms": 200.0,
            "stalled_ms": 600.0,
            "gave_up": False,
            "until": pytest.approx(0.7),
        }
    ]


def test_the_first_rto_adds_the_round_trip_of_the_latency_toxics() -> None:
    stub = scripted_stub([LOST, DELIVERED], path_round_trip=0.3).run(
        loss(loss_rate=0.5, rto_min=100), [(0.0, chunk(b"x"))]
    )

    assert [s.time for s in stub.sent] == [pytest.approx(0.4)]


def test_the_rest_of_a_chunk_is_held_during_a_stall() -> None:
    stub = scripted_stub([DELIVERED, LOST, DELIVERED]).run(
        loss(loss_rate=0.5, segment_size=4), [(0.0, chunk(b"0123456789ab"))], until=0.1
    )

    assert stub.sent_data() == b"0123"
    assert isinstance(stub.held, Chunk)
    assert stub.held.data[stub.held_sent :] == b"456789ab"


def test_it_gives_up_with_a_reset_after_the_retries() -> None:
    stub = scripted_stub([LOST] * 10).run(
        loss(loss_rate=1.0, retries=2), [(0.0, chunk(b"x")), (0.1, chunk(b"y"))]
    )

    # The first transmission and two retransmissions lost: 0.2 + 0.4 + 0.8 s.
    assert stub.closed == [(pytest.approx(1.4), "gave up after 3 losses of a segment", True)]
    assert stub.sent == []
    assert stub.records[0]["gave_up"] is True


def test_linux_defaults_give_up_after_924_6_seconds() -> None:
    stub = FakeStub().run(loss(loss_rate=1.0), [(0.0, chunk(b"x"))])

    # tcp_retries2 = 15 with a 200 ms RTO: "a hypothetical timeout of 924.6 seconds"
    # (Documentation/networking/ip-sysctl.rst).
    assert stub.closed == [(pytest.approx(924.6), "gave up after 16 losses of a segment", True)]


def test_the_end_of_stream_can_be_lost_too() -> None:
    stub = scripted_stub([DELIVERED, LOST, DELIVERED]).run(
        loss(loss_rate=0.5), [(0.0, chunk(b"x")), (1.0, eos())]
    )

    assert [(s.data, s.time) for s in stub.sent] == [(b"x", 0.0), (None, pytest.approx(1.2))]
    assert stub.records[0]["fin"] is True


@pytest.mark.parametrize("seed", range(5))
def test_bytes_are_never_lost_duplicated_or_reordered(seed: int) -> None:
    rng = random.Random(seed)
    arrivals = []
    at = 0.0
    for _ in range(200):
        at += rng.expovariate(50)
        arrivals.append((at, chunk(rng.randbytes(rng.randrange(1, 5000)))))
    expected = b"".join(c.data for _, c in arrivals if isinstance(c, Chunk))

    stub = FakeStub(seed=seed).run(loss(loss_rate=0.3, correlation=0.5), [*arrivals, (at, eos())])

    assert stub.sent_data() == expected
    times = [s.time for s in stub.sent]
    assert times == sorted(times)
    assert stub.sent[-1].data is None
    assert sum(record["losses"] for record in stub.records) > 0


def test_stalls_follow_the_geometric_distribution_of_losses() -> None:
    # One-byte segments 1000 s apart, so no stall ever reaches the next one.
    count = 20_000
    arrivals = [(i * 1000.0, chunk(b"s")) for i in range(count)]

    stub = FakeStub(seed=11).run(loss(loss_rate=0.2), arrivals)

    delays = [round(s.time - i * 1000.0, 6) for i, s in enumerate(stub.sent)]
    for losses, stall in enumerate([0.0, 0.2, 0.6, 1.4]):
        expected = 0.2**losses * 0.8
        assert delays.count(stall) / count == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(("rate", "correlation"), [(0.1, 0.0), (0.1, 0.5), (0.3, 0.8)])
def test_correlation_makes_bursts_and_keeps_the_mean_rate(rate: float, correlation: float) -> None:
    chain = LossChain(rate, correlation, {})
    rng = random.Random(3)
    fates = [chain.lost(rng) for _ in range(100_000)]

    assert sum(fates) / len(fates) == pytest.approx(rate, abs=0.01)
    after_loss = [b for a, b in itertools.pairwise(fates) if a]
    assert sum(after_loss) / len(after_loss) == pytest.approx(
        rate + correlation * (1 - rate), abs=0.02
    )


def test_backoff_doubles_up_to_linux_rto_max() -> None:
    timeouts = backoff(0.2)
    assert [next(timeouts) for _ in range(12)] == pytest.approx(
        [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 120.0, 120.0]
    )


def test_the_handshake_backs_off_from_one_second() -> None:
    syn = Scripted([LOST, LOST, DELIVERED])
    syn_ack = Scripted([DELIVERED, LOST, DELIVERED])
    chains = [LossChain(0.5, 0.0, {}), LossChain(0.5, 0.0, {})]

    fate = handshake([lambda: chains[0].lost(syn), lambda: chains[1].lost(syn_ack)], syn_retries=6)

    assert (fate.losses, fate.waited, fate.gave_up) == (2, 3.0, False)


def test_the_handshake_gives_up_after_linux_syn_retries_in_127_seconds() -> None:
    chain = LossChain(1.0, 0.0, {})
    rng = random.Random(1)

    fate = handshake([lambda: chain.lost(rng)], syn_retries=6)

    assert (fate.losses, fate.waited, fate.gave_up) == (7, 127.0, True)


def test_attributes_use_upstream_names_and_show_the_defaults() -> None:
    cls = TOXIC_TYPES["packet_loss"]

    assert cls.parse_attributes({"loss_rate": 0.05, "correlation": 0.25}) == {
        "loss_rate": 0.05,
        "correlation": 0.25,
        "segment_size": 1448,
        "rto_min": 200,
        "retries": 15,
        "syn_retries": 6,
    }
    current = cls.parse_attributes({"loss_rate": 0.05, "retries": 3})
    assert cls.parse_attributes({"correlation": 1}, current)["loss_rate"] == 0.05
    assert cls.parse_attributes({"correlation": 1}, current)["retries"] == 3


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"loss_rate": 1.5}, "loss_rate of packet_loss must be a probability from 0 to 1, got 1.5"),
        (
            {"loss_rate": True},
            "loss_rate of packet_loss must be a probability from 0 to 1, got True",
        ),
        (
            {"correlation": "high"},
            "correlation of packet_loss must be a probability from 0 to 1, got 'high'",
        ),
        (
            {"segment_size": 0},
            "segment_size of packet_loss must be between 1 and 65535 (bytes), got 0",
        ),
    ],
)
def test_bad_attributes_are_refused(attributes: dict[str, object], message: str) -> None:
    with pytest.raises(ApiError) as refused:
        TOXIC_TYPES["packet_loss"].parse_attributes(attributes)
    assert refused.value.message == f"bad request body: attribute {message}"
