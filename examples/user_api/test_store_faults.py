"""The store is bounded: when PostgreSQL is slow, hung, cut off or killed, a request ends
within the store's deadlines, with the user or with a 503 that says why, and failures are
retried only when a retry can help, with the promised backoff."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from pytest_chaos.assertions import (
    assert_backoff,
    assert_timeout_propagates,
    wire_attempts,
    wire_connections,
)
from pytest_chaos.chaos import Chaos
from pytest_chaos.policies import Exponential
from pytest_chaos.recorders import record_tenacity
from user_api.cache import CACHE_TIMEOUT_SECONDS
from user_api.store import Connection, StoreSettings, UserStore

# The waits the store promises: tenacity's wait_exponential(multiplier=0.05, max=0.4).
DEFAULTS = StoreSettings(host="", port=0)
PROMISED_BACKOFF = Exponential.tenacity(multiplier=DEFAULTS.initial_wait, max=DEFAULTS.max_wait)
# A request that waits on the store once: cache read and write-back, one query deadline,
# and room for a busy machine.
QUERY_BUDGET = 2 * CACHE_TIMEOUT_SECONDS + DEFAULTS.query_timeout + 0.3


def timed_get(http: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = http.get(path)
    return response, time.perf_counter() - started


@pytest.fixture
def warm(http: httpx.Client) -> None:
    """The store has one pooled connection, made before the test body and its fault."""
    assert http.get("/users/1").status_code == 200


def kill_sessions(admin: Connection) -> int:
    """What a DBA, a failover or an idle-session reaper does to the API's connections.

    Waits (up to 5 s) until the sessions are gone: a query that reached a backend still
    shutting down would be answered by a TCP reset instead, a different test."""
    row = admin.execute(
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
        " WHERE application_name = 'user_api'"
    ).fetchone()
    assert row is not None
    return int(row[0])


# --------------------------------------------------------------- slow, but within budget
@pytest.mark.usefixtures("warm")
@pytest.mark.toxic("postgres", "latency", latency=150)
def test_a_slow_store_still_answers_and_the_cache_then_hides_it(http: httpx.Client) -> None:
    """150 ms per answer is inside the 0.5 s query deadline: served, then cached."""
    first, took_first = timed_get(http, "/users/2")
    second, took_second = timed_get(http, "/users/2")
    assert first.status_code == second.status_code == 200
    assert [first.headers["X-Cache"], second.headers["X-Cache"]] == ["miss", "hit"]
    assert 0.15 <= took_first < QUERY_BUDGET
    assert took_second < 0.15


@pytest.mark.usefixtures("warm")
@pytest.mark.bandwidth("postgres", 2)
def test_a_congested_link_to_the_store_still_answers_within_the_deadline(
    http: httpx.Client,
) -> None:
    """2 KB/s: a row's answer (about 150 bytes) takes tens of milliseconds."""
    response, took = timed_get(http, "/users/3")
    assert response.status_code == 200
    assert response.json()["id"] == 3
    assert took < QUERY_BUDGET


# ------------------------------------------------------------------- hung: not retried
@pytest.mark.usefixtures("warm")
@pytest.mark.stall("postgres")
def test_a_stalled_store_answers_503_within_the_query_deadline(
    http: httpx.Client, store: UserStore
) -> None:
    """The query reaches PostgreSQL, the answer never comes back. statement_timeout cannot
    help (its cancellation is lost the same way); the client-side deadline does. A timeout
    is not retried: the time is already spent."""
    with record_tenacity(store.retrying) as attempts:
        response, took = timed_get(http, "/users/2")
    assert response.status_code == 503
    assert response.json()["reason"] == "timeout"
    assert store.settings.query_timeout <= took < QUERY_BUDGET
    assert len(attempts.attempts) == 1


@pytest.mark.stall("postgres")
def test_a_store_call_on_a_stalled_store_times_out_and_closes_its_connection(
    chaos: Chaos, store: UserStore
) -> None:
    """No pooled connection: the call connects, and PostgreSQL's greeting never arrives.
    It must give up at connect_timeout (2 s, libpq's minimum) with a timeout error, and
    close the connection it opened: the proxy sees the client hang up."""
    outcome = assert_timeout_propagates(
        lambda: store.load_user(2),
        budget=store.settings.connect_timeout,
        chaos=chaos,
        proxy="postgres",
    )
    assert "connection timeout expired" in str(outcome.error)


