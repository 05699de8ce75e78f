"""Fault markers: each one's effect on a real connection in the test body, never in fixture
setup (unless `when="setup"`), on classes and modules, per stream, and with toxicity."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import exact

EFFECTS = '''
import pytest

from netcheck import close_delay, leftovers, talk, toxics_of


@pytest.fixture
def in_setup(echo, toxiproxy):
    """A fixture that connects and looks at the proxy during setup."""
    return talk(echo), leftovers(toxiproxy)


def unaffected(in_setup):
    seen, found = in_setup
    assert (seen.outcome, seen.data, found) == ("ok", b"ping", {})
    assert seen.seconds < 1.0


@pytest.mark.latency("echo", 200)
def test_latency(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo)
    assert (seen.outcome, seen.data) == ("ok", b"ping")
    assert 0.19 <= seen.seconds < 3.0


@pytest.mark.latency("echo", 100, jitter=50)
def test_latency_jitter(in_setup, echo, toxiproxy):
    unaffected(in_setup)
    assert toxics_of(toxiproxy) == [
        ("latency", "downstream", 1.0, {"latency": 100, "jitter": 50})
    ]
    assert talk(echo).seconds >= 0.045


@pytest.mark.bandwidth("echo", 10)
def test_bandwidth(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo, b"x" * 3000)
    assert (seen.outcome, len(seen.data)) == ("ok", 3000)
    # 3000 bytes at 10 KB/s take 0.3 s.
    assert 0.25 <= seen.seconds < 5.0


@pytest.mark.stall("echo")
def test_stall(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo, timeout=0.5)
    assert (seen.outcome, seen.data) == ("timeout", b"")


@pytest.mark.stall("echo", timeout=200)
def test_stall_then_close(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo)
    assert (seen.outcome, seen.data) == ("eof", b"")
    assert 0.19 <= seen.seconds < 3.0


@pytest.mark.reset_peer("echo")
def test_reset_peer(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo)
    assert (seen.outcome, seen.data) == ("reset", b"")


@pytest.mark.reset_peer("echo", timeout=200)
def test_reset_peer_after_timeout(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo)
    assert (seen.outcome, seen.data) == ("reset", b"")
    assert 0.19 <= seen.seconds < 3.0


@pytest.mark.slow_close("echo", 300)
def test_slow_close(in_setup, echo):
    unaffected(in_setup)
    assert 0.29 <= close_delay(echo) < 3.0


@pytest.mark.slicer("echo", 10, delay=20_000)
def test_slicer(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo, b"0123456789" * 10)
    assert (seen.outcome, seen.data) == ("ok", b"0123456789" * 10)
    # Ten slices 20 ms apart: the reader sees several reads, none longer than the payload.
    assert len(seen.chunks) >= 3
    assert seen.seconds >= 0.15


@pytest.mark.limit_data(target="echo", bytes=5)
def test_limit_data(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo, b"0123456789")
    assert (seen.outcome, seen.data) == ("eof", b"01234")


@pytest.mark.dependency_down("echo")
def test_down_refuse(in_setup, echo, toxiproxy):
    unaffected(in_setup)
    assert toxiproxy.proxies()["echo"].enabled is False
    assert talk(echo).outcome == "refused"


@pytest.mark.dependency_down("echo", mode="blackhole")
def test_down_blackhole(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo, timeout=0.5)
    assert (seen.outcome, seen.data) == ("timeout", b"")


@pytest.mark.dependency_down("echo", mode="reset")
def test_down_reset(in_setup, echo):
    unaffected(in_setup)
    seen = talk(echo)
    assert (seen.outcome, seen.data) == ("reset", b"")


@pytest.mark.toxic("echo", "latency", latency=200, jitter=0)
def test_raw_toxic(in_setup, echo, toxiproxy):
    unaffected(in_setup)
    assert toxics_of(toxiproxy) == [("latency", "downstream", 1.0, {"latency": 200, "jitter": 0})]
    assert talk(echo).seconds >= 0.19


@pytest.mark.toxic("echo", "limit_data", stream="upstream", bytes=3)
def test_raw_toxic_upstream(in_setup, echo, toxiproxy):
    unaffected(in_setup)
    assert toxics_of(toxiproxy) == [("limit_data", "upstream", 1.0, {"bytes": 3})]
    # The connection closes once 3 bytes went up, usually before the echo comes back.
    seen = talk(echo, b"0123456789")
    assert seen.outcome == "eof"
    assert b"012".startswith(seen.data)


def test_no_marker_no_fault(echo, toxiproxy):
    assert leftovers(toxiproxy) == {}
    seen = talk(echo)
    assert (seen.outcome, seen.data) == ("ok", b"ping")
'''


def test_each_marker_acts_in_the_test_body_only(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_effects=EFFECTS)
    result = suite.runpytest_inprocess("-v")
    result.stdout.fnmatch_lines(
        [
            "test_effects.py::test_latency PASSED*",
            "test_effects.py::test_latency_jitter PASSED*",
            "test_effects.py::test_bandwidth PASSED*",
            "test_effects.py::test_stall PASSED*",
            "test_effects.py::test_stall_then_close PASSED*",
            "test_effects.py::test_reset_peer PASSED*",
            "test_effects.py::test_reset_peer_after_timeout PASSED*",
            "test_effects.py::test_slow_close PASSED*",
            "test_effects.py::test_slicer PASSED*",
            "test_effects.py::test_limit_data PASSED*",
            "test_effects.py::test_down_refuse PASSED*",
            "test_effects.py::test_down_blackhole PASSED*",
            "test_effects.py::test_down_reset PASSED*",
            "test_effects.py::test_raw_toxic PASSED*",
            "test_effects.py::test_raw_toxic_upstream PASSED*",
            "test_effects.py::test_no_marker_no_fault PASSED*",
        ]
    )
    result.assert_outcomes(passed=16)


WHEN_SETUP = """
import pytest

