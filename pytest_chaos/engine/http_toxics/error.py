"""`http_error`: answer matching requests itself (status, body, headers, Retry-After), without
passing them to the upstream; each with `probability`, only the first `first` when given."""

from __future__ import annotations

from pytest_chaos.engine.http_toxics.base import HttpToxic
from pytest_chaos.engine.toxics.base import register
from pytest_chaos.faults import HttpError


@register
class HttpErrorToxic(HttpToxic):
    type_name = "http_error"
    fault_class = HttpError
