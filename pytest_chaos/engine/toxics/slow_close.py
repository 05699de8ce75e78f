"""`slow_close`: data passes unchanged; the close (FIN) is held back by `delay` ms."""

from __future__ import annotations

from pytest_chaos.engine.stream import EndOfStream
from pytest_chaos.engine.toxics.base import MS_PER_DAY, AttributeSpec, Toxic, ToxicStub, register


@register
class SlowClose(Toxic):
    """Holds back the end of stream (the FIN) by `delay` ms; data is not delayed."""

    type_name = "slow_close"
    attribute_specs = (AttributeSpec("delay", "ms", maximum=MS_PER_DAY),)

    def passes_through(self) -> bool:
        """A delay of 0 holds nothing back."""
        return self.attributes["delay"] == 0

    async def pipe(self, stub: ToxicStub) -> None:
        """Pass data at once; send the end of stream `delay` ms after it arrived."""
        while True:
            item = await stub.receive()
            if isinstance(item, EndOfStream):
                await stub.sleep_until(item.arrived + self.attributes["delay"] / 1000)
            stub.send(item)
