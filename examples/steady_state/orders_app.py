"""A small ASGI application run by uvicorn in its own process (see conftest.py): `GET /orders`
takes 300 ms, like a request that does real work. On SIGTERM uvicorn stops accepting, lets the
requests in flight finish, then exits: a graceful shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
WORK_SECONDS = 0.3


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return  # lifespan events: nothing to set up
    await asyncio.sleep(WORK_SECONDS)
    body = b'{"orders": []}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"14")],
        }
    )
    await send({"type": "http.response.body", "body": body})
