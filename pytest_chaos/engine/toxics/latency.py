"""`latency`: delays each chunk by latency +/- jitter, measured from when it arrived.

Measuring from arrival (not from when the previous chunk left) keeps throughput: chunks queued
behind a delayed one do not add their delays up. Order is kept even when jitter would let a
later chunk overtake an earlier one.
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_chaos.engine.stream import Chunk, Item
from pytest_chaos.engine.toxics.base import MS_PER_DAY, AttributeSpec, Toxic, ToxicStub, register


@register
class Latency(Toxic):
    """Delays each chunk by `latency` ms, plus or minus a uniform draw within `jitter` ms."""

    type_name = "latency"
    attribute_specs = (
        AttributeSpec("latency", "ms", maximum=MS_PER_DAY),
        AttributeSpec("jitter", "ms", maximum=MS_PER_DAY),
    )

    def passes_through(self) -> bool:
        """Latency 0 without jitter delays nothing (a jitter alone still moves chunks)."""
        return self.attributes["latency"] == 0 and self.attributes["jitter"] == 0

    def due_time(self) -> Callable[[ToxicStub, Item], float]:
        """Each chunk is due at its arrival plus the latency and a jitter draw."""
        return self._due

    def _due(self, stub: ToxicStub, item: Item) -> float:
        if not isinstance(item, Chunk):
            return item.arrived
        jitter = self.attributes["jitter"] / 1000
        delay = self.attributes["latency"] / 1000
        if jitter:
            delay += stub.rng.uniform(-jitter, jitter)
        # Jitter may not send a chunk before it arrived.
        return max(item.arrived + delay, item.arrived)

    async def pipe(self, stub: ToxicStub) -> None:
        """Send each chunk at its arrival plus the latency (and a jitter draw), in order.

        The engine schedules these sends from timers instead (`due_time`); this is the same
        behaviour as a coroutine, for the fake-clock tests of toxics."""
        while True:
            item = await stub.receive()
            due = self._due(stub, item)
            if not isinstance(item, Chunk):
                stub.send(item)
                continue
            await stub.sleep_until(due)
            # Stamp with the due time, not the wake-up time, so chained latencies add exactly.
            stub.send(item, at=due)
