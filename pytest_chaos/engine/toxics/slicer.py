"""`slicer`: splits chunks into small writes with `delay` MICROseconds (upstream's unit) after
each, to exercise readers that assume one read returns a whole message.

Slicing follows upstream: a chunk longer than `average_size + size_variation` is cut in two
near its middle (moved by a random offset in [-size_variation, size_variation)), and each half
again, until every slice is at most `average_size + size_variation` bytes. So a chunk splits
into slices of roughly half to all of that. A variation of up to `average_size` is accepted
(upstream's cut can then land on a slice's start; that empty slice is skipped, never
written); a larger one could cut outside the chunk and is refused, as is an average of 0,
on which upstream crashes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping

from pytest_chaos.engine.errors import bad_request
from pytest_chaos.engine.stream import Chunk
from pytest_chaos.engine.toxics.base import AttributeSpec, Toxic, ToxicStub, register

US_PER_DAY = 86_400_000_000


def slice_bounds(
    size: int, average: int, variation: int, rng: random.Random
) -> Iterator[tuple[int, int]]:
    """(start, end) of each non-empty slice of a chunk of `size` bytes, in order."""
    pending = [(0, size)]  # a stack: the leftmost part on top
    while pending:
        start, end = pending.pop()
        if end - start - average <= variation:
            if end > start:
                yield start, end
            continue
        middle = start + (end - start) // 2
        if variation:
            middle += rng.randrange(2 * variation) - variation
        pending.append((middle, end))
        pending.append((start, middle))


@register
class Slicer(Toxic):
    type_name = "slicer"
    attribute_specs = (
        AttributeSpec("average_size", "bytes", maximum=2**31),
        AttributeSpec("size_variation", "bytes", maximum=2**31),
        AttributeSpec("delay", "microseconds", maximum=US_PER_DAY),
    )

    @classmethod
    def check_combination(cls, values: Mapping[str, int]) -> None:
        average, variation = values["average_size"], values["size_variation"]
        # Upstream crashes on an average size of 0; we refuse it instead.
        if average < 1:
            raise bad_request("attribute average_size of slicer must be at least 1 (bytes)")
        if variation > average:
            raise bad_request(
                "attribute size_variation of slicer must be at most average_size"
                f" ({average}) (bytes), got {variation}"
            )

    async def pipe(self, stub: ToxicStub) -> None:
        average = self.attributes["average_size"]
        variation = self.attributes["size_variation"]
        delay = self.attributes["delay"] / 1_000_000
        while True:
            item = await stub.receive()
            if not isinstance(item, Chunk):
                stub.send(item)
                continue
            data = item.data
            for start, end in slice_bounds(len(data), average, variation, stub.rng):
                stub.send(Chunk(data[start:end], item.arrived))
                if end < len(data):
                    stub.hold(item, end)
                # As upstream, the delay follows every slice, the last one too.
                await stub.sleep_until(stub.now() + delay)
