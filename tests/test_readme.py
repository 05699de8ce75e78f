"""The README's first chaos test must run as printed (against a Redis of our own)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugin.local_services import redis_server

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def redis_port() -> Iterator[int]:
    with redis_server() as server:
        yield server.port


def test_the_first_chaos_test_in_the_readme_passes(
    pytester: pytest.Pytester, redis_port: int
) -> None:
    block = re.search(r"```python\n# test_cache.py\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "the README lost its first chaos test"
    pytester.makepyfile(test_cache=block.group(1).replace("6379", str(redis_port)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["chaos: 3 faults injected in 3 tests (backend embedded, seed *)"])
