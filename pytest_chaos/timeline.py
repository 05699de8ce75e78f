"""What happened during one test: faults applied and reverted, and what the engine saw.

Rendered as text in the failure report, and as JSON for `--chaos-report` and JUnit XML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_chaos.faults import AppliedFault


@dataclass
class Timeline:
    started_at: float
    seed: int
    faults: list[AppliedFault] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    def entries(self) -> list[tuple[float, str]]:
        rows: list[tuple[float, str]] = []
        for applied in self.faults:
            rows.append((applied.applied_at, f"applied  {applied.fault}"))
            if applied.reverted_at is not None:
                rows.append((applied.reverted_at, f"reverted {applied.fault}"))
        for event in self.events:
            text = describe_event(event)
            if text is not None:
                rows.append((float(event["time"]), text))
        rows.sort(key=lambda row: row[0])
        return [(at - self.started_at, text) for at, text in rows]

    def render(self) -> str:
        lines = [f"times from the start of the test; seed {self.seed}"]
        lines += [f"{offset:+9.3f}s  {text}" for offset, text in self.entries()]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "faults": [
                {
                    "fault": str(applied.fault),
                    "type": applied.fault.name,
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
                {**event, "offset": round(float(event["time"]) - self.started_at, 6)}
                for event in self.events
            ],
        }


def describe_event(event: dict[str, Any]) -> str | None:
    """One line for a connection event; None for events the timeline leaves out."""
    kind = event["kind"]
    who = f"{event.get('proxy')}#{event.get('connection')}"
    if kind == "accepted":
        return f"{who} accepted from {event.get('client')}"
    if kind == "upstream_connected":
        return f"{who} upstream {event.get('upstream')} connected"
    if kind == "upstream_failed":
        return f"{who} upstream {event.get('upstream')} refused: {event.get('error')}"
    if kind == "toxics_active":
        toxics = event.get("toxics") or {}
        active = ", ".join(f"{d}: {', '.join(n)}" for d, n in toxics.items() if n)
        return f"{who} toxics active ({active})"
    if kind == "half_closed":
        return f"{who} {event.get('side')} sent FIN"
    if kind == "closed":
        traffic = event.get("bytes") or {}
        sent = traffic.get("upstream", {}).get("in", 0)
        received = traffic.get("downstream", {}).get("in", 0)
        how = "reset" if event.get("reset") else "closed"
        return f"{who} {how} by {event.get('by')} ({sent} B up, {received} B down)"
    return None
