"""`timeout` (the `stall` marker): drops all data and closes the connection after `timeout` ms
without incoming data; with 0 it never closes and data is dropped until the toxic is removed.
Removing it closes the connection, as upstream does, since the peers' protocol state is lost."""

from __future__ import annotations

from pytest_chaos.engine.stream import EndOfStream
from pytest_chaos.engine.toxics.base import MS_PER_DAY, AttributeSpec, Toxic, ToxicStub, register


@register
class Timeout(Toxic):
    type_name = "timeout"
    attribute_specs = (AttributeSpec("timeout", "ms", maximum=MS_PER_DAY),)
    closes_connection_when_removed = True

    async def pipe(self, stub: ToxicStub) -> None:
        idle_limit = self.attributes["timeout"] / 1000
        while True:
            if idle_limit > 0:
                item = await stub.receive_until(stub.now() + idle_limit)
                if item is None:
                    stub.close_connection("timeout")
                    return
            else:
                item = await stub.receive()
            stub.drop(item)
            if isinstance(item, EndOfStream):
                stub.close_connection("timeout")
                return
