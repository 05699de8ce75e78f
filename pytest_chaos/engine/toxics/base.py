"""What every toxic shares: its attributes, its registry entry, and the stub it works through.

A toxic is configuration plus a `pipe` coroutine. One `pipe` runs per connection, direction and
toxic, reading items from its stub and sending them on; the stub (`link.Stage`) owns the
queueing, the byte accounting and the hand-over when toxics change on a live connection.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from pytest_chaos.engine.errors import bad_request
from pytest_chaos.engine.stream import Chunk, Item

MS_PER_DAY = 86_400_000
# JSON integers beyond this cannot round-trip through a float-based client unchanged.
MAX_JSON_INT = 2**53


class ToxicStub(Protocol):
    """The side of a stage a toxic sees: where items come from and go to, and its clock.

    A toxic never calls asyncio itself: it waits only through `receive`, `receive_until` and
    `sleep_until`, against the clock of `now`. So the engine can keep a busy toxic from
    starving the event loop (each of these yields to the loop after a couple of milliseconds
    of work), and a unit test can drive any toxic with a virtual clock, without sockets.
    """

    rng: random.Random
    state: dict[str, Any]

    def now(self) -> float:
        """The current time in seconds (`time.monotonic()` in the engine)."""
        ...

    async def receive(self) -> Item:
        """Wait for the next item; it stays "held" by this stage until sent or dropped."""
        ...

    async def receive_until(self, deadline: float) -> Item | None:
        """As `receive`, but give up at `deadline` (a `now()` time): None when nothing came."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Wait until `now()` reaches `deadline`; `math.inf` waits until the toxic is stopped."""
        ...

    def send(self, item: Item, at: float | None = None) -> None:
        """Pass `item` to the next stage, stamped as arriving there at `at` (default: now)."""
        ...

    def hold(self, chunk: Chunk, sent: int) -> None:
        """Record that `chunk.data[sent:]` is not sent yet, so a toxic change can recover it.

        Costs nothing however large the chunk: the rest is cut only if it is recovered.
        """
        ...

    def drop(self, item: Item) -> None:
        """Discard `item` on purpose (a toxic that eats data)."""
        ...

    def close_connection(self, reason: str, *, reset: bool = False) -> None:
        """Close both sides of this connection, with a TCP RST when `reset` is true."""
        ...

    # -- for toxics that model the path (packet_loss)
    def round_trip(self) -> float:
        """The round trip the latency toxics acting on this connection add, both ways, in
        seconds (what a sender's RTT estimate would see beyond the path's own)."""
        ...

    def record(self, kind: str, *, at: float, **fields: Any) -> None:
        """Record an event of this connection and direction, stamped `at` (a `now()` time)."""
        ...


@dataclass(frozen=True)
class AttributeSpec:
    """One integer attribute of a toxic type: its wire name, unit and allowed range."""

    name: str
    unit: str
    maximum: int = MAX_JSON_INT
    minimum: int = 0


class Toxic:
    """Base class of every toxic type; subclasses are registered under their wire name."""

    type_name: ClassVar[str]
    attribute_specs: ClassVar[tuple[AttributeSpec, ...]] = ()
    # Upstream's timeout toxic closes the connection when it is removed; others just stop.
    closes_connection_when_removed: ClassVar[bool] = False
    # A toxic that must see both directions of a connection at once (the HTTP-aware ones of
    # `engine/http_toxics`): it never becomes a link stage; the connection hands it to its
    # HTTP layer instead (`Connection.set_connection_toxics`).
    acts_on_connection: ClassVar[bool] = False

    def __init__(self, attributes: Mapping[str, int]) -> None:
        self.attributes = dict(attributes)

    @classmethod
    def parse_attributes(
        cls, raw: object, current: Mapping[str, int] | None = None
    ) -> dict[str, int]:
        """Validate JSON attributes, merged over `current` (an update) or zero defaults."""
        values = dict(current) if current is not None else {s.name: 0 for s in cls.attribute_specs}
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise bad_request("attributes must be a JSON object")
        for spec in cls.attribute_specs:
            if spec.name not in raw or raw[spec.name] is None:
                continue
            value = raw[spec.name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad_request(
                    f"attribute {spec.name} of {cls.type_name} must be an integer ({spec.unit})"
                )
            if isinstance(value, float):
                if not value.is_integer():
                    raise bad_request(
                        f"attribute {spec.name} of {cls.type_name} must be an integer"
                        f" ({spec.unit}), got {value}"
                    )
                value = int(value)
            if not spec.minimum <= value <= spec.maximum:
                raise bad_request(
                    f"attribute {spec.name} of {cls.type_name} must be between {spec.minimum}"
                    f" and {spec.maximum} ({spec.unit}), got {value}"
                )
            values[spec.name] = value
        cls.check_combination(values)
        return values

    @classmethod
    def check_combination(cls, values: Mapping[str, int]) -> None:
        """Reject attribute combinations that are each valid alone but not together."""

    def passes_through(self) -> bool:
        """True when this toxic, as configured, sends every item on unchanged and at once.

        Its stage then forwards items as they come, without running `pipe` (no task, no hop
        through the event loop), so a do-nothing toxic costs about what no toxic costs. The
        default `pipe` does exactly that; a subclass whose `pipe` does nothing for some
        attributes (latency 0) says so here, and `pipe` must then behave the same.
        """
        return type(self).pipe is Toxic.pipe

    def due_time(self) -> Callable[[ToxicStub, Item], float] | None:
        """For a toxic that only delays items and keeps their order (latency): the function
        giving the `now()` time an item that just arrived is due to leave.

        Its stage then runs no task: each item is sent, from a timer, once it is due and every
        earlier item has left, stamped with its due time (an end of stream: when it leaves).
        `pipe` must do exactly that. None (the default): the stage runs `pipe`.
        """
        return None

    async def pipe(self, stub: ToxicStub) -> None:
        """Default behaviour: pass every item on unchanged."""
        while True:
            item = await stub.receive()
            stub.send(item)


TOXIC_TYPES: dict[str, type[Toxic]] = {}


ToxicClass = TypeVar("ToxicClass", bound=type[Toxic])


def register(cls: ToxicClass) -> ToxicClass:
    """Class decorator: make a toxic type available under its `type_name`."""
    TOXIC_TYPES[cls.type_name] = cls
    return cls
