"""The engine as `pytest-chaos serve` in a subprocess: started on a free port, waited for by its
ready line (never a sleep), killed when the block ends."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pytest_chaos import __version__

COMMANDS = {
    "module": [sys.executable, "-m", "pytest_chaos", "serve"],
    "script": [str(Path(sys.executable).with_name("pytest-chaos")), "serve"],
}
READY_LINE = re.compile(
    rf"pytest-chaos engine {re.escape(__version__)} listening on "
    r"(?P<url>http://127\.0\.0\.1:(?P<port>[1-9]\d*)) \(seed (?P<seed>\w+)\)\n"
)
STARTUP_SECONDS = 20.0
EXIT_SECONDS = 10.0


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    ready_line: str
    url: str
    port: int
    seed: str


def read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line of the process's stdout, or what it printed before exiting."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no ready line after {timeout}s; got {data!r}")
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    return data.decode()


@contextmanager
def serve(*args: str, command: str = "module") -> Iterator[Served]:
    """Run the server until the block ends; it is killed if still running then."""
    with subprocess.Popen(
        [*COMMANDS[command], *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as process:
        try:
            line = read_line(process, STARTUP_SECONDS)
            match = READY_LINE.fullmatch(line)
            if match is None:
                process.kill()
                _, stderr = process.communicate(timeout=EXIT_SECONDS)
                raise AssertionError(f"unexpected ready line {line!r}; stderr: {stderr!r}")
            yield Served(process, line, match["url"], int(match["port"]), match["seed"])
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=EXIT_SECONDS)
