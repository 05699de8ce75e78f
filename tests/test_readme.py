"""The README's first chaos test must run as printed (against a Redis of our own)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

README = Path(__file__).resolve().parent.parent / "README.md"

pytest_plugins = ["pytester"]


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/setup.sh installs it)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_first_chaos_test_in_the_readme_passes(
    pytester: pytest.Pytester, redis_port: int
) -> None:
    block = re.search(r"```python\n# test_cache.py\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "the README lost its first chaos test"
    pytester.makepyfile(test_cache=block.group(1).replace("6379", str(redis_port)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["chaos: 3 faults injected in 3 tests (backend embedded, seed *)"])
