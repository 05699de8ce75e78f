"""`bandwidth`: paces delivery to `rate` KB/s (1 KB = 1000 bytes); rate 0 stalls the stream.

Each piece is due when the link would have finished sending it at the rate, counting from the
chunk's arrival (or from when the previous piece was done, if later). Counting from arrival,
not from when this task happened to wake up, keeps the rate: a timer firing late delays one
piece, never every piece after it.
"""

from __future__ import annotations

import math

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
            await self._stall(stub)
        slice_size = max(1, int(bytes_per_second * SLICE_SECONDS))
        free_at = -math.inf  # when the link has sent everything given to it so far
        while True:
            item = await stub.receive()
            if not isinstance(item, Chunk):
                stub.send(item)
                continue
            free_at = max(free_at, item.arrived)
            data = item.data
            for start in range(0, len(data), slice_size):
                piece = data[start : start + slice_size]
                free_at += len(piece) / bytes_per_second
                await stub.sleep_until(free_at)
                stub.send(Chunk(piece, item.arrived), at=free_at)
                if start + slice_size < len(data):
                    stub.hold(item, start + slice_size)

    @staticmethod
    async def _stall(stub: ToxicStub) -> None:
        """Hold the first chunk for ever (testcontainers' "cut connection" relies on it).

        The held chunk and everything behind it are recovered by the stage when the toxic is
        changed or removed. An end of stream before any data passes, as upstream lets it.
        """
        while not isinstance(item := await stub.receive(), Chunk):
            stub.send(item)
        await stub.sleep_until(math.inf)
