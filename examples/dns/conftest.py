"""Fixtures for the DNS chaos suite: Redis as a service reached by a host name.

`service_fixture(..., host="sessions.internal")` makes that name resolve to the service's
proxy for the whole session, in-process (what redis-py uses) and in the plugin's DNS server,
and the service's `.url` uses it: `redis://sessions.internal:<proxy port>/0`. The code under
test is given that URL, as in production; `dns_failure` faults then act on its lookups, and
the proxy's events show what reached Redis meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from session_store import HOST, ConnectPerRequestStore, PooledSessionStore

from pytest_chaos.services import RunningService, redis_service, service_fixture

sessions_redis = service_fixture(redis_service("sessions"), name="sessions_redis", host=HOST)


@pytest.fixture
def pooled(sessions_redis: RunningService) -> Iterator[PooledSessionStore]:
    store = PooledSessionStore(sessions_redis.url)
    store.save("warm", "alice")  # connected (and the name resolved) before any fault
    yield store
    store.close()


@pytest.fixture
def per_request(sessions_redis: RunningService) -> ConnectPerRequestStore:
    store = ConnectPerRequestStore(sessions_redis.url)
    store.save("warm", "alice")
    return store
