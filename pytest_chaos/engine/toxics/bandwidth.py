"""`bandwidth`: paces delivery to `rate` KB/s (1 KB = 1000 bytes); rate 0 stalls the stream."""

from __future__ import annotations

import asyncio

from pytest_chaos.engine.stream import Chunk
from pytest_chaos.engine.toxics.base import AttributeSpec, Toxic, ToxicStub, register

# Send at most this much of a second's allowance at once, so pacing stays smooth.
SLICE_SECONDS = 0.1


@register
class Bandwidth(Toxic):
    type_name = "bandwidth"
    attribute_specs = (AttributeSpec("rate", "KB/s", maximum=10**12),)

    async def pipe(self, stub: ToxicStub) -> None:
        bytes_per_second = self.attributes["rate"] * 1000
        if bytes_per_second == 0:
            # testcontainers' "cut connection" relies on rate 0 holding data forever. The held
            # item is recovered by the stage if the toxic is changed or removed.
            await stub.receive()
            await asyncio.Future()
        slice_size = max(1, int(bytes_per_second * SLICE_SECONDS))
        # A virtual clock of when the link is free again, so sleep overshoot does not drift.
        free_at = stub.now()
        while True:
            item = await stub.receive()
            if not isinstance(item, Chunk):
                stub.send(item)
                continue
            free_at = max(free_at, stub.now())
            data = item.data
            while data:
                piece, data = data[:slice_size], data[slice_size:]
                free_at += len(piece) / bytes_per_second
                while (wait := free_at - stub.now()) > 0:  # noqa: ASYNC110 - a deadline, no event
                    await asyncio.sleep(wait)
                stub.send(Chunk(piece, item.arrived))
                if data:
                    stub.hold(Chunk(data, item.arrived))
