"""`packet_loss` on TCP: loss as TCP turns it into delay, never as missing bytes.

A TCP peer never sees a lost packet: the sender's kernel retransmits it. What the peer sees is
a stall. This toxic reproduces that, per direction of a connection:

- The stream is cut into segments of at most `segment_size` bytes (1448: the MSS of a 1500-byte
  Ethernet MTU with TCP timestamps), each chunk as the sender wrote it. The end of stream (the
  FIN) is a segment too.
- Each transmission of a segment is lost with probability `loss_rate`. With `correlation` c,
  losses come in bursts while the mean stays `loss_rate` r: a two-state Markov chain (the
  simple Gilbert model) loses the next transmission with probability r + c(1 - r) after a loss
  and r(1 - c) after a delivery, so c is the correlation between consecutive fates and a burst
  lasts 1 / (1 - r - c(1 - r)) transmissions on average. (Upstream Toxiproxy's unreleased toxic
  adds c to r after a loss, which raises the mean loss to r / (1 - c); ours keeps `loss_rate`
  the rate you measure.)
- A lost segment is retransmitted after the retransmission timeout (RTO), which doubles on each
  consecutive loss of that segment (RFC 6298, section 5.5), up to 120 s (Linux's TCP_RTO_MAX).
  The first RTO is Linux's for a steady path: the round trip plus `rto_min` (200 ms, Linux's
  TCP_RTO_MIN; RFC 6298's 1 s floor is what Linux lowers). The round trip is what the latency
  toxics acting on this connection add both ways (a loopback path's own is microseconds).
- Everything behind a lost segment waits for it: bytes are delivered in order (head-of-line
  blocking), so a segment is delivered when it got through and all before it were delivered.
- After `retries` retransmissions of one segment are lost too (Linux's tcp_retries2, 15: about
  15 minutes of backing off), the connection is reset, as a kernel that gives up does.
- A lost SYN (or SYN-ACK) delays the connection's establishment by 1 s, then 2 s, 4 s ... (RFC
  6298's initial RTO of 1 s, doubling), and after `syn_retries` more (Linux's tcp_syn_retries,
  6: 127 s in all) the connection is reset: see `engine/handshake.py`.

Bytes are never lost, duplicated or reordered. Draws come from the stage's seeded generator: one
per transmission, so the n-th segment of a proxy's n-th connection has the same fate with the
same seed and traffic. Simplifications: acknowledgements are never lost, and the congestion
window's collapse after a timeout (slow start) is not modelled, so throughput outside stalls is
the path's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pytest_chaos.engine.stream import Chunk, EndOfStream
from pytest_chaos.engine.toxics.base import MS_PER_DAY, AttributeSpec, ToxicStub, register
from pytest_chaos.engine.toxics.probability import ProbabilityToxic

SEGMENT_SIZE = 1448
RTO_MIN_MS = 200
RTO_MAX_SECONDS = 120.0
RETRIES = 15
# RFC 6298 (2.1): before a round trip was measured, as for a SYN, the RTO is 1 second.
SYN_RTO_SECONDS = 1.0
SYN_RETRIES = 6


class LossChain:
    """Whether each transmission is lost: `loss_rate` on average, bursty with `correlation`.

    The chain's state (was the last transmission lost?) lives in `state`, the stage's memory,
    so an update of the toxic keeps it.
    """

    def __init__(self, loss_rate: float, correlation: float, state: dict[str, Any]) -> None:
        self.loss_rate = loss_rate
        self.after_loss = loss_rate + correlation * (1 - loss_rate)
        self.after_delivery = loss_rate * (1 - correlation)
        self.state = state

    def lost(self, rng: random.Random) -> bool:
        """Draw the fate of the next transmission (one draw from `rng`)."""
        last = self.state.get("last_lost")
        if last is None:
            chance = self.loss_rate
        else:
            chance = self.after_loss if last else self.after_delivery
        lost = rng.random() < chance
        self.state["last_lost"] = lost
        return lost


def backoff(first: float, limit: float = RTO_MAX_SECONDS) -> Iterator[float]:
    """Retransmission timeouts: `first`, doubling each time, never above `limit`."""
    timeout = first
    while True:
        yield min(timeout, limit)
        timeout *= 2


@dataclass(frozen=True)
class Fate:
    """What became of one segment: how many of its transmissions were lost, and how long the
    losses took (the wait until the transmission that got through, or until giving up)."""

    losses: int
    waited: float
    gave_up: bool


def transmit(chain: LossChain, rng: random.Random, first_rto: float, retries: int) -> Fate:
    """Send one segment until a transmission gets through, or `retries` retransmissions were
    lost too (then `gave_up`)."""
    waited = 0.0
    for losses, timeout in enumerate(backoff(first_rto), start=1):
        if not chain.lost(rng):
            return Fate(losses - 1, waited, gave_up=False)
        waited += timeout
        if losses > retries:
            return Fate(losses, waited, gave_up=True)
    raise AssertionError("unreachable: backoff never ends")


def handshake(attempt_lost: Sequence[Callable[[], bool]], syn_retries: int) -> Fate:
    """The fate of a connection's handshake. Each attempt (a SYN and its SYN-ACK) is lost when
    any of `attempt_lost` draws a loss (each draws, every time, so that one toxic's draws never
    depend on another's); a lost attempt is retried after 1 s, then 2 s, 4 s ...; after
    `syn_retries` retries lost too, the handshake `gave_up`."""
    waited = 0.0
    for losses, timeout in enumerate(backoff(SYN_RTO_SECONDS), start=1):
        if not any([lost() for lost in attempt_lost]):
            return Fate(losses - 1, waited, gave_up=False)
        waited += timeout
        if losses > syn_retries:
            return Fate(losses, waited, gave_up=True)
    raise AssertionError("unreachable: backoff never ends")


def segments(item: Chunk | EndOfStream, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each segment of a chunk, or one empty segment for the end of stream."""
    if isinstance(item, EndOfStream):
        yield 0, 0
        return
    for start in range(0, len(item.data), size):
        yield start, min(start + size, len(item.data))


@register
class PacketLoss(ProbabilityToxic):
    type_name = "packet_loss"
    # Upstream's names and units for the two it has (probabilities, JSON numbers).
    probability_names = ("loss_rate", "correlation")
    attribute_specs = (
        AttributeSpec("segment_size", "bytes", minimum=1, maximum=65535),
        AttributeSpec("rto_min", "ms", minimum=1, maximum=MS_PER_DAY),
        AttributeSpec("retries", "retransmissions", maximum=255),
        AttributeSpec("syn_retries", "retransmissions", maximum=255),
    )
    defaults: ClassVar[Mapping[str, int]] = {
        "segment_size": SEGMENT_SIZE,
        "rto_min": RTO_MIN_MS,
        "retries": RETRIES,
        "syn_retries": SYN_RETRIES,
    }

    async def pipe(self, stub: ToxicStub) -> None:
        chain = LossChain(self.attributes["loss_rate"], self.attributes["correlation"], stub.state)
        size = self.attributes["segment_size"]
        rto_min = self.attributes["rto_min"] / 1000
        retries = self.attributes["retries"]
        # When the last segment was delivered: later ones never overtake it.
        delivered = float(stub.state.get("delivered", 0.0))
        while True:
            item = await stub.receive()
            for start, end in segments(item, size):
                first_rto = stub.round_trip() + rto_min
                fate = transmit(chain, stub.rng, first_rto, retries)
                due = item.arrived + fate.waited
                if fate.gave_up:
                    await stub.sleep_until(due)
                    self._record(stub, item, start, end, fate, first_rto)
                    stub.close_connection(
                        f"gave up after {fate.losses} losses of a segment", reset=True
                    )
                    return
                await stub.sleep_until(due)
                delivered = max(delivered, due)
                stub.state["delivered"] = delivered
                if fate.losses:
                    self._record(stub, item, start, end, fate, first_rto)
                if isinstance(item, EndOfStream):
                    stub.send(item, at=delivered)
                    break
                stub.send(Chunk(item.data[start:end], item.arrived), at=delivered)
                if end < len(item.data):
                    stub.hold(item, end)

    @staticmethod
    def _record(
        stub: ToxicStub,
        item: Chunk | EndOfStream,
        start: int,
        end: int,
        fate: Fate,
        first_rto: float,
    ) -> None:
        stub.record(
            "retransmitted",
            at=item.arrived,
            bytes=end - start,
            fin=isinstance(item, EndOfStream),
            losses=fate.losses,
            rto_ms=round(first_rto * 1000, 3),
            stalled_ms=round(fate.waited * 1000, 3),
            gave_up=fate.gave_up,
            until=item.arrived + fate.waited,
        )
