"""`http_abort`: pass matching requests on, then cut their answers: the head and `after_bytes`
bytes of body get through (nothing with 0), then the connection is reset (TCP RST)."""

from __future__ import annotations

from pytest_chaos.engine.http_toxics.base import HttpToxic
from pytest_chaos.engine.toxics.base import register
from pytest_chaos.faults import HttpAbort


@register
class HttpAbortToxic(HttpToxic):
    type_name = "http_abort"
    fault_class = HttpAbort
