"""The `chaos` fixture: context-manager twins of the markers, proxies by name, events and the
timeline of one test."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import exact

CONTEXT_MANAGERS = """
import pytest

from netcheck import close_delay, leftovers, talk, toxics_of


@pytest.fixture(autouse=True)
def clean_before_and_after(toxiproxy):
    assert leftovers(toxiproxy) == {}
    yield
    assert leftovers(toxiproxy) == {}


def test_latency(chaos, echo, toxiproxy):
    with chaos.latency("echo", 200, jitter=10) as applied:
        assert toxics_of(toxiproxy) == [
            ("latency", "downstream", 1.0, {"latency": 200, "jitter": 10})
        ]
        assert talk(echo).seconds >= 0.18
        assert applied.reverted_at is None
    assert applied.reverted_at is not None
    assert toxics_of(toxiproxy) == []
    assert talk(echo).outcome == "ok"


def test_latency_upstream_and_both(chaos, echo, toxiproxy):
    with chaos.latency("echo", 100, stream="upstream"):
        assert [t[1] for t in toxics_of(toxiproxy)] == ["upstream"]
        assert talk(echo).seconds >= 0.09
    with chaos.latency("echo", 100, stream="both"):
        assert [t[1] for t in toxics_of(toxiproxy)] == ["upstream", "downstream"]
        assert talk(echo).seconds >= 0.19


def test_bandwidth(chaos, echo):
    with chaos.bandwidth("echo", 10):
        seen = talk(echo, b"x" * 3000)
    assert (seen.outcome, len(seen.data)) == ("ok", 3000)
    assert seen.seconds >= 0.25


def test_stall(chaos, echo):
    with chaos.stall("echo"):
        assert talk(echo, timeout=0.5).outcome == "timeout"
    with chaos.stall("echo", timeout=100):
        assert talk(echo).outcome == "eof"


def test_reset_peer(chaos, echo):
    with chaos.reset_peer("echo"):
        assert talk(echo).outcome == "reset"
    with chaos.reset_peer("echo", toxicity=0.0):
        assert talk(echo).outcome == "ok"


def test_slow_close(chaos, echo):
    with chaos.slow_close("echo", 300):
        assert close_delay(echo) >= 0.29


def test_slicer(chaos, echo):
    with chaos.slicer("echo", 10, size_variation=5, delay=20_000):
        seen = talk(echo, b"0123456789" * 10)
    assert (seen.outcome, seen.data) == ("ok", b"0123456789" * 10)
    assert len(seen.chunks) >= 3


def test_limit_data(chaos, echo):
    with chaos.limit_data("echo", 5):
        seen = talk(echo, b"0123456789")
    assert (seen.outcome, seen.data) == ("eof", b"01234")


@pytest.mark.parametrize(
    ("mode", "outcome"), [("refuse", "refused"), ("blackhole", "timeout"), ("reset", "reset")]
)
def test_dependency_down(chaos, echo, mode, outcome):
    with chaos.dependency_down("echo", mode=mode):
        assert talk(echo, timeout=0.5).outcome == outcome
    assert talk(echo).outcome == "ok"


def test_raw_toxic(chaos, echo, toxiproxy):
    with chaos.toxic("echo", "limit_data", stream="both", bytes=100):
        assert [(t[0], t[1]) for t in toxics_of(toxiproxy)] == [
            ("limit_data", "upstream"),
            ("limit_data", "downstream"),
        ]
        assert talk(echo).outcome == "ok"


def test_nested_and_stacked(chaos, echo, toxiproxy):
    with chaos.latency("echo", 100), chaos.latency("echo", 100):
        assert len(toxics_of(toxiproxy)) == 2
        assert talk(echo).seconds >= 0.19
        with chaos.dependency_down("echo"):
            assert talk(echo).outcome == "refused"
        assert talk(echo).outcome == "ok"
    assert toxics_of(toxiproxy) == []


def test_inject_and_revert_by_hand(chaos, echo, toxiproxy):
    from pytest_chaos.faults import Latency

    applied = chaos.inject(Latency(target="echo", ms=100))
    assert [t[0] for t in toxics_of(toxiproxy)] == ["latency"]
    applied.revert()
    applied.revert()
    assert toxics_of(toxiproxy) == []


def test_left_applied_is_reverted_at_the_end(chaos, toxiproxy):
    from pytest_chaos.faults import Down

    chaos.inject(Down(target="echo"))
    chaos.inject(Down(target="echo", mode="blackhole"))
    assert leftovers(toxiproxy) != {}
"""


def test_context_manager_twins(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_context=CONTEXT_MANAGERS)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=15)


PROXIES = """
import pytest

from netcheck import talk
from pytest_chaos._ports import free_port


def test_get_or_create(chaos, toxiproxy):
    upstream = toxiproxy.proxies()["echo"].upstream
    created = chaos.proxy("second", upstream=upstream)
    assert (created.name, created.upstream, created.enabled) == ("second", upstream, True)
    assert created.host == "127.0.0.1"
    assert isinstance(created.port, int) and created.port > 0
    assert created.address == f"127.0.0.1:{created.port}"
    assert created.listen == created.address
    assert chaos.proxy("second") == created
    assert chaos.proxy("second", upstream=upstream) == created
    seen = talk((created.host, created.port))
    assert (seen.outcome, seen.data) == ("ok", b"ping")


