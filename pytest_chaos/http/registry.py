"""In-process apps by name, the HTTP faults at work on them, and the requests they saw.

One registry per process (`APPS`), shared by every middleware instance and filled by the HTTP
applier: `ChaosASGIMiddleware(app, name="api")` makes the name `api` known (while the
middleware lives: the registry holds it weakly), `@pytest.mark.http_error("api")` then puts a
fault at work under that name until the test ends, and each request through a middleware of
that name is judged by the faults at work (`plan`) and recorded (`requests`). Middleware may
serve requests from other threads (a WSGI server's, a test client's): every change and every
judgement holds one lock.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import deque
from typing import Any

from pytest_chaos.events import HttpRequest
from pytest_chaos.http_rules import HttpFaultState, RequestPlan, plan_request

LOG_CAPACITY = 100_000


class InProcessApps:
    """The names of in-process apps, their faults at work, and the requests they saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apps: dict[str, weakref.WeakSet[Any]] = {}
        self._faults: dict[str, list[HttpFaultState]] = {}
        self._log: deque[HttpRequest] = deque(maxlen=LOG_CAPACITY)
        self._seq = itertools.count(1)

    # -- apps
    def register(self, name: str, middleware: object) -> None:
        """Make `name` known while `middleware` lives."""
        with self._lock:
            self._apps.setdefault(name, weakref.WeakSet()).add(middleware)

    def names(self) -> list[str]:
        """The names of the apps whose middleware is alive, sorted."""
        with self._lock:
            return sorted(name for name, alive in self._apps.items() if len(alive))

    def knows(self, name: str) -> bool:
        """Is `name` an in-process app's (a live middleware's)?"""
        with self._lock:
            alive = self._apps.get(name)
            return alive is not None and len(alive) > 0

    # -- faults
    def add_fault(self, name: str, state: HttpFaultState) -> None:
        """Put a fault at work on the app `name`, after those already there."""
        with self._lock:
            self._faults.setdefault(name, []).append(state)

    def remove_fault(self, name: str, state: HttpFaultState) -> None:
        """Take the fault off (nothing happens when it is not there)."""
        with self._lock:
            states = self._faults.get(name, [])
            if state in states:
                states.remove(state)

    def faults(self, name: str) -> list[HttpFaultState]:
        """The faults at work on `name`, in the order they were applied."""
        with self._lock:
            return list(self._faults.get(name, ()))

    def plan(
        self, name: str, method: str, target: str, headers: list[tuple[str, str]]
    ) -> RequestPlan:
        """Judge one request to the app `name` by its faults at work (see `plan_request`)."""
        with self._lock:
            return plan_request(self._faults.get(name, ()), method, target, headers)

    # -- the record
    def record(self, **fields: Any) -> HttpRequest:
        """Record one request (`HttpRequest`'s fields but `seq`, `kind`, `connection`)."""
        with self._lock:
            request = HttpRequest(
                seq=next(self._seq), kind=HttpRequest.kind_name, connection=0, **fields
            )
            self._log.append(request)
        return request

    def requests(self, name: str | None = None, since: float = 0.0) -> list[HttpRequest]:
        """The requests recorded since `since` (`time.monotonic()`), of the app `name` (all
        apps when None), oldest first."""
        with self._lock:
            found = list(self._log)
        return [r for r in found if r.time >= since and (name is None or r.proxy == name)]


APPS = InProcessApps()


class HttpTimeline:
    """The in-process requests of one test, as a source of its timeline (`Timeline.sources`)
    and of its record in the report (under `http`)."""

    name = "http"

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at

    def timeline_rows(self) -> list[tuple[float, str]]:
        """(time.monotonic(), the timeline's line) per in-process request of the test."""
        return [(request.time, str(request)) for request in APPS.requests(since=self.started_at)]

    def timeline_json(self) -> list[dict[str, Any]]:
        """The test's in-process requests as JSON, each with its offset from the test's
        start."""
        return [
            {**request.to_json(), "offset": round(request.time - self.started_at, 6)}
            for request in APPS.requests(since=self.started_at)
        ]
