"""`bandwidth`: paces delivery to `rate` KB/s (1 KB = 1000 bytes); rate 0 stalls the stream.

Each piece is due when the link would have finished sending it at the rate, counting from the
chunk's arrival (or from when the previous piece was done, if later). Counting from arrival,
not from when this task happened to wake up, keeps the rate: a timer firing late delays one
piece, never every piece after it.

Pieces carry at most `PIECE_SECONDS` of the rate (at most 200 wake-ups a second per busy link),
and the first piece of a burst on an idle link `FIRST_PIECE_SECONDS` of it: the first byte
comes 1 ms after it would on a real link of that rate, not a whole read later (upstream sends
a read of up to 32 KB at once, 34 ms late at 1000 KB/s, and 100 ms pieces at lower rates).
"""

from __future__ import annotations

import math

from pytest_chaos.engine.stream import Chunk
from pytest_chaos.engine.toxics.base import AttributeSpec, Toxic, ToxicStub, register

# Send at most this much of a second's allowance at once, so pacing stays smooth.
PIECE_SECONDS = 0.005
# The first piece after the link was idle: how late the first byte of a burst may be.
FIRST_PIECE_SECONDS = 0.001


@register
class Bandwidth(Toxic):
    """Paces a stream to `rate` KB/s; see the module's docstring."""

    type_name = "bandwidth"
    attribute_specs = (AttributeSpec("rate", "KB/s", maximum=10**12),)

    async def pipe(self, stub: ToxicStub) -> None:
        """Send each chunk in pieces, each when the rate has sent it (0: hold for ever)."""
        bytes_per_second = self.attributes["rate"] * 1000
        if bytes_per_second == 0:
            await self._stall(stub)
        piece_size = max(1, int(bytes_per_second * PIECE_SECONDS))
        first_size = max(1, int(bytes_per_second * FIRST_PIECE_SECONDS))
        free_at = -math.inf  # when the link has sent everything given to it so far
        while True:
            item = await stub.receive()
            if not isinstance(item, Chunk):
                stub.send(item)
                continue
            # An idle link starts a burst with a smaller piece: its first byte is not held
            # back by a whole piece's worth of time.
            size = first_size if item.arrived >= free_at else piece_size
            free_at = max(free_at, item.arrived)
            data = item.data
            start = 0
            while start < len(data):
                end = start + size
                piece = data[start:end]
                free_at += len(piece) / bytes_per_second
                await stub.sleep_until(free_at)
                stub.send(Chunk(piece, item.arrived), at=free_at)
                if end < len(data):
                    stub.hold(item, end)
                start, size = end, piece_size

    @staticmethod
    async def _stall(stub: ToxicStub) -> None:
        """Hold the first chunk for ever (testcontainers' "cut connection" relies on it).

        The held chunk and everything behind it are recovered by the stage when the toxic is
        changed or removed. An end of stream before any data passes, as upstream lets it.
        """
        while not isinstance(item := await stub.receive(), Chunk):
            stub.send(item)
        await stub.sleep_until(math.inf)
