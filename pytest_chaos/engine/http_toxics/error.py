"""`http_error`: answer matching requests itself (status, body, headers, Retry-After), without
passing them to the upstream; each with `probability`, only the first `first` when given."""

from __future__ import annotations

import random

from pytest_chaos.engine.http_toxics.base import HttpToxic, RequestPlan
from pytest_chaos.engine.toxics.base import register
from pytest_chaos.faults import HttpError


@register
class HttpErrorToxic(HttpToxic):
    type_name = "http_error"
    fault_class = HttpError

    def consider(self, plan: RequestPlan, name: str, rng: random.Random) -> None:
        fault = self.fault
        assert isinstance(fault, HttpError)
        # The first error or abort that fires decides; later ones still count the request.
        if plan.answer_by is None and plan.cut_by is None and fault.fires(self.matched, rng.random):
            plan.answer_by = name
            plan.error = fault
            plan.note(name, self.type_name)
