"""The README's fuzzing examples run as printed (against a Redis of our own), and its printed
schedule is what `str()` of that schedule prints."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_chaos.faults import Down, Latency
from pytest_chaos.schedules import Schedule, Step
from tests.plugin.local_services import redis_server

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = README.read_text().split("## Fuzzing faults with Hypothesis")[1].split("\n## ")[0]


def block(first_line: str) -> str:
    found = re.search(rf"```python\n{re.escape(first_line)}\n(.*?)```", SECTION, re.S)
    assert found is not None, f"the README's fuzzing section lost its {first_line!r} example"
    return found.group(1)


@pytest.fixture
def redis_port() -> Iterator[int]:
    with redis_server() as server:
        yield server.port


def test_the_fuzzing_examples_pass_as_printed(pytester: pytest.Pytester, redis_port: int) -> None:
    pytester.makeconftest(block("# conftest.py").replace("6379", str(redis_port)))
    pytester.makepyfile(
        test_fuzz_cache=block("# test_fuzz_cache.py"),
        test_cache_machine=block("# test_cache_machine.py"),
    )
    # As the README says for CI: 25 examples each, the same on every run.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--hypothesis-profile", "chaos-ci"
    )
    result.assert_outcomes(passed=3)


def test_the_printed_schedule_is_what_str_prints() -> None:
    schedule = Schedule(
        [
            Step(Latency("redis", 150), offset=0.1, duration=0.25),
            Step(Down("postgres", mode="reset"), offset=0.2, duration=0.3),
        ],
        seed=7,
    )
    assert f"```\n{schedule}\n```" in SECTION
