"""`latency`: delays each chunk by latency +/- jitter, measured from when it arrived.

Measuring from arrival (not from when the previous chunk left) keeps throughput: chunks queued
behind a delayed one do not add their delays up. Order is kept even when jitter would let a
later chunk overtake an earlier one.
"""

from __future__ import annotations

from pytest_chaos.engine.stream import Chunk
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

    async def pipe(self, stub: ToxicStub) -> None:
        """Send each chunk at its arrival plus the latency (and a jitter draw), in order."""
        latency = self.attributes["latency"] / 1000
        jitter = self.attributes["jitter"] / 1000
        while True:
            item = await stub.receive()
            if not isinstance(item, Chunk):
                stub.send(item)
                continue
            delay = latency + stub.rng.uniform(-jitter, jitter) if jitter else latency
            due = item.arrived + delay
            await stub.sleep_until(due)
            # Stamp with the due time, not the wake-up time, so chained latencies add exactly.
            stub.send(item, at=max(due, item.arrived))
