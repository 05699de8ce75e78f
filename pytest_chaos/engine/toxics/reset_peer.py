"""`reset_peer`: on the first data (or end of stream), waits `timeout` ms, then resets the
connection with a TCP RST (SO_LINGER 0), so peers see ECONNRESET rather than a clean close."""

from __future__ import annotations

from pytest_chaos.engine.toxics.base import MS_PER_DAY, AttributeSpec, Toxic, ToxicStub, register


@register
class ResetPeer(Toxic):
    type_name = "reset_peer"
    attribute_specs = (AttributeSpec("timeout", "ms", maximum=MS_PER_DAY),)

    async def pipe(self, stub: ToxicStub) -> None:
        item = await stub.receive()
        stub.drop(item)
        await stub.sleep_until(item.arrived + self.attributes["timeout"] / 1000)
        stub.close_connection("reset_peer", reset=True)
