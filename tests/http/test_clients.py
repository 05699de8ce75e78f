"""Real clients (httpx sync and async, requests) against a real server (uvicorn) through the
engine, under each HTTP fault applied by its marker or its `chaos` twin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests

from pytest_chaos.assertions import http_requests
from pytest_chaos.chaos import Chaos
from tests.http.servers import Upstream

Answer = tuple[int, dict[str, str], bytes]


def with_httpx(url: str) -> Answer:
    with httpx.Client(timeout=10) as client:
        answer = client.get(url)
    return answer.status_code, dict(answer.headers), answer.content


def with_httpx_async(url: str) -> Answer:
    async def get() -> Answer:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(url)
        return answer.status_code, dict(answer.headers), answer.content

    return asyncio.run(get())


def with_requests(url: str) -> Answer:
    answer = requests.get(url, timeout=10)
    return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content


CLIENTS: dict[str, Callable[[str], Answer]] = {
    "httpx": with_httpx,
    "httpx-async": with_httpx_async,
    "requests": with_requests,
}
# What each client raises when the connection is reset before or inside an answer.
RESET_ERRORS: dict[str, tuple[type[BaseException], ...]] = {
    "httpx": (httpx.ReadError,),
    "httpx-async": (httpx.ReadError,),
    "requests": (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError),
}


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.http_error("api", 503, retry_after=3, match="GET /orders/*")
def test_error(client: str, api_url: str, upstream: Upstream, chaos: Chaos) -> None:
    status, headers, body = CLIENTS[client](f"{api_url}/orders/7")
    assert (status, headers["retry-after"]) == (503, "3")
    assert body == b"503 Service Unavailable (pytest-chaos http_error)\n"
    assert CLIENTS[client](f"{api_url}/users/7")[0] == 200
    assert upstream.targets() == ["/users/7"]
    assert [(r.path, r.status, r.reached_upstream) for r in http_requests(chaos, "api")] == [
        ("/orders/7", 503, False),
        ("/users/7", 200, True),
    ]


def test_error_with_body_and_headers(client: str, api_url: str, chaos: Chaos) -> None:
    with chaos.http_error(
        "api", 429, body='{"error": "slow down"}', headers={"content-type": "application/json"}
    ):
        status, headers, body = CLIENTS[client](f"{api_url}/x")
    assert (status, headers["content-type"], body) == (
        429,
        "application/json",
        b'{"error": "slow down"}',
    )
    assert CLIENTS[client](f"{api_url}/x")[0] == 200


@pytest.mark.http_delay("api", 300, match="/search")
def test_delay(client: str, api_url: str, chaos: Chaos) -> None:
    started = time.monotonic()
    assert CLIENTS[client](f"{api_url}/search?q=a")[0] == 200
    slow = time.monotonic() - started
    assert CLIENTS[client](f"{api_url}/other")[0] == 200
    assert slow >= 0.3
    # Only /search was held (timing the other one would measure the shared machine).
    searched, other = http_requests(chaos, "api")
    assert (searched.fault, searched.delay_ms) == ("http_delay", 300.0)
    assert (other.fault, other.delay_ms) == (None, 0.0)


@pytest.mark.http_abort("api", after_bytes=10)
def test_abort_inside_the_body(client: str, api_url: str, upstream: Upstream, chaos: Chaos) -> None:
    with pytest.raises(RESET_ERRORS[client]):
        CLIENTS[client](f"{api_url}/bytes/100000")
    assert upstream.targets() == ["/bytes/100000"]
    (seen,) = http_requests(chaos, "api")
    assert (seen.status, seen.outcome) == (200, "aborted")


def test_abort_before_the_answer(client: str, api_url: str, chaos: Chaos) -> None:
    with chaos.http_abort("api"), pytest.raises(RESET_ERRORS[client]):
        CLIENTS[client](f"{api_url}/anything")
    (seen,) = http_requests(chaos, "api")
    assert (seen.status, seen.outcome, seen.reached_upstream) == (None, "aborted", True)


@pytest.mark.asyncio
@pytest.mark.http_error("api", 502, first=1)
async def test_an_async_client_in_an_async_test(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        first, second = await http.get("/a"), await http.get("/a")
    assert (first.status_code, second.status_code) == (502, 200)


def test_keep_alive_survives_faults_on_some_requests(
    api_url: str, chaos: Chaos, upstream: Upstream
) -> None:
    expected: list[Any] = []
    with httpx.Client(base_url=api_url, timeout=10) as http:
        for i in range(30):
            if i % 3 == 0:
                with chaos.http_error("api", 503):
                    expected.append((i, http.get(f"/n/{i}").status_code, 503))
            elif i % 3 == 1:
                with chaos.http_delay("api", 20):
                    expected.append((i, http.get(f"/n/{i}").status_code, 200))
            else:
                expected.append((i, http.get(f"/n/{i}").status_code, 200))
    assert [(i, got) for i, got, _ in expected] == [(i, want) for i, _, want in expected]
    seen = http_requests(chaos, "api")
    assert len(seen) == 30
    assert len({r.connection for r in seen}) == 1  # one connection all along
    assert upstream.targets() == [f"/n/{i}" for i in range(30) if i % 3]
