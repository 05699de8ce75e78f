"""The record of what the engine saw: connections, dials, bytes, closes and fault changes.

Events carry a sequence number (so a reader can ask only for what is new) and a
`time.monotonic()` timestamp, which on Linux is the same clock in every process of the machine,
so the test process can line events up with its own measurements.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

Event = dict[str, Any]

DEFAULT_CAPACITY = 100_000


class EventLog:
    """A bounded, append-only log of events; the oldest are dropped when it is full."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._sequence = itertools.count(1)
        self.last_seq = 0

    def record(
        self, kind: str, proxy: str | None = None, *, at: float | None = None, **fields: Any
    ) -> Event:
        """Append an event stamped `at` (default: now, `time.monotonic()`)."""
        seq = next(self._sequence)
        stamp = time.monotonic() if at is None else at
        event: Event = {"seq": seq, "time": stamp, "kind": kind, "proxy": proxy}
        event.update(fields)
        self._events.append(event)
        self.last_seq = seq
        return event

    def since(
        self, seq: int = 0, *, proxy: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Events with a sequence number above `seq`, oldest first, optionally for one proxy."""
        events = self._events
        if events and events[0]["seq"] <= seq:
            # Sequence numbers are dense, so the first new event sits at a known offset.
            start = seq - events[0]["seq"] + 1
            selected: list[Event] = list(itertools.islice(events, start, None))
        else:
            selected = list(events)
        if proxy is not None:
            selected = [event for event in selected if event["proxy"] == proxy]
        if limit is not None:
            selected = selected[:limit]
        return selected

    @property
    def oldest_seq(self) -> int:
        return self._events[0]["seq"] if self._events else self.last_seq + 1

    def __len__(self) -> int:
        return len(self._events)
