"""`http_delay`: hold each matching request `ms` (+/- `jitter`) milliseconds, counted from its
first byte, before it goes on: the whole request, and the requests behind it on the connection
after it. Delays of several matching toxics add up; an answered request is answered late."""

from __future__ import annotations

from pytest_chaos.engine.http_toxics.base import HttpToxic
from pytest_chaos.engine.toxics.base import register
from pytest_chaos.faults import HttpDelay


@register
class HttpDelayToxic(HttpToxic):
    type_name = "http_delay"
    fault_class = HttpDelay
