"""HTTP faults in-process: ASGI and WSGI middleware driven by the same markers as the engine.

`ChaosASGIMiddleware(app, name="api")` (Starlette, FastAPI) and
`ChaosWSGIMiddleware(app, name="api")` (Flask, Django) make `api` a target of `http_error`,
`http_delay` and `http_abort`, for services tested in-process (`chaos.http_app(name, app)`
wraps an app in the right one). See `middleware` for what each fault does there, and
`registry` for how the markers reach the middleware.
"""

from __future__ import annotations

from pytest_chaos.http.middleware import (
    ChaosASGIMiddleware,
    ChaosWSGIMiddleware,
    HttpAbortError,
    wrap_app,
)

__all__ = ["ChaosASGIMiddleware", "ChaosWSGIMiddleware", "HttpAbortError", "wrap_app"]
