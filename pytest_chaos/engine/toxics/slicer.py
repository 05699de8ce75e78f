"""`slicer`: splits chunks into writes of about `average_size` +/- `size_variation` bytes with
`delay` MICROseconds between them (upstream's unit), to exercise readers that assume one read
returns a whole message."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pytest_chaos.engine.errors import bad_request
from pytest_chaos.engine.stream import Chunk
from pytest_chaos.engine.toxics.base import AttributeSpec, Toxic, ToxicStub, register

US_PER_DAY = 86_400_000_000


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
        # Upstream crashes on an average size of 0; we refuse it instead.
        if values["average_size"] < 1:
            raise bad_request("attribute average_size of slicer must be at least 1 (bytes)")
        if values["size_variation"] >= values["average_size"]:
            raise bad_request(
                "attribute size_variation of slicer must be smaller than average_size (bytes)"
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
            while data:
                size = average + stub.rng.randint(-variation, variation) if variation else average
                piece, data = data[:size], data[size:]
                stub.send(Chunk(piece, item.arrived))
                if data:
                    stub.hold(Chunk(data, item.arrived))
                    if delay:
                        await asyncio.sleep(delay)
