"""What flows through a UDP proxy's toxics, and the stub a datagram toxic works through.

A datagram toxic is configuration plus a `datagram_pipe` coroutine, one per session, direction
and toxic, as a stream toxic has its `pipe`. Unlike a stream, datagrams may be lost,
duplicated and reordered: `send(datagram, at=...)` schedules a datagram for a later time
without waiting, so a datagram sent later may overtake it (as netem's jitter does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_chaos.engine.toxics.base import TOXIC_TYPES, Toxic

# What a toxic can do to a datagram besides passing or dropping it, as events name it.
DUPLICATED = "duplicated"
CORRUPTED = "corrupted"
REORDERED = "reordered"


@dataclass(slots=True)
class Datagram:
    """One datagram: its bytes, when it reached the current stage, and its number (0, 1, ...)
    among those the session received in its direction (a duplicate keeps the number)."""

    data: bytes
    arrived: float
    number: int

    def copy(self) -> Datagram:
        """A separate datagram with the same bytes, time and number (a duplicate)."""
        return Datagram(self.data, self.arrived, self.number)


class DatagramStub(Protocol):
    """The side of a datagram stage a toxic sees; it waits only through it (see `ToxicStub`)."""

    rng: random.Random
    state: dict[str, Any]

    def now(self) -> float:
        """The current time in seconds (`time.monotonic()` in the engine)."""
        ...

    async def receive(self) -> Datagram:
        """Wait for the next datagram."""
        ...

    async def receive_until(self, deadline: float) -> Datagram | None:
        """As `receive`, but give up at `deadline` (a `now()` time): None when nothing came."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Wait until `now()` reaches `deadline`."""
        ...

    def send(self, datagram: Datagram, at: float | None = None) -> None:
        """Pass `datagram` on at `at` (default: now); a later time schedules it, without waiting."""
        ...

    def drop(self, datagram: Datagram) -> None:
        """Discard `datagram`: it is lost."""
        ...

    def mark(self, datagram: Datagram, what: str) -> None:
        """Record that `datagram` was `DUPLICATED`, `CORRUPTED` or `REORDERED`."""
        ...

    def close_session(self, reason: str) -> None:
        """Forget this session (its next datagram from the client opens a new one)."""
        ...


class DatagramToxic(Toxic):
    """A toxic of a UDP proxy: its attributes are parsed as a stream toxic's are."""

    # The engine runs `datagram_pipe`; the stream `pipe` is never run on a UDP proxy.
    async def datagram_pipe(self, stub: DatagramStub) -> None:
        """Default behaviour: pass every datagram on unchanged."""
        while True:
            stub.send(await stub.receive())


DATAGRAM_TOXIC_TYPES: dict[str, type[Toxic]] = {}


def register(cls: type[DatagramToxic]) -> type[DatagramToxic]:
    """Register a datagram toxic class under its wire name."""
    DATAGRAM_TOXIC_TYPES[cls.type_name] = cls
    return cls


# Stream toxics with no meaning for datagrams, and why (for the API's 400).
NOT_FOR_DATAGRAMS = {
    "reset_peer": "datagrams have no connection to reset",
    "slow_close": "datagrams have no close to hold back",
    "slicer": "a datagram is never cut",
    "limit_data": "datagrams have no connection to close",
}


def unsupported(type_name: str) -> str | None:
    """Why a UDP proxy refuses toxics of `type_name` (None: it takes them, or the type is
    unknown to the engine, which gets upstream's "invalid toxic type")."""
    if type_name in DATAGRAM_TOXIC_TYPES or type_name not in TOXIC_TYPES:
        return None
    why = NOT_FOR_DATAGRAMS.get(type_name, "it acts on byte streams")
    return (
        f"toxic type {type_name} does not apply to a UDP proxy ({why}); a UDP proxy takes"
        f" {', '.join(sorted(DATAGRAM_TOXIC_TYPES))}"
    )
