"""A DNS outage, flaky DNS and slow DNS, against a session store on Redis reached by name."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from session_store import HOST, ConnectPerRequestStore, PooledSessionStore

REQUESTS = 20


def closed_events(chaos: Any, proxy: str, timeout: float = 5.0) -> list[Any]:
    """The proxy's events once every connection it accepted in this test has closed."""
    deadline = time.monotonic() + timeout
    while True:
        events = chaos.events(proxy)
        opened = {e.connection for e in events if e.kind == "accepted"}
        closed = {e.connection for e in events if e.kind == "closed"}
        if opened <= closed or time.monotonic() > deadline:
            return events  # type: ignore[no-any-return]
        time.sleep(0.01)


def test_the_url_names_the_host(sessions_redis: Any) -> None:
    assert sessions_redis.url == f"redis://{HOST}:{sessions_redis.proxy.port}/0"


def test_a_pooled_client_rides_out_a_dns_outage(
    chaos: Any, sessions_redis: Any, pooled: PooledSessionStore
) -> None:
    with chaos.dns_failure(HOST, error="servfail"):
        outage_started = time.monotonic()
        served = [pooled.user_of("warm") for _ in range(REQUESTS)]
        # A client that has to resolve the name now cannot.
        fresh = redis.Redis.from_url(sessions_redis.url, socket_connect_timeout=0.5, retry=None)
        with pytest.raises(redis.ConnectionError, match="Temporary failure in name resolution"):
            fresh.ping()
        fresh.close()
    assert served == ["alice"] * REQUESTS
    # Lookups failed during the outage, while Redis kept getting requests on the pooled
    # connection opened before it (and no new connection).
    looked_up = [lookup for lookup in chaos.lookups(HOST) if lookup.time >= outage_started]
    assert [lookup.error for lookup in looked_up] == ["servfail (EAI_AGAIN)"]
    # The engine reports a connection's bytes in 50 ms batches, the last one when it closes.
    pooled.close()
    events = closed_events(chaos, "sessions")
    assert not [e for e in events if e.kind == "accepted" and e.time >= outage_started]
    requests = [
        e
        for e in events
        if e.kind == "data" and e.direction == "upstream" and e.until >= outage_started
    ]
    assert sum(e.bytes for e in requests) >= REQUESTS * len(b"GET session:warm")


def test_connecting_per_request_fails_for_as_long_as_dns_does(
    chaos: Any, per_request: ConnectPerRequestStore
) -> None:
    with chaos.dns_failure(HOST, error="servfail"):
        for _ in range(3):
            with pytest.raises(redis.ConnectionError) as raised:
                per_request.user_of("warm")
            assert "Temporary failure in name resolution" in str(raised.value)
    assert per_request.user_of("warm") == "alice"  # back once DNS is
    failed = [lookup for lookup in chaos.lookups(HOST) if lookup.failed]
    assert len(failed) == 3


@pytest.mark.dns_failure(HOST, error="nxdomain")
def test_a_vanished_name_fails_every_new_connection(per_request: ConnectPerRequestStore) -> None:
    with pytest.raises(redis.ConnectionError, match="Name or service not known"):
        per_request.save("s1", "bob")


@pytest.mark.dns_failure(HOST, probability=0.3)
def test_flaky_dns_fails_some_requests_of_one_and_none_of_the_other(
    chaos: Any, pooled: PooledSessionStore, per_request: ConnectPerRequestStore
) -> None:
    failures = 0
    for _ in range(REQUESTS):
        assert pooled.user_of("warm") == "alice"
        try:
            per_request.user_of("warm")
        except redis.ConnectionError:
            failures += 1
    # About 30 % (the rolls come from the test's seed: a replay fails the same requests).
    assert 0 < failures < REQUESTS
    assert failures == sum(lookup.failed for lookup in chaos.lookups(HOST))


@pytest.mark.dns_failure(HOST, delay=200, probability=0)
def test_slow_dns_slows_each_request_that_resolves(
    pooled: PooledSessionStore, per_request: ConnectPerRequestStore
) -> None:
    started = time.monotonic()
    assert per_request.user_of("warm") == "alice"
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    assert pooled.user_of("warm") == "alice"
    assert time.monotonic() - started < 0.2
