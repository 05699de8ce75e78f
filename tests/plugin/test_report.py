"""What a run reports: the header, the timeline of a failing test, the one-line summary, the
JSON report and the JUnit XML property."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.plugin.conftest import exact, make_ini

REPORTED = """
import pytest

from netcheck import talk, wait_for_close


@pytest.mark.latency("echo", 100)
def test_passes(echo, chaos):
    assert talk(echo).outcome == "ok"
    wait_for_close(chaos)


@pytest.mark.latency("echo", 100)
@pytest.mark.limit_data("echo", 2)
def test_fails(echo, chaos):
    seen = talk(echo)
    wait_for_close(chaos)
    assert seen.data == b"ping", "the client got a short answer"


def test_without_chaos():
    pass


def test_with_the_fixture_only(chaos):
    pass
"""


def test_report_of_a_run(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_reported=REPORTED)
    result = suite.runpytest_inprocess(
        "--chaos-seed", "42", "--chaos-report", "out/chaos.json", "--junitxml", "junit.xml"
    )
    result.stdout.fnmatch_lines(
        [
            "chaos: backend=embedded seed=42",
            "*_ test_fails _*",
            "E       AssertionError: the client got a short answer",
            "*- chaos timeline -*",
            "times from the start of the test; seed 42",
            exact("   +") + "*s  " + exact("applied  latency('echo', ms=100)"),
            exact("   +") + "*s  " + exact("applied  limit_data('echo', bytes=2)"),
            "   +*s  echo#2 accepted from 127.0.0.1:*",
            "   +*s  echo#2 upstream 127.0.0.1:* connected",
            "   +*s  echo#2 toxics active (downstream: chaos_latency_downstream_1,"
            " chaos_limit_data_downstream_2)",
            "   +*s  echo#2 closed by toxic chaos_limit_data_downstream_2 (limit_data)"
            " (4 B up, 4 B down)",
            exact("   +") + "*s  " + exact("reverted limit_data('echo', bytes=2)"),
            exact("   +") + "*s  " + exact("reverted latency('echo', ms=100)"),
            "*- generated xml file: */junit.xml -*",
            "chaos: 3 faults injected in 3 tests (backend embedded, seed 42)",
            "FAILED test_reported.py::test_fails - AssertionError: the client got a short*",
        ]
    )
    # Only the failing test shows its timeline.
    assert sum("chaos timeline" in line for line in result.outlines) == 1

    report = json.loads((suite.path / "out" / "chaos.json").read_text())
    assert (report["seed"], report["backend"]) == (42, "embedded")
    tests = {record["nodeid"]: record for record in report["tests"]}
    assert list(tests) == [
        "test_reported.py::test_passes",
        "test_reported.py::test_fails",
        "test_reported.py::test_with_the_fixture_only",
    ]
    assert [record["outcome"] for record in tests.values()] == ["passed", "failed", "passed"]
    assert {record["seed"] for record in tests.values()} == {42}
    failed = tests["test_reported.py::test_fails"]
    assert [(f["fault"], f["type"], f["target"], f["options"]) for f in failed["faults"]] == [
        (
            "latency('echo', ms=100)",
            "latency",
            "echo",
            {"ms": 100, "jitter": 0, "stream": "downstream", "toxicity": 1.0},
        ),
        (
            "limit_data('echo', bytes=2)",
            "limit_data",
            "echo",
            {"bytes": 2, "stream": "downstream", "toxicity": 1.0},
        ),
    ]
    for fault in failed["faults"]:
        assert 0 <= fault["applied_at"] <= fault["reverted_at"] < 10
    events = failed["events"]
    assert [e["toxic"]["name"] for e in events if e["kind"] == "toxic_added"] == [
        "chaos_latency_downstream_1",
        "chaos_limit_data_downstream_2",
    ]
    kinds = [e["kind"] for e in events if "connection" in e and e["kind"] != "data"]
    assert kinds[:3] == ["accepted", "upstream_connected", "toxics_active"]
    assert "closed" in kinds
    assert {e["connection"] for e in failed["events"] if "connection" in e} == {2}
    assert all(e["offset"] >= 0 for e in failed["events"])
    assert tests["test_reported.py::test_with_the_fixture_only"]["faults"] == []

    properties = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(suite.path / "junit.xml").getroot().iter("testcase")
    }
    assert properties["test_without_chaos"] == {}
    for nodeid, record in tests.items():
        assert json.loads(properties[nodeid.partition("::")[2]]["chaos"]) == record
    result.assert_outcomes(passed=3, failed=1)


def test_random_seed_and_ini_twins(suite: pytest.Pytester, echo: str) -> None:
    suite.makepyfile(test_reported=REPORTED)
    first = suite.runpytest_inprocess("-k", "passes")
    first.stdout.fnmatch_lines(
        ["chaos: backend=embedded seed=*", "chaos: 1 fault injected in 1 test (backend embedded*"]
    )
    header = next(line for line in first.outlines if line.startswith("chaos: backend="))
    seed = int(header.rpartition("=")[2])
    first.stdout.fnmatch_lines(
        [f"chaos: 1 fault injected in 1 test (backend embedded, seed {seed})"]
    )
    first.assert_outcomes(passed=1, deselected=3)

    make_ini(
        suite,
        f"chaos_seed = 99\nchaos_report = from-ini.json\nchaos_proxies =\n    echo = {echo}",
    )
    second = suite.runpytest_inprocess("-k", "passes or fixture_only")
    second.stdout.fnmatch_lines(
        [
            "chaos: backend=embedded seed=99",
            "chaos: 1 fault injected in 2 tests (backend embedded, seed 99)",
        ]
    )
    report = json.loads((suite.path / "from-ini.json").read_text())
    assert (report["seed"], len(report["tests"])) == (99, 2)
    # The command line wins over the ini file.
    third = suite.runpytest_inprocess("-k", "without", "--chaos-seed", "5")
    third.stdout.fnmatch_lines(["chaos: backend=embedded seed=5"])
    third.stdout.no_fnmatch_line("chaos: * injected *")
    assert json.loads((suite.path / "from-ini.json").read_text()) == {
        "seed": 5,
        "backend": "embedded",
        "tests": [],
    }
    third.assert_outcomes(passed=1, deselected=3)
    second.assert_outcomes(passed=2, deselected=2)


def test_a_failing_test_that_injected_and_saw_nothing_gets_no_timeline(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        test_quiet="""
        def test_fails_quietly(chaos):
            assert 1 == 2, "nothing to do with chaos"
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E       AssertionError: nothing to do with chaos"])
    assert not any("chaos timeline" in line for line in result.outlines)
