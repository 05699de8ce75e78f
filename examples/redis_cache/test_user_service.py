"""Chaos tests for the user cache: what happens to `get_user` when Redis misbehaves?

The resilient path must always answer correctly, within a time budget, whatever the fault;
the fragile function must be shown to hang, which the last test pins down without hanging
the suite itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from user_service import (
    CACHE_TIMEOUT_SECONDS,
    User,
    UserDatabase,
    UserService,
    count_active_sessions,
)

from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.chaos import Chaos

ALICE = User(id=1, name="user 1", email="user1@example.com")
# One cache timeout plus one database query (0.05 s), with room for a busy CI machine. A
# client without a timeout would blow it: redis-py's default alone is 5 s, then 3 retries.
BUDGET_SECONDS = CACHE_TIMEOUT_SECONDS + 0.05 + 0.85


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


# -------------------------------------------------------------------- the healthy baseline
def test_second_read_is_served_from_the_cache(users: UserService, database: UserDatabase) -> None:
    assert users.get_user(1) == ALICE
    assert users.get_user(1) == ALICE
    assert database.queries == 1


@pytest.mark.latency("redis", 20)
def test_a_slightly_slow_cache_is_still_used(users: UserService, database: UserDatabase) -> None:
    """20 ms is well inside the 100 ms cache timeout: the cache keeps saving queries."""
    users.get_user(1)
    user, took = timed(lambda: users.get_user(1))
    assert user == ALICE
    assert database.queries == 1
    assert took >= 0.019  # the fault really was there (20 ms, to the engine's millisecond)


@pytest.mark.slicer("redis", 5, size_variation=2, delay=100)
def test_a_reply_split_into_tiny_packets_is_read_whole(
    users: UserService, database: UserDatabase
) -> None:
    """Not a failure to survive but a check of the client's parser: replies cut into
    writes of 3 to 7 bytes, 0.1 ms apart, must still decode to the same user."""
    users.get_user(1)
    assert users.get_user(1) == ALICE
    assert database.queries == 1


# ------------------------------------------------------- faults the service must survive
@pytest.fixture
def warm_cache(users: UserService, database: UserDatabase) -> None:
    """Alice is cached before the test body (and its fault) starts: the cache was healthy,
    then went bad. Each test below then sees the second database query the fault caused."""
    users.get_user(1)
    assert database.queries == 1


@pytest.mark.usefixtures("warm_cache")
@pytest.mark.latency("redis", 500)
def test_a_very_slow_cache_is_skipped_within_budget(
    users: UserService, database: UserDatabase
) -> None:
    user, took = timed(lambda: users.get_user(1))
    assert user == ALICE
    assert database.queries == 2
    assert CACHE_TIMEOUT_SECONDS <= took < BUDGET_SECONDS


@pytest.mark.usefixtures("warm_cache")
@pytest.mark.stall("redis")
def test_a_hung_cache_costs_one_timeout(users: UserService, database: UserDatabase) -> None:
    """Redis accepts the request and never answers: the worst case for a client."""
    user, took = timed(lambda: users.get_user(1))
    assert user == ALICE
    assert database.queries == 2
    assert CACHE_TIMEOUT_SECONDS <= took < BUDGET_SECONDS


@pytest.mark.usefixtures("warm_cache")
@pytest.mark.dependency_down("redis")
def test_a_cache_that_refuses_connections_is_skipped(
    users: UserService, database: UserDatabase
) -> None:
    user, took = timed(lambda: users.get_user(1))
    assert user == ALICE
    assert database.queries == 2
    assert took < BUDGET_SECONDS


@pytest.mark.usefixtures("warm_cache")
@pytest.mark.reset_peer("redis")
def test_a_cache_that_resets_connections_is_skipped(
    users: UserService, database: UserDatabase
) -> None:
    assert users.get_user(1) == ALICE
    assert users.get_user(1) == ALICE
    assert database.queries == 3  # every read went to the database


def test_the_cache_is_used_again_after_an_outage(
    chaos: Chaos, users: UserService, database: UserDatabase
) -> None:
    users.get_user(1)  # cached
    with chaos.dependency_down("redis"):
        assert users.get_user(1) == ALICE
        assert database.queries == 2  # fell back while the cache was down
    assert users.get_user(1) == ALICE
    assert database.queries == 2  # the same client reconnected and the entry was still there


# --------------------------------------------- the Redis process itself killed or frozen
@pytest.mark.usefixtures("redis_process", "warm_cache")
@pytest.mark.dependency_down("redis", mode="kill")
def test_a_killed_cache_is_skipped(users: UserService, database: UserDatabase) -> None:
    """SIGKILL: the server is gone, its connections reset. Redis is started again (same
    port, empty: it keeps nothing on disk) after this test, before the next one uses it."""
    user, took = timed(lambda: users.get_user(1))
    assert user == ALICE
    assert database.queries == 2
    assert took < BUDGET_SECONDS


@pytest.mark.usefixtures("redis_process", "warm_cache")
@pytest.mark.dependency_down("redis", mode="pause")
def test_a_frozen_cache_costs_one_timeout(users: UserService, database: UserDatabase) -> None:
    """SIGSTOP, like a process stuck in a long GC pause or a paused container: connections
    stay open and nothing answers, which only the client's socket timeout gets out of."""
    user, took = timed(lambda: users.get_user(1))
    assert user == ALICE
    assert database.queries == 2
    assert CACHE_TIMEOUT_SECONDS <= took < BUDGET_SECONDS


@pytest.mark.usefixtures("redis_process")
def test_the_cache_fills_again_after_a_restart(
    chaos: Chaos, users: UserService, database: UserDatabase
) -> None:
    users.get_user(1)  # cached
    chaos.restart("redis")  # a new, empty Redis on the same port
    assert users.get_user(1) == ALICE
    assert database.queries == 2  # the entry died with the old server
    assert users.get_user(1) == ALICE
    assert database.queries == 2  # the same client reconnected and cached it again


# ------------------------------------------------------ the fragile function, pinned down
class Background:
    """Runs a call on a daemon thread, so a call that hangs cannot hang the test run."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except Exception as error:  # kept for the test to inspect
            self.error = error

    def finished_within(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return not self._thread.is_alive()


def test_session_count_has_no_timeout_and_hangs_on_a_stalled_cache(
    chaos: Chaos, redis_proxy: ProxyInfo
) -> None:
    """The failure mode, demonstrated: with Redis stalled, the call is still blocked long
    after any sane timeout. The fix is a `socket_timeout`, as `cache_client` has."""
    with chaos.stall("redis"):
        call = Background(lambda: count_active_sessions(redis_proxy.host, redis_proxy.port))
        assert not call.finished_within(1.0), "count_active_sessions returned under a stall"
    # Lifting the stall closes the connection it was stuck on, which is all that frees it.
    assert call.finished_within(10.0)


def test_the_fixed_client_gives_up_on_a_stalled_cache(chaos: Chaos, cache: redis.Redis) -> None:
    with chaos.stall("redis"), pytest.raises(redis.TimeoutError):
        cache.scard("sessions:active")
