"""Clean-up: whatever happens to a test (a failure, an error in setup or teardown, a raising
`with` block, a fault that cannot be applied completely), the next test starts clean."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import exact

SEQUENCE = '''
import pytest

from pytest_chaos.faults import FaultError
from netcheck import address_of, leftovers, talk


@pytest.fixture
def clean(toxiproxy):
    """Nothing is left from the test before: no toxic, no disabled proxy."""
    assert leftovers(toxiproxy) == {}
    seen = talk(address_of(toxiproxy, "echo"))
    assert (seen.outcome, seen.data) == ("ok", b"ping")


@pytest.mark.latency("echo", 100)
@pytest.mark.dependency_down("echo", mode="blackhole")
def test_fails_with_faults(toxiproxy):
    assert len(leftovers(toxiproxy)["echo"][0]) == 3
    assert False, "the code under test broke"


def test_after_a_failure(clean):
    pass


@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")


@pytest.mark.dependency_down("echo", when="setup")
@pytest.mark.latency("echo", 100, when="setup")
@pytest.mark.limit_data("echo", 1)
def test_error_in_setup(broken_setup):
    pass


def test_after_a_setup_error(clean):
    pass


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")


@pytest.mark.dependency_down("echo", when="setup")
@pytest.mark.latency("echo", 100)
def test_error_in_teardown(broken_teardown):
    pass


def test_after_a_teardown_error(clean):
    pass


@pytest.mark.latency("echo", 100, when="setup")
@pytest.mark.toxic("echo", "no_such_toxic", when="setup")
def test_setup_marker_fails_halfway():
    pass


def test_after_a_setup_marker_failing_halfway(clean):
    pass


@pytest.mark.latency("echo", 100)
@pytest.mark.toxic("echo", "no_such_toxic", stream="both")
def test_marker_fails_halfway():
    pass


def test_after_a_marker_failing_halfway(clean):
    pass


def test_context_manager_body_raises(chaos, toxiproxy):
    with pytest.raises(ConnectionError), chaos.dependency_down("echo"):
        raise ConnectionError("the body raised")
    # Reverted on leaving the block, not only at the end of the test.
    assert leftovers(toxiproxy) == {}


def test_context_manager_body_fails_the_test(chaos):
    with chaos.latency("echo", 100), chaos.stall("echo", stream="both"):
        raise ConnectionError("the body raised")


def test_after_a_context_manager_failure(clean):
    pass


def test_fault_fails_halfway_inside(chaos, toxiproxy):
    # The plugin names its toxics chaos_<type>_<stream>_<n>. Take the name the second toxic of
    # the next fault will get, so that the server accepts the first toxic and refuses the second.
    n = toxiproxy.toxic_names._counter
    taken = f"chaos_latency_downstream_{n + 2}"
    toxiproxy.client.add_toxic("echo", "latency", name=taken, attributes={"latency": 0})
    try:
        with pytest.raises(FaultError) as refused, chaos.latency("echo", 100, stream="both"):
            pytest.fail("the fault was applied")
        assert str(refused.value) == (
            "latency: the server refused latency('echo', ms=100, stream='both'):"
            " toxic already exists"
        )
        assert [t.name for t in toxiproxy.client.toxics("echo")] == [taken]
    finally:
        toxiproxy.client.remove_toxic("echo", taken)


def test_after_a_fault_failing_halfway(clean):
    pass


@pytest.mark.latency("echo", 100)
def test_skipped_in_the_body():
    pytest.skip("not today")


def test_after_a_skip(clean):
    pass


@pytest.mark.xfail(reason="known to break", strict=True)
@pytest.mark.dependency_down("echo")
def test_expected_failure(echo):
    assert talk(echo).outcome == "ok"


def test_after_an_xfail(clean):
    pass
'''


def test_nothing_leaks_into_the_next_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_sequence=SEQUENCE)
    result = suite.runpytest_inprocess("-rfEsx")
    result.stdout.fnmatch_lines(
        [
            "FAILED test_sequence.py::test_fails_with_faults - AssertionError: the code*",
            "FAILED test_sequence.py::test_marker_fails_halfway - Failed: @pytest.mark*",
            "FAILED test_sequence.py::test_context_manager_body_fails_the_test - Conne*",
            "ERROR test_sequence.py::test_error_in_setup - RuntimeError: setup broke",
            "ERROR test_sequence.py::test_error_in_teardown - RuntimeError: teardown broke",
            "ERROR test_sequence.py::test_setup_marker_fails_halfway - Failed: @pytest.m*",
            "SKIPPED [[]1] test_sequence.py:*: not today",
            "XFAIL test_sequence.py::test_expected_failure - known to break",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_setup_marker_fails_halfway _*",
            exact(
                "@pytest.mark.toxic: the server refused toxic('echo', type='no_such_toxic'):"
                " invalid toxic type"
            ),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_marker_fails_halfway _*",
            exact(
                "@pytest.mark.toxic: the server refused toxic('echo', type='no_such_toxic',"
                " stream='both'): invalid toxic type"
            ),
            "*- chaos timeline -*",
            "times from the start of the test; seed *",
            "   +*s  applied  latency('echo', ms=100)",
            "   +*s  reverted latency('echo', ms=100)",
            "*_ test_context_manager_body_fails_the_test _*",
        ]
    )
    result.assert_outcomes(passed=12, failed=3, errors=3, skipped=1, xfailed=1)
