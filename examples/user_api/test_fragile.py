"""The suite catches fragile code: each helper, pointed at a deliberately fragile function
(`fragile.py`), fails with a message that says what went wrong. The tests pin those failures
down, so the suite stays green while showing what the helpers report."""

from __future__ import annotations

import re
from collections.abc import Iterator

import psycopg
import pytest

from pytest_chaos.assertions import (
    ChaosAssertionError,
    assert_backoff,
    assert_no_retry_storm,
    assert_timeout_propagates,
)
from pytest_chaos.chaos import Chaos
from pytest_chaos.policies import Exponential
from pytest_chaos.recorders import record_tenacity
from user_api.fragile import SharedConnectionStore, load_user_retrying_without_backoff
from user_api.store import StoreSettings

NUMBER = r"\d+\.\d\d"  # timings vary from run to run; everything else is compared as is


def message_pattern(expected: str) -> str:
    """`expected` as a regular expression matching the whole message, `{t}` for a time."""
    return "".join(
        NUMBER if part == "{t}" else re.escape(part) for part in re.split(r"(\{t\})", expected)
    )


@pytest.fixture
def conninfo(store_settings: StoreSettings) -> str:
    """Where the real store connects (the proxy "postgres"), without its settings."""
    s = store_settings
    return f"host={s.host} port={s.port} user={s.user} dbname={s.dbname}"


@pytest.fixture
def shared_store(conninfo: str) -> Iterator[SharedConnectionStore]:
    store = SharedConnectionStore(conninfo)  # connected before the test body's fault
    yield store
    store.close()


@pytest.mark.stall("postgres")
def test_a_query_without_a_client_deadline_is_caught_hanging(
    chaos: Chaos, shared_store: SharedConnectionStore
) -> None:
    """statement_timeout=400ms looks like a bound, but the server's cancellation is lost
    with the result: the call is still waiting when the budget has long passed. (The helper
    runs it on a daemon thread; lifting the stall after the test closes the connection,
    which releases it.)"""
    with pytest.raises(ChaosAssertionError) as caught:
        assert_timeout_propagates(
            lambda: shared_store.load_user(2), budget=0.5, chaos=chaos, proxy="postgres"
        )
    assert re.fullmatch(
        message_pattern(
            "The call did not give up within its budget of 0.50s (+0.25s tolerance).\n"
            "- still running after 0.75s\n"
            "Hint: does every network call have a timeout, shorter than the budget? A per-read"
            " socket timeout does not bound a whole request when data keeps trickling in"
            " (slicer, bandwidth)."
        ),
        str(caught.value),
    )


@pytest.mark.dependency_down("postgres", mode="reset")
def test_retries_without_backoff_are_caught_storming_and_not_backing_off(
    chaos: Chaos, conninfo: str
) -> None:
    """Three lookups during an outage, eight immediate tries each: 24 connections in a few
    milliseconds. The real store makes 4 tries per request, 0.05 to 0.2 s apart, and its
    breaker cuts all of them off after 5 failures."""
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError):
            load_user_retrying_without_backoff(conninfo, 2)
    with (
        record_tenacity(load_user_retrying_without_backoff) as attempts,
        pytest.raises(psycopg.OperationalError),
    ):
        load_user_retrying_without_backoff(conninfo, 2)

    defaults = StoreSettings(host="", port=0)
    # What the real store lets through with four clients hammering it (test_breaker.py).
    limit = defaults.breaker_fail_max + 4
    with pytest.raises(ChaosAssertionError) as storm:
        assert_no_retry_storm(chaos, "postgres", max_per_second=limit)
    assert re.fullmatch(
        message_pattern(
            "Retry storm: 24 connection attempts reached postgres within one second.\n"
            "- at most 9 per second allowed\n"
            "- 24 attempts in the second from +{t}s (test time)\n"
            "Hint: a retry loop without backoff (or without a cap on attempts) hammers a"
            " struggling dependency."
        ),
        str(storm.value),
    )

    # The third call's eight tries, as tenacity reports them, against the real store's policy.
    policy = Exponential.tenacity(multiplier=defaults.initial_wait, max=defaults.max_wait)
    with pytest.raises(ChaosAssertionError) as backoff:
        assert_backoff(attempts, policy)
    assert re.fullmatch(
        message_pattern(
            "Retries did not follow exponential backoff (initial=0.05s, multiplier=2,"
            " max=0.4s).\n"
            "- attempt 2 after {t}s (expected 0.05s +/- 0.02s)  <-- too early\n"
            "- attempt 3 after {t}s (expected 0.10s +/- 0.02s)  <-- too early\n"
            "- attempt 4 after {t}s (expected 0.20s +/- 0.02s)  <-- too early\n"
            "- attempt 5 after {t}s (expected 0.40s +/- 0.04s)  <-- too early\n"
            "- attempt 6 after {t}s (expected 0.40s +/- 0.04s)  <-- too early\n"
            "- attempt 7 after {t}s (expected 0.40s +/- 0.04s)  <-- too early\n"
            "- attempt 8 after {t}s (expected 0.40s +/- 0.04s)  <-- too early\n"
            "Hint: the retries do not wait at all: is there a backoff between attempts?"
        ),
        str(backoff.value),
    )
