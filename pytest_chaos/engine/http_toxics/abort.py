"""`http_abort`: pass matching requests on, then cut their answers: the head and `after_bytes`
bytes of body get through (nothing with 0), then the connection is reset (TCP RST)."""

from __future__ import annotations

import random

from pytest_chaos.engine.http_toxics.base import HttpToxic, RequestPlan
from pytest_chaos.engine.toxics.base import register
from pytest_chaos.faults import HttpAbort


@register
class HttpAbortToxic(HttpToxic):
    type_name = "http_abort"
    fault_class = HttpAbort

    def consider(self, plan: RequestPlan, name: str, rng: random.Random) -> None:
        fault = self.fault
        assert isinstance(fault, HttpAbort)
        if plan.answer_by is None and plan.cut_by is None:
            plan.cut_by = name
            plan.after_bytes = fault.after_bytes
            plan.note(name, self.type_name)
