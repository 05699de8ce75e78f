"""The user API: `GET /users/{id}` as JSON, read through a Redis cache from PostgreSQL.

A WSGI application, served in-process on a thread by `serve()` (a real deployment would hand
`UserApi` to gunicorn or uWSGI). Its promises, which the chaos suite checks:

- the cache can only make a request faster: any cache error is a miss, and costs at most
  one cache timeout (0.1 s);
- the store is bounded by its deadlines (see `store.py`): a store that fails answers 503,
  with `reason` timeout, unavailable or circuit open, never a hang and never a 500;
- responses say where the user came from: `X-Cache: hit`, `miss`, or `error` (the cache
  failed and the store answered).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis

from user_api.cache import UserCache
from user_api.store import StoreCircuitOpen, StoreError, User, UserStore

log = logging.getLogger(__name__)

USER_PATH = re.compile(r"/users/(\d{1,18})")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class UserApi:
    def __init__(self, cache: UserCache, store: UserStore) -> None:
        self.cache = cache
        self.store = store

    def get_user(self, user_id: int) -> tuple[User | None, str]:
        """The user (None: there is none) and where it came from: hit, miss or error."""
        try:
            cached = self.cache.get(user_id)
        except (redis.RedisError, ValueError) as error:
            log.warning("cache unavailable for user %s: %s", user_id, error)
            # No write-back either: a cache that just failed would likely cost a second
            # timeout for nothing.
            return self.store.load_user(user_id), "error"
        if cached is not None:
            return cached, "hit"
        user = self.store.load_user(user_id)
        if user is not None:
            try:
                self.cache.put(user)
            except redis.RedisError as error:
                log.warning("could not cache user %s: %s", user_id, error)
        return user, "miss"

    # -- WSGI
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        match = USER_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return _respond(start_response, "404 Not Found", {"error": "no such resource"})
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return _respond(
                start_response, "405 Method Not Allowed", {"error": "GET only"}, [("Allow", "GET")]
            )
        user_id = int(match.group(1))
        try:
            user, source = self.get_user(user_id)
        except StoreError as error:
            log.warning("store failed for user %s: %s", user_id, error)
            headers = [("Retry-After", "1")] if isinstance(error, StoreCircuitOpen) else []
            body = {"error": "the user store is unavailable", "reason": error.reason}
            return _respond(start_response, "503 Service Unavailable", body, headers)
        if user is None:
            return _respond(start_response, "404 Not Found", {"error": f"no user {user_id}"})
        return _respond(start_response, "200 OK", asdict(user), [("X-Cache", source)])

    def close(self) -> None:
        self.cache.close()
        self.store.close()


def _respond(
    start_response: StartResponse,
    status: str,
    body: dict[str, Any],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            *(headers or []),
        ],
    )
    return [payload]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # Non-daemon request threads, joined on shutdown: a graceful stop waits for them, and
    # every request is bounded, so that wait is too.
    daemon_threads = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


@contextlib.contextmanager
def serve(app: UserApi, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` on a thread; yields its base URL (`http://127.0.0.1:PORT`)."""
    server = make_server(
        host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="user-api"
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