from netcheck import leftovers, talk, toxics_of


@pytest.fixture
def in_setup(echo, toxiproxy):
    return talk(echo, timeout=1.0), leftovers(toxiproxy)


@pytest.mark.dependency_down("echo", when="setup")
def test_down_from_setup(in_setup, echo):
    seen, found = in_setup
    assert seen.outcome == "refused"
    assert found == {"echo": ([], False)}
    assert talk(echo).outcome == "refused"


@pytest.mark.latency("echo", 200, when="setup")
@pytest.mark.limit_data("echo", 2)
def test_setup_and_call_markers(in_setup, echo, toxiproxy):
    seen, found = in_setup
    assert (seen.outcome, seen.data) == ("ok", b"ping")
    assert seen.seconds >= 0.19
    assert [name.split("_")[1] for name in found["echo"][0]] == ["latency"]
    assert [t[0] for t in toxics_of(toxiproxy)] == ["latency", "limit_data"]
    assert talk(echo).data == b"pi"


def test_nothing_left(echo, toxiproxy):
    assert leftovers(toxiproxy) == {}
    assert talk(echo).outcome == "ok"
"""


def test_when_setup_applies_before_fixtures(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_when=WHEN_SETUP)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=3)


CLASSES_AND_MODULES = """
import pytest

from netcheck import talk, toxics_of

pytestmark = pytest.mark.latency("echo", 100)


@pytest.mark.latency("echo", 100, stream="upstream")
class TestCombined:
    @pytest.mark.limit_data("echo", 3)
    def test_function_class_and_module(self, echo, toxiproxy):
        assert toxics_of(toxiproxy) == [
            ("latency", "upstream", 1.0, {"latency": 100, "jitter": 0}),
            ("latency", "downstream", 1.0, {"latency": 100, "jitter": 0}),
            ("limit_data", "downstream", 1.0, {"bytes": 3}),
        ]
        seen = talk(echo, b"0123456789")
        assert (seen.outcome, seen.data) == ("eof", b"012")
        assert seen.seconds >= 0.19

    def test_class_and_module(self, echo, toxiproxy):
        assert [(t[0], t[1]) for t in toxics_of(toxiproxy)] == [
            ("latency", "upstream"),
            ("latency", "downstream"),
        ]
        seen = talk(echo)
        assert (seen.outcome, seen.data) == ("ok", b"ping")
        assert seen.seconds >= 0.19


def test_module_only(echo, toxiproxy):
    assert [(t[0], t[1]) for t in toxics_of(toxiproxy)] == [("latency", "downstream")]
    assert talk(echo).seconds >= 0.09


@pytest.mark.parametrize(
    "expected",
    [pytest.param(["limit_data"], marks=pytest.mark.limit_data("echo", 1)), []],
    ids=["with-param-mark", "without"],
)
def test_parametrize_marks(echo, toxiproxy, expected):
    assert [t[0] for t in toxics_of(toxiproxy)] == ["latency", *expected]
"""


def test_markers_on_classes_and_modules_combine(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_combined=CLASSES_AND_MODULES)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=5)


STREAMS_AND_TOXICITY = """
import pytest

from netcheck import talk, toxics_of, wait_for_close


@pytest.mark.latency("echo", 200, stream="upstream")
def test_upstream(echo, toxiproxy):
    assert [(t[0], t[1]) for t in toxics_of(toxiproxy)] == [("latency", "upstream")]
    assert talk(echo).seconds >= 0.19


@pytest.mark.latency("echo", 150, stream="both")
def test_both(echo, toxiproxy):
    assert [(t[0], t[1]) for t in toxics_of(toxiproxy)] == [
        ("latency", "upstream"),
        ("latency", "downstream"),
    ]
    # Once on the way there, once on the way back.
    assert talk(echo).seconds >= 0.29


@pytest.mark.limit_data("echo", 2, stream="upstream")
def test_upstream_limit(echo, chaos):
    seen = talk(echo, b"0123")
    assert seen.outcome == "eof"
    assert b"01".startswith(seen.data)
    # The server was sent 2 of the 4 bytes.
    closed = [e for e in wait_for_close(chaos) if e.kind == "closed"]
    assert [e.bytes["upstream"] for e in closed] == [{"in": 4, "out": 2}]


@pytest.mark.reset_peer("echo", toxicity=0.0)
def test_toxicity_zero(echo, toxiproxy):
    assert toxics_of(toxiproxy) == [("reset_peer", "downstream", 0.0, {"timeout": 0})]
    assert {talk(echo).outcome for _ in range(5)} == {"ok"}


@pytest.mark.reset_peer("echo", toxicity=0.5)
def test_toxicity_half(echo, toxiproxy):
    assert toxics_of(toxiproxy)[0][2] == 0.5
    outcomes = [talk(echo).outcome for _ in range(20)]
    print("outcomes:", " ".join(outcomes))
    assert set(outcomes) == {"ok", "reset"}
"""


def test_streams_and_toxicity(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_streams=STREAMS_AND_TOXICITY)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=5)


def test_the_seed_repeats_toxicity_rolls(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_streams=STREAMS_AND_TOXICITY)
    runs = [
        suite.runpytest_inprocess("--chaos-seed", "42", "-rP", "-k", "toxicity_half")
        for _ in range(2)
    ]
    patterns = []
    for result in runs:
        result.stdout.fnmatch_lines([exact("chaos: backend=embedded seed=42"), "outcomes: *"])
        patterns.append([line for line in result.outlines if line.startswith("outcomes: ")])
    assert patterns[0] == patterns[1]
    for result in runs:
        result.assert_outcomes(passed=1, deselected=4)
