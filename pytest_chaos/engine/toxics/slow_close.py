"""`slow_close`: data passes unchanged; the close (FIN) is held back by `delay` ms."""

from __future__ import annotations

from pytest_chaos.engine.stream import EndOfStream
from pytest_chaos.engine.toxics.base import MS_PER_DAY, AttributeSpec, Toxic, ToxicStub, register


@register
class SlowClose(Toxic):
    type_name = "slow_close"
    attribute_specs = (AttributeSpec("delay", "ms", maximum=MS_PER_DAY),)

    async def pipe(self, stub: ToxicStub) -> None:
        while True:
            item = await stub.receive()
            if isinstance(item, EndOfStream):
                await stub.sleep_until(item.arrived + self.attributes["delay"] / 1000)
            stub.send(item)
