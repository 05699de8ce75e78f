"""Every fault the strategies draw is accepted by the engine, as drawn, up to the bounds of
each option: the strategies, `faults.py` and the engine agree on what is allowed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_chaos.apply import apply_proxy_fault
from pytest_chaos.backends.client import ToxiproxyClient
from pytest_chaos.backends.server import ToxicNames
from pytest_chaos.engine import EngineThread
from pytest_chaos.faults import MS_PER_DAY, STREAMS, Down, Fault, ToxicFault
from pytest_chaos.strategies import (
    bandwidths,
    dependency_downs,
    fault_schedules,
    faults,
    jitters,
    latencies,
    limit_datas,
    resets,
    slicers,
    slow_closes,
    stalls,
)
from tests.servers import echo_server

P = ["p"]
ANY = {"streams": list(STREAMS), "min_toxicity": 0.0}
# Every kind, over the whole range each option allows.
EVERY_FAULT = st.one_of(
    faults(P),
    latencies(P, max_value=MS_PER_DAY, **ANY),
    jitters(P, max_value=MS_PER_DAY, **ANY),
    bandwidths(P, min_value=0, max_value=10**9, **ANY),
    stalls(P, max_value=MS_PER_DAY, **ANY),
    resets(P, max_value=MS_PER_DAY, **ANY),
    slow_closes(P, max_value=MS_PER_DAY, **ANY),
    slicers(P, min_size=1, max_size=2**31, max_delay=MS_PER_DAY * 1000, **ANY),
    limit_datas(P, max_value=2**53, **ANY),
    dependency_downs(P),
    fault_schedules(P, max_faults=1, min_faults=1).map(lambda schedule: schedule.steps[0].fault),
)


@pytest.fixture(scope="module")
def client() -> Iterator[ToxiproxyClient]:
    """A client of an engine with the proxy `p` in front of an echo server."""
    engine = EngineThread(seed=1)
    engine.start()
    try:
        with echo_server() as (host, port), ToxiproxyClient(engine.engine.url) as client:
            client.create_proxy("p", f"{host}:{port}")
            yield client
    finally:
        engine.stop()


# No deadline: a busy machine makes the API's answers slow at times, and time is not the point.
@settings(max_examples=300, database=None, deadline=None)
@given(fault=EVERY_FAULT)
def test_every_drawn_fault_is_applied_as_drawn_and_reverted(
    client: ToxiproxyClient, fault: Fault
) -> None:
    applied = apply_proxy_fault(fault, client, ToxicNames())
    try:
        toxics = client.toxics("p")
        proxy = client.get_proxy("p")
    finally:
        applied.revert()
    if isinstance(fault, ToxicFault):
        assert [(t.type, t.stream, t.toxicity, t.attributes) for t in toxics] == [
            (fault.toxic_type, stream, fault.toxicity, fault.attributes())
            for stream in fault.streams()
        ]
    else:
        assert isinstance(fault, Down)
        assert proxy.enabled == (fault.mode != "refuse")
    after = client.get_proxy("p")
    assert (after.toxics, after.enabled) == ((), True)
