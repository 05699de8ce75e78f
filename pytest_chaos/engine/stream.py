"""What flows through a link: chunks of bytes and one explicit end of stream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Chunk:
    """Bytes read from one side, with the loop time they reached the current stage."""

    data: bytes
    arrived: float


@dataclass(slots=True)
class EndOfStream:
    """The sending side closed its half of the connection (a FIN)."""

    arrived: float


Item = Chunk | EndOfStream
