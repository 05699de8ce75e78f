"""The cache can only make the API faster: whatever Redis does, a request is answered,
correctly, within one cache timeout of what the store alone would take."""

from __future__ import annotations

import time

import httpx
import pytest

from pytest_chaos.chaos import Chaos
from user_api.cache import CACHE_TIMEOUT_SECONDS

ALICE = {"id": 1, "name": "user 1", "email": "user1@example.com"}
# One cache timeout plus one store query (a few ms), with room for a busy machine. A cache
# client without a timeout would blow it: redis-py's default is 5 s, then retries.
BUDGET_SECONDS = CACHE_TIMEOUT_SECONDS + 0.4


def timed_get(http: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = http.get(path)
    return response, time.perf_counter() - started


@pytest.fixture
def warm(http: httpx.Client) -> None:
    """User 1 is cached, and the store has a pooled connection, before the test body and
    its fault start: the cache was healthy, then went bad, as in production."""
    response = http.get("/users/1")
    assert response.headers["X-Cache"] == "miss"


# ---------------------------------------------------------------------------- healthy
def test_a_user_is_read_from_the_store_once_then_from_the_cache(http: httpx.Client) -> None:
    first, second = http.get("/users/1"), http.get("/users/1")
    assert first.json() == second.json() == ALICE
    assert [first.headers["X-Cache"], second.headers["X-Cache"]] == ["miss", "hit"]
    assert http.get("/users/5000").status_code == 404


@pytest.mark.usefixtures("warm")
@pytest.mark.slicer("redis", 3, size_variation=2, delay=200)
def test_a_reply_cut_into_tiny_writes_is_still_a_hit(http: httpx.Client) -> None:
    """Writes of 1 to 5 bytes, 0.2 ms apart: the client's parser must reassemble them."""
    response = http.get("/users/1")
    assert response.json() == ALICE
    assert response.headers["X-Cache"] == "hit"


# -------------------------------------------------------- a cache that does not answer
@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("latency", marks=pytest.mark.latency("redis", 500)),
        pytest.param("stall", marks=pytest.mark.stall("redis")),
        pytest.param("blackhole", marks=pytest.mark.dependency_down("redis", mode="blackhole")),
    ],
)
def test_a_slow_cache_costs_at_most_one_cache_timeout(http: httpx.Client, fault: str) -> None:
    """Slow (500 ms), hung (the request is read, never answered) or cut off both ways: the
    user comes from the store instead, one cache timeout later, and not a moment more."""
    response, took = timed_get(http, "/users/1")
    assert response.json() == ALICE
    assert response.headers["X-Cache"] == "error"
    assert CACHE_TIMEOUT_SECONDS <= took < BUDGET_SECONDS  # the fault really hit, and cost little


# ------------------------------------------------------------- a cache that fails fast
@pytest.mark.usefixtures("warm")
@pytest.mark.dependency_down("redis")
def test_a_cache_that_refuses_connections_is_skipped(http: httpx.Client) -> None:
    response, took = timed_get(http, "/users/1")
    assert response.json() == ALICE
    assert response.headers["X-Cache"] == "error"
    assert took < BUDGET_SECONDS


@pytest.mark.usefixtures("warm")
@pytest.mark.reset_peer("redis")
def test_a_cache_that_resets_connections_is_skipped(http: httpx.Client) -> None:
    for _ in range(3):  # each read resets, and reconnects for the next
        response = http.get("/users/1")
        assert response.json() == ALICE
        assert response.headers["X-Cache"] == "error"


@pytest.mark.usefixtures("warm")
@pytest.mark.limit_data("redis", 10)
def test_a_reply_cut_off_midway_is_a_miss_not_a_corrupt_user(http: httpx.Client) -> None:
    """The connection closes after 10 bytes of the cached JSON: redis-py must raise, not
    hand back a truncated value (or one that decodes to the wrong user)."""
    response = http.get("/users/1")
    assert response.json() == ALICE
    assert response.headers["X-Cache"] == "error"


def test_the_cache_is_used_again_after_an_outage(chaos: Chaos, http: httpx.Client) -> None:
    http.get("/users/1")
    with chaos.dependency_down("redis"):
        assert http.get("/users/1").headers["X-Cache"] == "error"
    # The same client reconnects by itself, and the entry is still there.
    assert http.get("/users/1").headers["X-Cache"] == "hit"
