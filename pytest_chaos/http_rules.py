"""How HTTP faults judge a request, the same at the engine (its HTTP toxics) and in-process
(the ASGI and WSGI middleware): the state of one fault at work, the plan for one request, and
the rules that make it (`plan_request`)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pytest_chaos.faults import HttpAbort, HttpDelay, HttpError, HttpFault


@dataclass
class HttpFaultState:
    """One HTTP fault at work, wherever it acts (the engine's toxic, the in-process
    middleware): `name` (its toxic's name), the requests it `matched` so far (`first` counts
    these), and its seeded `draws`."""

    name: str
    fault: HttpFault
    draws: random.Random
    matched: int = 0


@dataclass
class RequestPlan:
    """What the HTTP faults at work decided for one request: hold it `delay` seconds, then
    answer it with `error`, cut its answer with `abort`, or pass it on."""

    delay: float = 0.0
    error: HttpError | None = None
    abort: HttpAbort | None = None
    # The names of the faults that acted, in the order they were applied, and their kinds.
    acted: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    answered_by: str | None = None
    cut_by: str | None = None

    @property
    def fault(self) -> str | None:
        """The kind of the fault that decided the request's fate: `http_error` or
        `http_abort`, else `http_delay` when it was only delayed; None when none acted."""
        for kind in (HttpError.kind, HttpAbort.kind, HttpDelay.kind):
            if kind in self.kinds:
                return kind
        return None

    def recorded(self) -> dict[str, Any]:
        """The fields of an `http_request` event that say what the faults did: `fault`,
        `toxics` (the names that acted) and `delay_ms`."""
        return {
            "fault": self.fault,
            "toxics": list(self.acted),
            "delay_ms": round(self.delay * 1000, 3),
        }


def plan_request(
    states: Iterable[HttpFaultState], method: str, target: str, headers: list[tuple[str, str]]
) -> RequestPlan:
    """Judge one request by the faults at work, in the order they were applied: every
    matching fault counts it; the delays of all matching `http_delay`s add up; the first
    `http_error` that fires, or else the first `http_abort`, decides its fate."""
    plan = RequestPlan()
    for state in states:
        fault = state.fault
        if not fault.selects.matches(method, target, headers):
            continue
        state.matched += 1
        if isinstance(fault, HttpDelay):
            plan.delay += fault.delay_seconds(state.draws.random)
        elif plan.error is not None or plan.abort is not None:
            continue
        elif isinstance(fault, HttpError):
            if not fault.fires(state.matched, state.draws.random):
                continue
            plan.error, plan.answered_by = fault, state.name
        elif isinstance(fault, HttpAbort):
            plan.abort, plan.cut_by = fault, state.name
        plan.acted.append(state.name)
        plan.kinds.append(fault.kind)
    return plan
