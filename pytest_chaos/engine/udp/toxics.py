"""The toxics of a UDP proxy, by wire name, each acting on whole datagrams (netem's faults).

- `latency` (`latency`, `jitter` ms): each datagram delayed by latency + uniform(-jitter,
  +jitter) (never below 0), on its own: jitter reorders datagrams, as netem's does.
- `packet_loss` (`loss_rate`, `correlation`: probabilities): each datagram lost with the
  correlated chain of the TCP toxic (`toxics/packet_loss.py`): on UDP a loss is a loss.
- `duplicate` (`probability`): a datagram sent twice, the copy right after it.
- `reorder` (`probability`; `distance` datagrams, `delay` ms): a datagram held back until
  `distance` later ones overtook it, or at most `delay` ms.
- `corrupt` (`probability`): one bit of the datagram flipped, at a random place (the client
  sees it unless it checks a checksum of its own: UDP's is computed by the proxy's kernel).
- `bandwidth` (`rate` KB/s, or `datagrams` per second): datagrams paced through a queue of at
  most 1000 (netem's default `limit`); what arrives at a full queue is dropped, as a router
  drops it. Both 0: nothing passes.
- `timeout` (`timeout` ms): every datagram dropped; with a timeout, the session is closed
  after that long without datagrams. (The `dependency_down` blackhole.)
- `noop`.

Each draws from the stage's seeded generator a fixed number of times per datagram (two for a
datagram `corrupt` hits), so the n-th datagram of a proxy's n-th session has the same fate
with the same seed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from pytest_chaos.engine.toxics.base import MS_PER_DAY, AttributeSpec
from pytest_chaos.engine.toxics.latency import Latency
from pytest_chaos.engine.toxics.packet_loss import LossChain
from pytest_chaos.engine.toxics.probability import ProbabilityToxic
from pytest_chaos.engine.toxics.timeout import Timeout
from pytest_chaos.engine.udp.datagram import (
    CORRUPTED,
    DUPLICATED,
    REORDERED,
    Datagram,
    DatagramStub,
    DatagramToxic,
    register,
)

# netem's default queue `limit`, in datagrams.
QUEUE_LIMIT = 1000


@register
class DatagramLatency(DatagramToxic):
    type_name = "latency"
    attribute_specs = Latency.attribute_specs

    async def datagram_pipe(self, stub: DatagramStub) -> None:
        latency = self.attributes["latency"] / 1000
        jitter = self.attributes["jitter"] / 1000
        while True:
            datagram = await stub.receive()
            delay = latency + stub.rng.uniform(-jitter, jitter) if jitter else latency
            stub.send(datagram, at=datagram.arrived + max(0.0, delay))


@register
class DatagramLoss(ProbabilityToxic, DatagramToxic):
    type_name = "packet_loss"
    probability_names = ("loss_rate", "correlation")

    async def datagram_pipe(self, stub: DatagramStub) -> None:
        attributes = self.attributes
        chain = LossChain(attributes["loss_rate"], attributes["correlation"], stub.state)
        while True:
            datagram = await stub.receive()
            if chain.lost(stub.rng):
                stub.drop(datagram)
            else:
                stub.send(datagram)


@register
class Duplicate(ProbabilityToxic, DatagramToxic):
    type_name = "duplicate"
    probability_names = ("probability",)

    async def datagram_pipe(self, stub: DatagramStub) -> None:
        probability = self.attributes["probability"]
        while True:
            datagram = await stub.receive()
            twice = stub.rng.random() < probability
            stub.send(datagram)
            if twice:
                stub.mark(datagram, DUPLICATED)
                stub.send(datagram.copy())


@register
class Corrupt(ProbabilityToxic, DatagramToxic):
    type_name = "corrupt"
    probability_names = ("probability",)

    async def datagram_pipe(self, stub: DatagramStub) -> None:
        probability = self.attributes["probability"]
        while True:
            datagram = await stub.receive()
            if datagram.data and stub.rng.random() < probability:
                bit = stub.rng.randrange(len(datagram.data) * 8)
                flipped = bytearray(datagram.data)
                flipped[bit // 8] ^= 1 << (bit % 8)
                datagram.data = bytes(flipped)
                stub.mark(datagram, CORRUPTED)
            stub.send(datagram)


@dataclass
class _Held:
    datagram: Datagram
    waiting_for: int  # how many more datagrams must overtake it
    deadline: float
    overtaken: bool = False


@register
class Reorder(ProbabilityToxic, DatagramToxic):
    type_name = "reorder"
    probability_names = ("probability",)
    attribute_specs = (
        AttributeSpec("distance", "datagrams", minimum=1, maximum=10_000),
        AttributeSpec("delay", "ms", maximum=MS_PER_DAY),
    )
    defaults: ClassVar[dict[str, int]] = {"distance": 1, "delay": 20}

    async def datagram_pipe(self, stub: DatagramStub) -> None:
        probability = self.attributes["probability"]
        distance = self.attributes["distance"]
        delay = self.attributes["delay"] / 1000
        held: list[_Held] = []
        while True:
            deadline = min((h.deadline for h in held), default=math.inf)
            datagram = await stub.receive_until(deadline)
            if datagram is None:
                # Nothing overtook it in time: it goes late (reordered if some did overtake).
                now = stub.now()
                for late in [h for h in held if h.deadline <= now]:
                    held.remove(late)
                    self._release(stub, late)
                continue
            if stub.rng.random() < probability:
                held.append(_Held(datagram, distance, datagram.arrived + delay))
                continue
            stub.send(datagram)
            for waiting in list(held):
                waiting.overtaken = True
                waiting.waiting_for -= 1
                if waiting.waiting_for == 0:
                    held.remove(waiting)
                    self._release(stub, waiting)

    @staticmethod
    def _release(stub: DatagramStub, held: _Held) -> None:
        if held.overtaken:
            stub.mark(held.datagram, REORDERED)
        stub.send(held.datagram)


@register
class DatagramBandwidth(DatagramToxic):
    type_name = "bandwidth"
    attribute_specs = (
        AttributeSpec("rate", "KB/s", maximum=10**12),
        AttributeSpec("datagrams", "datagrams/s", maximum=10**9),
    )

    async def datagram_pipe(self, stub: DatagramStub) -> None:
        bytes_per_second = self.attributes["rate"] * 1000
        per_second = self.attributes["datagrams"]
        free_at = -math.inf  # when the link has sent everything queued so far
        queued: deque[float] = deque()  # when each queued datagram leaves
        while True:
            datagram = await stub.receive()
            now = datagram.arrived
            while queued and queued[0] <= now:
                queued.popleft()
            if (not bytes_per_second and not per_second) or len(queued) >= QUEUE_LIMIT:
                stub.drop(datagram)
                continue
            cost = max(
                len(datagram.data) / bytes_per_second if bytes_per_second else 0.0,
                1 / per_second if per_second else 0.0,
            )
            free_at = max(free_at, now) + cost
            queued.append(free_at)
            stub.send(datagram, at=free_at)


@register
class DatagramTimeout(DatagramToxic):
    type_name = "timeout"
    attribute_specs = Timeout.attribute_specs

    async def datagram_pipe(self, stub: DatagramStub) -> None:
        idle_limit = self.attributes["timeout"] / 1000
        while True:
            deadline = stub.now() + idle_limit if idle_limit > 0 else math.inf
            datagram = await stub.receive_until(deadline)
            if datagram is None:
                stub.close_session("timeout")
                return
            stub.drop(datagram)


@register
class DatagramNoop(DatagramToxic):
    type_name = "noop"
