"""A seed means the same for one test run alone and for that test inside the whole suite:
draws depend on the seed, the test and the proxy, never on the tests before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_chaos.seeds import replay_command, test_seed
from tests.plugin.conftest import dedent

# `test_rolls` records, for 24 connections through a latency toxic of toxicity 0.5, whether
# the toxic acted on each: the engine's toxicity rolls, read from its events.
ROLLS = dedent(
    """
    import json
    import os

    import pytest

    from netcheck import talk


    def test_before(echo, chaos):
        # Connections and toxics that shift any session-wide numbering.
        with chaos.latency("echo", 1, toxicity=0.5):
            for _ in range(7):
                assert talk(echo).outcome == "ok"


    @pytest.mark.latency("echo", 1, toxicity=0.5)
    def test_rolls(echo, chaos):
        for _ in range(24):
            assert talk(echo).outcome == "ok"
        active = {
            e.connection: bool(e.toxics.get("downstream"))
            for e in chaos.events("echo")
            if e.kind == "toxics_active"
        }
        opened = [e.connection for e in chaos.events("echo") if e.kind == "accepted"]
        with open(os.environ["ROLLS_FILE"], "a") as out:
            out.write(json.dumps([active.get(c, False) for c in opened]) + "\\n")
    """
)


def test_one_test_draws_the_same_alone_and_in_the_suite(
    suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(test_rolls=ROLLS)
    outputs = tmp_path / "rolls"
    outputs.mkdir()

    def run(*args: str) -> list[bool]:
        out = outputs / f"{len(list(outputs.iterdir()))}.txt"
        monkeypatch.setenv("ROLLS_FILE", str(out))
        result = suite.runpytest_inprocess(*args)
        result.assert_outcomes(passed=2 if len(args) == 2 else 1)
        (line,) = out.read_text().splitlines()
        seen: list[bool] = json.loads(line)
        assert len(seen) == 24
        return seen

    in_suite = run("--chaos-seed", "5")
    alone = run("test_rolls.py::test_rolls", "--chaos-seed", "5")
    assert alone == in_suite
    assert 0 < sum(alone) < 24  # the rolls really vary from connection to connection
    other_seed = run("test_rolls.py::test_rolls", "--chaos-seed", "6")
    assert other_seed != alone


def test_failing_test_prints_the_command_that_replays_it(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_fails=dedent(
            """
            import pytest


            @pytest.mark.latency("echo", 10)
            def test_fails(chaos):
                assert False
            """
        )
    )
    result = suite.runpytest_inprocess("--chaos-seed", "1234")
    result.stdout.fnmatch_lines(["replay: pytest test_fails.py::test_fails --chaos-seed 1234"])
    result.assert_outcomes(failed=1)


def test_test_seeds_depend_on_the_session_seed_and_the_test_only() -> None:
    assert test_seed(1, "a.py::t") == test_seed(1, "a.py::t")
    assert test_seed(1, "a.py::t") != test_seed(2, "a.py::t")
    assert test_seed(1, "a.py::t") != test_seed(1, "a.py::u")
    assert 0 <= test_seed(99, "x") < 2**63
    assert replay_command("t.py::test[a b]", 7) == "pytest 't.py::test[a b]' --chaos-seed 7"