def test_proxies_live_for_the_session(chaos, toxiproxy):
    second = chaos.proxy("second")
    assert sorted(toxiproxy.proxies()) == ["echo", "second"]
    with chaos.latency("second", 150):
        assert talk((second.host, second.port)).seconds >= 0.14


def test_point_an_existing_proxy_elsewhere(chaos, toxiproxy):
    upstream = toxiproxy.proxies()["echo"].upstream
    nowhere = f"127.0.0.1:{free_port()}"
    moved = chaos.proxy("second", upstream=nowhere)
    assert moved.upstream == nowhere
    assert talk((moved.host, moved.port)).outcome in ("reset", "eof")
    back = chaos.proxy("second", upstream=upstream)
    assert back.upstream == upstream and back.port == moved.port
    assert talk((back.host, back.port)).outcome == "ok"


def test_unknown_proxy_without_upstream(chaos):
    chaos.proxy("nope")


@pytest.mark.latency("second", 100)
def test_marker_on_a_proxy_made_by_chaos_proxy(chaos):
    second = chaos.proxy("second")
    assert talk((second.host, second.port)).seconds >= 0.09
"""


def test_proxy_get_or_create(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_proxies=PROXIES)
    result = suite.runpytest_inprocess()
    result.stdout.fnmatch_lines(
        [
            "*_ test_unknown_proxy_without_upstream _*",
            '>       chaos.proxy("nope")',
            "E       pytest_chaos.faults.FaultError: no proxy named 'nope'; pass"
            " upstream='host:port' to create it (known proxies: echo, second)",
        ]
    )
    result.assert_outcomes(passed=4, failed=1)


EVENTS = """
import pytest

from netcheck import talk, wait_for_close


@pytest.fixture
def second(chaos, toxiproxy):
    proxy = chaos.proxy("second", upstream=toxiproxy.proxies()["echo"].upstream)
    return (proxy.host, proxy.port)


def test_earlier(chaos, echo, second):
    for _ in range(3):
        assert talk(echo).outcome == "ok"
    assert talk(second).outcome == "ok"
    wait_for_close(chaos)


def test_events_of_this_test_only(chaos, echo, second):
    assert chaos.events("echo") == []
    assert talk(echo, b"hello").outcome == "ok"
    assert talk(second).outcome == "ok"
    events = wait_for_close(chaos, "echo")
    assert {e.proxy for e in events} == {"echo"}
    connection_events = [e for e in events if e.kind != "toxic_added"]
    assert len({e.connection for e in connection_events}) == 1
    kinds = [e.kind for e in connection_events if e.kind != "data"]
    assert kinds[:2] == ["accepted", "upstream_connected"]
    assert kinds[-1] == "closed"
    closed = [e for e in events if e.kind == "closed"][-1]
    assert closed.bytes_in("upstream") == 5
    assert closed.bytes_in("downstream") == 5
    assert closed.by == "client"
    assert [e.proxy for e in wait_for_close(chaos, "second")][0] == "second"
    everything = chaos.events()
    assert {e.proxy for e in everything} == {"echo", "second"}


def test_refused_connections_are_seen(chaos, echo):
    with chaos.dependency_down("echo", mode="reset"):
        assert talk(echo).outcome == "reset"
    events = wait_for_close(chaos)
    closed = [e for e in events if e.kind == "closed"]
    assert [e.reset for e in closed] == [True]
"""


def test_events_show_this_tests_connections_only(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_events=EVENTS)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=3)


TIMELINE = """
from netcheck import talk, wait_for_close


def test_timeline(chaos, echo):
    with chaos.latency("echo", 100):
        assert talk(echo).outcome == "ok"
        wait_for_close(chaos)
    timeline = chaos.timeline()
    assert [str(applied.fault) for applied in timeline.faults] == ["latency('echo', ms=100)"]
    print(timeline.render())
"""


def test_timeline_of_one_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_timeline=TIMELINE)
    result = suite.runpytest_inprocess("--chaos-seed", "7", "-rP")
    result.stdout.fnmatch_lines(
        [
            "*- Captured stdout call -*",
            "times from the start of the test; seed 7",
            exact("   +") + "*s  " + exact("applied  latency('echo', ms=100)"),
            "   +*s  echo#1 accepted from 127.0.0.1:*",
            "   +*s  echo#1 upstream 127.0.0.1:* connected",
            "   +*s  echo#1 toxics active (downstream: chaos_latency_downstream_1)",
            "   +*s  echo#1 client sent FIN",
            "   +*s  echo#1 server sent FIN",
            "   +*s  echo#1 closed by client (4 B up, 4 B down)",
            exact("   +") + "*s  " + exact("reverted latency('echo', ms=100)"),
        ]
    )
    result.assert_outcomes(passed=1)
