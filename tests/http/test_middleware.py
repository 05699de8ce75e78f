"""The same faults in-process: ChaosASGIMiddleware on a FastAPI app, ChaosWSGIMiddleware on a
Flask app, driven by the same markers and `chaos` methods, seen by real in-process clients
(httpx's ASGITransport and WSGITransport, Flask's test client)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import fastapi
import flask
import httpx
import pytest
import pytest_asyncio

from pytest_chaos.assertions import assert_http_retries, http_requests
from pytest_chaos.chaos import Chaos
from pytest_chaos.http import ChaosASGIMiddleware, ChaosWSGIMiddleware, HttpAbortError

SERVED: list[str] = []

orders_app = fastapi.FastAPI()


@orders_app.get("/orders/{order}")
def get_order(order: int) -> dict[str, int]:
    SERVED.append(f"/orders/{order}")
    return {"order": order}


@orders_app.get("/big")
def big() -> fastapi.responses.PlainTextResponse:
    return fastapi.responses.PlainTextResponse("x" * 1000)


# Wrapped, so that the name `orders` is known as soon as the module is imported (Starlette's
# add_middleware would build the middleware only at the app's start or first request).
orders = ChaosASGIMiddleware(orders_app, name="orders")

users = flask.Flask("users")


@users.get("/users/<int:user>")
def get_user(user: int) -> dict[str, int]:
    SERVED.append(f"/users/{user}")
    return {"user": user}


@users.get("/stream")
def stream() -> flask.Response:
    return flask.Response((b"y" * 100 for _ in range(10)), mimetype="text/plain")


users.wsgi_app = ChaosWSGIMiddleware(users.wsgi_app, name="users")  # type: ignore[method-assign]


@pytest_asyncio.fixture
async def orders_client() -> AsyncIterator[httpx.AsyncClient]:
    SERVED.clear()
    transport = httpx.ASGITransport(app=orders)
    async with httpx.AsyncClient(transport=transport, base_url="http://orders") as client:
        yield client


@pytest.fixture
def users_client() -> flask.testing.FlaskClient:
    SERVED.clear()
    return users.test_client()


@pytest.mark.asyncio
@pytest.mark.http_error("orders", 503, retry_after=2, match="GET /orders/1")
async def test_asgi_error(orders_client: httpx.AsyncClient, chaos: Chaos) -> None:
    failed = await orders_client.get("/orders/1")
    assert (failed.status_code, failed.headers["retry-after"]) == (503, "2")
    assert (await orders_client.get("/orders/2")).json() == {"order": 2}
    assert SERVED == ["/orders/2"]
    seen = http_requests(chaos, "orders")
    assert [str(r) for r in seen] == [
        "orders (asgi) GET /orders/1 -> 503 (by http_error, not sent upstream)",
        "orders (asgi) GET /orders/2 -> 200",
    ]


@pytest.mark.http_error("users", 500, first=1)
def test_wsgi_error(users_client: flask.testing.FlaskClient, chaos: Chaos) -> None:
    assert users_client.get("/users/1").status_code == 500
    assert users_client.get("/users/1").json == {"user": 1}
    assert SERVED == ["/users/1"]
    assert_http_retries(chaos, "users", statuses=(500,), calls=1)


@pytest.mark.asyncio
@pytest.mark.http_delay("orders", 200)
async def test_asgi_delay(orders_client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    assert (await orders_client.get("/orders/3")).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_wsgi_delay(users_client: flask.testing.FlaskClient, chaos: Chaos) -> None:
    with chaos.http_delay("users", 200, match="/users/*"):
        started = time.monotonic()
        assert users_client.get("/users/3").status_code == 200
        assert time.monotonic() - started >= 0.2
    (seen,) = http_requests(chaos, "users")
    assert (seen.delay_ms, seen.layer) == (200.0, "wsgi")


@pytest.mark.asyncio
@pytest.mark.http_abort("orders", after_bytes=10)
async def test_asgi_abort_mid_body(orders_client: httpx.AsyncClient, chaos: Chaos) -> None:
    with pytest.raises(HttpAbortError):
        await orders_client.get("/big")
    (seen,) = http_requests(chaos, "orders")
    assert (seen.status, seen.outcome, seen.reached_upstream) == (200, "aborted", True)


@pytest.mark.http_abort("users", after_bytes=150)
def test_wsgi_abort_mid_body(users_client: flask.testing.FlaskClient, chaos: Chaos) -> None:
    answer = users_client.get("/stream")  # the body streams: read as the caller reads it
    with pytest.raises(HttpAbortError):
        answer.get_data()
    (seen,) = http_requests(chaos, "users")
    assert seen.outcome == "aborted"


@pytest.mark.http_abort("users")
def test_wsgi_abort_before_the_answer(users_client: flask.testing.FlaskClient) -> None:
    with pytest.raises(ConnectionResetError):
        users_client.get("/users/9")
    assert SERVED == ["/users/9"]  # the app ran: the caller cannot tell


@pytest.mark.asyncio
@pytest.mark.http_error("orders", 429, match={"method": "GET", "headers": {"x-tenant": "b*"}})
async def test_header_matching(orders_client: httpx.AsyncClient) -> None:
    other = await orders_client.get("/orders/1", headers={"x-tenant": "alpha"})
    limited = await orders_client.get("/orders/1", headers={"x-tenant": "beta"})
    assert (other.status_code, limited.status_code) == (200, 429)


def test_httpx_wsgi_transport_and_http_app(chaos: Chaos) -> None:
    app = chaos.http_app("bare", users)
    assert isinstance(app, ChaosWSGIMiddleware)
    with (
        chaos.http_error("bare", 503),
        httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://bare") as http,
    ):
        assert http.get("/users/4").status_code == 503
    asgi = chaos.http_app("bare-asgi", orders_app)
    assert isinstance(asgi, ChaosASGIMiddleware)
