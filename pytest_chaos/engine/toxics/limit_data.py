"""`limit_data`: forwards up to `bytes` per connection and direction, then closes the
connection. The count lives in the stage's state, so it survives updates of the toxic."""

from __future__ import annotations

from pytest_chaos.engine.stream import Chunk
from pytest_chaos.engine.toxics.base import AttributeSpec, Toxic, ToxicStub, register


@register
class LimitData(Toxic):
    type_name = "limit_data"
    attribute_specs = (AttributeSpec("bytes", "bytes"),)

    async def pipe(self, stub: ToxicStub) -> None:
        limit = self.attributes["bytes"]
        passed: int = stub.state.setdefault("passed", 0)
        while True:
            if passed >= limit:
                stub.close_connection("limit_data")
                return
            item = await stub.receive()
            if not isinstance(item, Chunk):
                stub.send(item)
                continue
            allowed = limit - passed
            if len(item.data) <= allowed:
                stub.send(item)
                passed += len(item.data)
            else:
                stub.send(Chunk(item.data[:allowed], item.arrived))
                stub.drop(Chunk(item.data[allowed:], item.arrived))
                passed = limit
            stub.state["passed"] = passed
