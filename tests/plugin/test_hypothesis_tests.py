"""Hypothesis tests that use the `chaos` fixture: no settings needed, one fresh, seeded record
per example, a failure report with the shrunk example and its chaos timeline, and exact
replay of the engine's decisions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.plugin.conftest import dedent

HEADER = dedent(
    '''
    import time

    import pytest
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from netcheck import address_of, talk
    from pytest_chaos.faults import Latency
    from pytest_chaos.strategies import dependency_downs, latencies, limit_datas, resets


    @pytest.fixture(scope="session")
    def echo_address(toxiproxy):
        """The `echo` proxy's address, for the whole session: examples share it."""
        return address_of(toxiproxy, "echo")
    '''
)


def test_a_hypothesis_test_using_chaos_needs_no_settings(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_fuzz=HEADER
        + dedent(
            """
            CUTTING = st.one_of(
                latencies(["echo"], max_value=20),
                limit_datas(["echo"], max_value=8),
                resets(["echo"], max_value=0),
                dependency_downs(["echo"]),
            )


            @settings(max_examples=40)
            @given(fault=CUTTING)
            def test_examples_never_leak_into_each_other(chaos, echo_address, fault):
                proxy = chaos.client.get_proxy("echo")
                assert (proxy.toxics, proxy.enabled) == ((), True)
                with chaos.apply(fault):
                    talk(echo_address, timeout=1)


            @given(x=st.just(1))
            def test_slower_than_hypothesis_deadline(chaos, x):
                time.sleep(0.3)
            """
        )
    )
    suite.runpytest_inprocess().assert_outcomes(passed=2)


def test_the_tests_own_deadline_and_other_tests_are_left_alone(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_deadlines=HEADER
        + dedent(
            """
            # The profile in force, stated: under CI, Hypothesis's own "ci" profile has none.
            settings.register_profile("deadline_200", deadline=200)
            settings.load_profile("deadline_200")


            @settings(deadline=100)
            @given(x=st.just(1))
            def test_chose_a_deadline(chaos, x):
                time.sleep(0.3)


            @given(x=st.just(1))
            def test_without_chaos(x):
                time.sleep(0.3)
            """
        )
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=2)
    # Each failure's own section of the report names the deadline that test ran under.
    report = result.stdout.str()
    chose = report[report.index(" test_chose_a_deadline _") : report.index(" test_without_chaos _")]
    without = report[report.index(" test_without_chaos _") : report.index("short test summary")]
    assert "exceeds the deadline of 100.00ms" in chose
    assert "200.00ms" not in chose
    assert "exceeds the deadline of 200.00ms" in without
    assert "100.00ms" not in without


def test_a_function_scoped_fixture_of_the_test_is_named_by_the_health_check(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        test_fixture=HEADER
        + dedent(
            """
            @pytest.fixture
            def client(echo_address):
                return echo_address


            @given(x=st.just(1))
            def test_uses_its_own_fixture(chaos, client, x):
                pass


            @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
            @given(x=st.just(1))
            def test_suppressed_by_hand(chaos, client, x):
                pass
            """
        )
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "Hypothesis health check (function_scoped_fixture): 'test_fixture.py::"
            "test_uses_its_own_fixture' uses the function-scoped fixture 'client', set up once"
            " for all the examples of the test, not once per example. (The `chaos` fixture is"
            " fine: chaos.apply reverts each example's faults.) Give it a wider scope"
            " (scope='session'), or, if sharing it between examples is safe, suppress this check"
            " with @settings(suppress_health_check=[[]HealthCheck.function_scoped_fixture])."
        ]
    )


# Fails when the echo stream is cut before the 4 bytes of "ping" came back: the shrunk example
# is the largest such limit, 3 bytes.
CUT_SHORT = HEADER + dedent(
    """
    @settings(database=None, print_blob=True)
    @given(fault=limit_datas(["echo"], max_value=64))
    def test_cut_short(chaos, echo_address, fault):
        with chaos.apply(fault):
            assert talk(echo_address).outcome == "ok"
    """
)


def test_a_failure_shows_the_shrunk_example_and_the_timeline_of_that_example_only(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(test_cut=CUT_SHORT)
    result = suite.runpytest_inprocess("--chaos-seed", "7")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *fault=LimitData('echo', bytes=3),",
            "E *chaos.apply, engine seed 0; faults: limit_data('echo', bytes=3)",
            "*You can reproduce this * by temporarily adding @reproduce_failure(*",
            "*- chaos timeline -*",
            "times from the start of the example; seed 0",
            "   +0.*s  applied  limit_data('echo', bytes=3)",
            "   +0.*s  echo#* accepted from 127.0.0.1:*",
        ]
    )
    section = result.stdout.str().split("chaos timeline")[1]
    # Of all the examples Hypothesis ran, the timeline shows the last: the shrunk one.
    assert re.findall(r"(applied|reverted) +(.*)", section) == [
        ("applied", "limit_data('echo', bytes=3)"),
        ("reverted", "limit_data('echo', bytes=3)"),
    ]
    result.stdout.fnmatch_lines(
        [
            "chaos.apply, engine seed 0; faults: limit_data('echo', bytes=3)",
            "This is the last example Hypothesis ran. Hypothesis replays a failing example from"
            " its database (.hypothesis/, when it keeps one) before anything else; with"
            " print_blob=True it also prints a @reproduce_failure line that replays it"
            " anywhere, with the same engine seed.",
            "replay: pytest test_cut.py::test_cut_short --chaos-seed 7",
        ]
    )


# Fails when at least 3 of 8 connections are hit by a latency toxic of toxicity 0.05 to 1:
# which ones are hit is the engine's toxicity roll, drawn from the seed of the example.
ROLLS = HEADER + dedent(
    """
    from hypothesis.database import DirectoryBasedExampleDatabase


    @settings(database=DirectoryBasedExampleDatabase("examples-db"), print_blob=True)
    @given(fault=latencies(["echo"], max_value=0, min_toxicity=0.05))
    def test_rolls(chaos, echo_address, fault):
        with chaos.apply(fault):
            for _ in range(8):
                assert talk(echo_address).outcome == "ok"
        assert len([e for e in chaos.events("echo") if e.kind == "toxics_active"]) < 3
    """
)


def test_a_failing_example_replays_the_same_engine_decisions(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_rolls=ROLLS)
    first = suite.runpytest_inprocess("--chaos-report", "first.json")
    first.assert_outcomes(failed=1)
    shrunk = example_of(first.stdout.str())
    blob = re.search(r"@reproduce_failure\(.*\)", first.stdout.str())
    assert blob is not None, "Hypothesis printed no @reproduce_failure line"

    # From the database: Hypothesis replays the saved example first.
    again = suite.runpytest_inprocess("--chaos-report", "again.json")
    again.assert_outcomes(failed=1)
    assert example_of(again.stdout.str()) == shrunk

    # Anywhere: the @reproduce_failure line, without the database.
    pasted_source = (
        ROLLS.replace('DirectoryBasedExampleDatabase("examples-db")', "None")
        .replace("import HealthCheck", "import reproduce_failure, HealthCheck")
        .replace("@settings(", f"{blob.group(0)}\n@settings(")
    )
    suite.makepyfile(test_rolls=pasted_source)
    pasted = suite.runpytest_inprocess("--chaos-report", "pasted.json")
    pasted.assert_outcomes(failed=1)
    assert example_of(pasted.stdout.str()) == shrunk

    decisions = [hits(suite.path / name) for name in ("first.json", "again.json", "pasted.json")]
    assert decisions[0] == decisions[1] == decisions[2]
    assert sum(decisions[0]) >= 3, decisions[0]


def example_of(output: str) -> tuple[str, str]:
    """The shrunk fault and the engine seed of a failure's report."""
    fault = re.search(r"fault=(\w+\(.*\)),", output)
    seed = re.search(r"chaos.apply, engine seed (\d+);", output)
    assert fault is not None, output
    assert seed is not None, output
    return fault.group(1), seed.group(1)


def hits(report: Path) -> list[bool]:
    """For each connection of the final example, in order: did the toxic act on it?"""
    (test,) = json.loads(report.read_text())["tests"]
    events: list[dict[str, Any]] = test["events"]
    hit = {e["connection"] for e in events if e["kind"] == "toxics_active"}
    return [e["connection"] in hit for e in events if e["kind"] == "accepted"]


def test_hypothesis_is_not_imported_for_tests_that_do_not_use_it(
    suite: pytest.Pytester,
) -> None:
    suite.makeconftest(
        suite.path.joinpath("conftest.py").read_text()
        + "\n"
        + dedent(
            """
            import sys

            def pytest_sessionfinish(session):
                print("hypothesis imported:", "hypothesis" in sys.modules)
            """
        )
    )
    suite.makepyfile(
        test_plain=dedent(
            """
            from pytest_chaos.faults import Latency
            from pytest_chaos.schedules import Schedule, Step

            def test_apply_without_hypothesis(echo, chaos):
                with chaos.apply([Latency("echo", 1)]):
                    pass
                with chaos.apply(Schedule([Step(Latency("echo", 1), duration=0.01)])) as block:
                    block.wait()
            """
        )
    )
    # Hypothesis's own pytest plugin imports it at the end of a run: leave it out.
    result = suite.runpytest_subprocess("-s", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*hypothesis imported: False"])


def test_the_ci_profile(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_profile=HEADER
        + dedent(
            """
            from hypothesis import Phase

            COUNT = []

            @given(fault=latencies(["echo"], max_value=1))
            def test_counted(chaos, fault):
                COUNT.append(fault)

            def test_settings():
                current = settings.default
                print("examples:", len(COUNT), current.derandomize, current.print_blob)
                assert current.deadline is None
                assert list(current.phases) == [Phase.explicit, Phase.generate, Phase.shrink]
            """
        )
    )
    result = suite.runpytest_subprocess("-s", "--hypothesis-profile", "chaos-ci")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*examples: 2 True True*"])
