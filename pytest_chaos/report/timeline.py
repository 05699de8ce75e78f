"""What happened during one test: faults applied and reverted, and what the engine saw.

Rendered as text in the failure report (`str(timeline)`), and as JSON for `--chaos-report`
and JUnit XML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_chaos.apply import AppliedFault
from pytest_chaos.events import TIMELINE_KINDS, Event


class TimelineSource(Protocol):
    """Events from elsewhere than the engine (the DNS layers): their lines for the timeline,
    and their JSON under `name` in the report."""

    name: str

    def timeline_rows(self) -> list[tuple[float, str]]:
        """(time.monotonic(), one line) per event."""
        ...

    def timeline_json(self) -> list[dict[str, Any]]:
        """The events as JSON objects, for the report under `name`."""
        ...


@dataclass
class Timeline:
    """The faults of one test and the engine's events, on the engine's clock."""

    started_at: float
    seed: int
    faults: list[AppliedFault] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    note: str | None = None
    # The command that runs this test again with the same draws (shown on failures).
    replay: str | None = None
    # Other sources of events, their lines merged with the engine's by time.
    sources: list[TimelineSource] = field(default_factory=list)
    # What the times count from: the test, or the example of a Hypothesis test shown.
    origin: str = "test"

    def entries(self) -> list[tuple[float, str]]:
        """(seconds from the test's start, one line) for every fault change and connection
        event, oldest first."""
        rows: list[tuple[float, str]] = []
        for applied in self.faults:
            rows.append((applied.applied_at, f"applied  {applied.fault}"))
            if applied.reverted_at is not None:
                rows.append((applied.reverted_at, f"reverted {applied.fault}"))
        rows += [(event.time, str(event)) for event in self.events if event.kind in TIMELINE_KINDS]
        for source in self.sources:
            rows += source.timeline_rows()
        rows.sort(key=lambda row: row[0])
        return [(at - self.started_at, text) for at, text in rows]

    def render(self) -> str:
        """The text a failing test shows: one line per fault change and connection event."""
        lines = [f"times from the start of the {self.origin}; seed {self.seed}"]
        lines += [f"{offset:+9.3f}s  {text}" for offset, text in self.entries()]
        if self.note:
            lines.append(self.note)
        if self.replay:
            lines.append(f"replay: {self.replay}")
        return "\n".join(lines)

    __str__ = render

    def to_json(self) -> dict[str, Any]:
        """The record of `--chaos-report` and the JUnit `chaos` property."""
        extra = {source.name: source.timeline_json() for source in self.sources}
        return {
            "seed": self.seed,
            "faults": [
                {
                    "fault": str(applied.fault),
                    "type": applied.fault.kind,
                    "target": applied.fault.target,
                    "options": applied.fault.options(),
                    "applied_at": round(applied.applied_at - self.started_at, 6),
                    "reverted_at": None
                    if applied.reverted_at is None
                    else round(applied.reverted_at - self.started_at, 6),
                }
                for applied in self.faults
            ],
            "events": [
                {**event.to_json(), "offset": round(event.time - self.started_at, 6)}
                for event in self.events
            ],
            **extra,
        }
