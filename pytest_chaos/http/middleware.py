"""ASGI and WSGI middleware that carry out the HTTP faults on an app tested in-process.

The same markers and `chaos` methods drive them as drive the engine: a fault whose target is
the middleware's `name` is put at work in the process's registry (`registry.APPS`) by the HTTP
applier, and taken off when its test (or `with` block) ends. Each request is judged by the
same rules (`http_rules.plan_request`) and recorded as an `HttpRequest` (`layer` "asgi"/"wsgi").

- `http_error`: the middleware answers; the app is not called.
- `http_delay`: the middleware waits (`anyio.sleep` under ASGI, `time.sleep` under WSGI), then
  calls the app.
- `http_abort`: the app is called; its answer's head and `after_bytes` bytes of body go out,
  then `HttpAbortError` (a `ConnectionResetError`) is raised inside the app: a server in front
  drops the connection mid-answer, and an in-process client (Starlette's TestClient, httpx's
  ASGITransport and WSGITransport, Flask's test client) raises it, as a reset would surface.
  With `after_bytes=0` nothing is sent (a server then answers 500 if it can: in-process there
  is no connection to reset).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pytest_chaos.faults import HttpError
from pytest_chaos.http.registry import APPS
from pytest_chaos.http_rules import RequestPlan

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class HttpAbortError(ConnectionResetError):
    """Raised inside an in-process app by `http_abort`, where a proxy would reset the
    connection."""


@dataclass
class _Seen:
    """What became of one request, for its record."""

    method: str
    target: str
    arrived: float
    plan: RequestPlan
    status: int | None = None
    retry_after: float | None = None
    reached: bool = False
    outcome: str = "unanswered"
    body_bytes: int = 0


class _ChaosMiddleware:
    layer = ""

    def __init__(self, app: Any, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"{type(self).__name__}: name must be the name markers target (e.g. 'api'),"
                f" got {name!r}"
            )
        self.app = app
        self.name = name
        APPS.register(name, self)

    def _judge(self, method: str, target: str, headers: list[tuple[str, str]]) -> _Seen:
        arrived = time.monotonic()
        return _Seen(method, target, arrived, APPS.plan(self.name, method, target, headers))

    def _record(self, seen: _Seen) -> None:
        APPS.record(
            time=seen.arrived,
            proxy=self.name,
            method=seen.method,
            path=seen.target,
            status=seen.status,
            reached_upstream=seen.reached,
            **seen.plan.recorded(),
            retry_after=seen.retry_after,
            outcome=seen.outcome,
            until=time.monotonic(),
            layer=self.layer,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app!r}, name={self.name!r})"


def _retry_after(headers: Iterable[tuple[str, str]]) -> float | None:
    for name, value in headers:
        if name.lower() == "retry-after" and value.strip().isdigit():
            return float(value.strip())
    return None


def _answer(fault: HttpError, method: str) -> tuple[list[tuple[str, str]], bytes]:
    body = fault.answer_body()
    headers = [*fault.answer_headers(), ("content-length", str(len(body)))]
    return headers, b"" if method == "HEAD" else body


class ChaosASGIMiddleware(_ChaosMiddleware):
    """Wraps an ASGI app (Starlette, FastAPI, ...): HTTP faults whose target is `name` act on
    its requests. `app.add_middleware(ChaosASGIMiddleware, name="api")` or
    `ChaosASGIMiddleware(app, name="api")`; lifespan and websocket scopes pass untouched."""

    layer = "asgi"

    def __init__(self, app: ASGIApp, name: str = "app") -> None:
        super().__init__(app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        raw = scope.get("raw_path") or quote(str(scope.get("path", "/"))).encode()
        query = scope.get("query_string") or b""
        target = raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope.get("headers", [])]
        seen = self._judge(method, target, headers)
        try:
            await self._serve(seen, scope, receive, send)
        finally:
            self._record(seen)

    async def _serve(self, seen: _Seen, scope: Scope, receive: Receive, send: Send) -> None:
        plan = seen.plan
        if plan.delay:
            import anyio  # the event loop's own sleep, asyncio or trio alike

            await anyio.sleep(plan.delay)
        if plan.error is not None:
            headers, body = _answer(plan.error, seen.method)
            seen.status, seen.retry_after = plan.error.status, _retry_after(headers)
            await send(
                {
                    "type": "http.response.start",
                    "status": plan.error.status,
                    "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
                }
            )
            await send({"type": "http.response.body", "body": body})
            seen.outcome = "answered"
            return
        seen.reached = True

        async def watched(message: Message) -> None:
            await self._pass(seen, message, send)

        await self.app(scope, receive, watched)

    async def _pass(self, seen: _Seen, message: Message, send: Send) -> None:
        abort = seen.plan.abort
        if message.get("type") == "http.response.start":
            seen.status = int(message["status"])
            seen.retry_after = _retry_after(
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in message.get("headers", [])
            )
            if abort is not None and abort.after_bytes == 0:
                seen.outcome = "aborted"
                raise HttpAbortError(f"http_abort: {self.name} {seen.method} {seen.target}")
            await send(message)
            return
        if message.get("type") != "http.response.body":
            await send(message)
            return
        body = bytes(message.get("body", b""))
        last = not message.get("more_body", False)
        if abort is not None and seen.body_bytes + len(body) > abort.after_bytes:
            room = abort.after_bytes - seen.body_bytes
            await send({"type": "http.response.body", "body": body[:room], "more_body": True})
            seen.outcome = "aborted"
            raise HttpAbortError(
                f"http_abort: {self.name} {seen.method} {seen.target} cut after {abort.after_bytes}"
                " bytes of body"
            )
        seen.body_bytes += len(body)
        await send(message)
        if last:
            seen.outcome = "answered"


class ChaosWSGIMiddleware(_ChaosMiddleware):
    """Wraps a WSGI app (Flask, Django, ...): HTTP faults whose target is `name` act on its
    requests. `app.wsgi_app = ChaosWSGIMiddleware(app.wsgi_app, name="api")` (Flask), or
    `application = ChaosWSGIMiddleware(get_wsgi_application(), name="api")` (Django)."""

    layer = "wsgi"

    def __init__(self, app: WSGIApp, name: str = "app") -> None:
        super().__init__(app, name)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if not target:
            path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
            query = environ.get("QUERY_STRING", "")
            target = path + ("?" + query if query else "")
        seen = self._judge(method, str(target), _wsgi_headers(environ))
        try:
            return self._serve(seen, environ, start_response)
        except BaseException:
            self._record(seen)
            raise

    def _serve(
        self, seen: _Seen, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        plan = seen.plan
        if plan.delay:
            time.sleep(plan.delay)
        if plan.error is not None:
            headers, body = _answer(plan.error, seen.method)
            seen.status, seen.retry_after = plan.error.status, _retry_after(headers)
            start_response(f"{plan.error.status} {plan.error.reason}", headers)
            seen.outcome = "answered"
            self._record(seen)
            return [body]
        seen.reached = True
        abort = plan.abort
        held: list[Any] = []

        def watched_start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            seen.status = int(status.split(" ", 1)[0])
            seen.retry_after = _retry_after(headers)
            if abort is not None and abort.after_bytes == 0:
                held.append((status, headers))
                return lambda data: None
            return start_response(status, headers, *exc_info)

        answer = self.app(environ, watched_start)
        if held:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
            seen.outcome = "aborted"
            raise HttpAbortError(f"http_abort: {self.name} {seen.method} {seen.target}")
        return self._body(seen, answer)

    def _body(self, seen: _Seen, answer: Iterable[bytes]) -> Iterator[bytes]:
        abort = seen.plan.abort
        try:
            for chunk in answer:
                if abort is not None and seen.body_bytes + len(chunk) > abort.after_bytes:
                    room = abort.after_bytes - seen.body_bytes
                    if room:
                        yield chunk[:room]
                    seen.outcome = "aborted"
                    raise HttpAbortError(
                        f"http_abort: {self.name} {seen.method} {seen.target} cut after"
                        f" {abort.after_bytes} bytes of body"
                    )
                seen.body_bytes += len(chunk)
                yield chunk
            seen.outcome = "answered"
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
            self._record(seen)


def _wsgi_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    headers = [
        (key[5:].replace("_", "-").lower(), str(value))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").lower(), str(environ[key])))
    return headers


def wrap_app(app: Any, name: str) -> ChaosASGIMiddleware | ChaosWSGIMiddleware:
    """`app` wrapped in the middleware its interface asks for: ASGI when calling it gives a
    coroutine (an `async def __call__(scope, receive, send)`), WSGI otherwise."""
    import inspect

    call = app if inspect.isfunction(app) or inspect.ismethod(app) else type(app).__call__
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app):
        return ChaosASGIMiddleware(app, name)
    return ChaosWSGIMiddleware(app, name)
