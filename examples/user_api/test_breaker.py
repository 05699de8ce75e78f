"""The circuit breaker: after 5 failed attempts in a row it stops all traffic to the store,
answers at once instead, lets a probe through after its reset timeout, and closes when the
probe succeeds. However hard clients push during an outage, the store sees a handful of
connection attempts, then none."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from pytest_chaos.assertions import (
    assert_breaker_transitions,
    assert_no_retry_storm,
    assert_no_traffic,
    wire_attempts,
)
from pytest_chaos.chaos import Chaos
from pytest_chaos.recorders import record_pybreaker
from user_api.store import UserStore


def test_the_breaker_opens_stops_traffic_probes_and_closes(
    chaos: Chaos, http: httpx.Client, store: UserStore
) -> None:
    settings = store.settings
    with record_pybreaker(store.breaker) as breaker:
        with chaos.dependency_down("postgres"):  # connections refused
            # The first request fails 4 attempts; the second one's first failure is the
            # fifth in a row, which opens the breaker and ends the request.
            reasons = [http.get(f"/users/{n}").json()["reason"] for n in (10, 11)]
            assert reasons == ["unavailable", "circuit open"]
            assert len(breaker.failures) == settings.breaker_fail_max
            assert breaker.states() == ["closed", "open"]
        # PostgreSQL is back, but the breaker stays open until its reset timeout: requests
        # meanwhile are answered at once, without touching the store.
        for user_id in range(20, 25):
            started = time.perf_counter()
            response = http.get(f"/users/{user_id}")
            assert response.status_code == 503
            assert response.json()["reason"] == "circuit open"
            assert response.headers["Retry-After"] == "1"
            assert time.perf_counter() - started < 0.1
        ((opened_at, _),) = breaker.open_windows()
        time.sleep(max(0.0, opened_at + settings.breaker_reset_timeout + 0.05 - time.monotonic()))
        probe = http.get("/users/30")  # half-open: this one goes through, and succeeds
        assert probe.status_code == 200
    assert_breaker_transitions(
        breaker, ["closed", "open", "half-open", "closed"], min_open=settings.breaker_reset_timeout
    )
    assert_no_traffic(chaos, "postgres", during=breaker.open_windows())
    assert http.get("/users/31").status_code == 200


CLIENTS = 4


@pytest.mark.dependency_down("postgres", mode="reset")
def test_clients_hammering_an_outage_cause_no_retry_storm(
    chaos: Chaos, http: httpx.Client, store: UserStore
) -> None:
    """Four clients send requests back to back for 1.5 s while every connection to the store
    is reset. The breaker opens after 5 failed attempts; each client may have one more
    attempt under way by then, and nothing else reaches the store until the probe (after
    the 1 s reset timeout, counted from the opening)."""
    stop_at = time.monotonic() + 1.5
    answers: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=http.base_url, timeout=10.0) as own:
            while time.monotonic() < stop_at:
                answers.append(own.get("/users/2").json()["reason"])

    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()

    assert "circuit open" in answers
    assert set(answers) <= {"unavailable", "circuit open"}  # 503s, never a hang or a 500
    assert len(answers) > 100  # the clients really did hammer (the breaker answers at once)
    cap = store.settings.breaker_fail_max + CLIENTS
    assert store.settings.breaker_fail_max <= len(wire_attempts(chaos, "postgres")) <= 2 * cap
    assert_no_retry_storm(chaos, "postgres", max_per_second=cap)