# ---------------------------------------------------------------- fast failures: retried
@pytest.mark.dependency_down("postgres", mode="reset")
def test_store_retries_follow_the_promised_backoff_in_the_client_and_on_the_wire(
    chaos: Chaos, http: httpx.Client, store: UserStore
) -> None:
    """Every connection is reset on its first byte: 4 attempts, 0.05 s, 0.1 s and 0.2 s
    apart, as tenacity reports them and as PostgreSQL's side of the wire sees them."""
    with record_tenacity(store.retrying) as attempts:
        response = http.get("/users/2")
    assert response.status_code == 503
    assert response.json()["reason"] == "unavailable"
    assert_backoff(attempts, PROMISED_BACKOFF, attempts=store.settings.attempts)
    # At the proxy, each wait also holds one attempt's own connect-and-reset.
    assert_backoff(
        wire_attempts(chaos, "postgres"),
        PROMISED_BACKOFF,
        attempts=store.settings.attempts,
        tolerance=0.05,
    )


@pytest.mark.usefixtures("warm")
def test_a_session_killed_by_the_server_is_retried_transparently(
    http: httpx.Client,
    store: UserStore,
    admin: Connection,
) -> None:
    assert kill_sessions(admin) == 1
    with record_tenacity(store.retrying) as attempts:
        response = http.get("/users/2")
    assert response.status_code == 200
    assert [a.error is not None for a in attempts.attempts] == [True, False]


@pytest.mark.usefixtures("warm")
def test_a_restarted_database_is_retried_transparently(
    chaos: Chaos, http: httpx.Client, store: UserStore
) -> None:
    """The whole server restarts (a failover, a deploy): the pooled connection is dead, the
    first attempt finds out, the retry connects to the new server, and the data is there."""
    chaos.restart("postgres")
    with record_tenacity(store.retrying) as attempts:
        response = http.get("/users/2")
    assert response.status_code == 200
    assert response.json()["name"] == "user 2"
    assert [a.error is not None for a in attempts.attempts] == [True, False]


@pytest.mark.usefixtures("warm")
@pytest.mark.dependency_down("postgres", mode="kill")
def test_a_killed_database_answers_503_after_the_promised_retries(
    http: httpx.Client, store: UserStore
) -> None:
    """SIGKILL to PostgreSQL: every attempt fails fast (the proxy cannot reach it), so the
    request ends after the retries' waits with a 503 that says so, not after a timeout.
    The server is started again after this test, with its data."""
    with record_tenacity(store.retrying) as attempts:
        response, took = timed_get(http, "/users/2")
    assert response.status_code == 503
    assert response.json()["reason"] == "unavailable"
    assert len(attempts.attempts) == store.settings.attempts
    assert_backoff(attempts, PROMISED_BACKOFF, attempts=store.settings.attempts)
    assert took < QUERY_BUDGET


@pytest.mark.usefixtures("warm")
@pytest.mark.slow_close("postgres", 3000)
def test_a_killed_session_whose_close_is_held_back_costs_one_deadline(
    http: httpx.Client,
    store: UserStore,
    admin: Connection,
) -> None:
    """The same kill, but the server's FIN is held back 3 s. libpq reads the "terminating
    connection" error and then waits for the close that confirms it: the deadline ends the
    wait (503, timeout), and the next request gets a fresh connection."""
    assert kill_sessions(admin) == 1
    response, took = timed_get(http, "/users/2")
    assert response.status_code == 503
    assert response.json()["reason"] == "timeout"
    assert took < QUERY_BUDGET
    assert http.get("/users/2").status_code == 200


@pytest.mark.stall("postgres")
def test_concurrent_requests_on_a_stalled_store_each_end_within_the_budget(
    chaos: Chaos, http: httpx.Client, store: UserStore
) -> None:
    """Four requests at once, no pooled connection: each connects, and waits for a greeting
    that never comes. They must wait side by side (one connect_timeout for all), not in a
    queue (one each, one after the other)."""
    budget = 2 * CACHE_TIMEOUT_SECONDS + store.settings.connect_timeout + 0.5
    took: dict[int, float] = {}

    def request(user_id: int) -> None:
        with httpx.Client(base_url=http.base_url, timeout=10.0) as client:
            response, took[user_id] = timed_get(client, f"/users/{user_id}")
        assert response.status_code == 503

    clients = [threading.Thread(target=request, args=(n,)) for n in range(40, 44)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    assert len(took) == 4
    assert max(took.values()) < budget, took
    assert len(wire_connections(chaos, "postgres")) == 4
