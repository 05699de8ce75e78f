"""The embedded engine as a child process (`python -m pytest_chaos serve`).

A process rather than a thread: a latency fault must stay accurate while the test process is
busy running Python, and a proxy sharing the test's GIL cannot promise that. The plugin
launches it as soon as it knows a test needs it, before importing anything heavy, so by the
time the fixture asks it is usually ready. This module imports nothing beyond the standard
library for that reason.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
from typing import IO

from pytest_chaos.backends import BackendError

READY_TIMEOUT_SECONDS = 20.0
URL_PATTERN = re.compile(r"http://[0-9.]+:\d+")


class EngineProcess:
    """The embedded engine as a child process on a free port."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._process: subprocess.Popen[str] | None = None
        self.url: str | None = None

    def launch(self) -> None:
        """Start the process without waiting for it (see `wait_ready`)."""
        if self._process is not None:
            return
        command = [
            sys.executable,
            "-m",
            "pytest_chaos",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(self.seed),
            "--exit-with-parent",
        ]
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_engine_environment(),
            # Its own process group: a Ctrl-C meant for pytest must not kill it mid-teardown.
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> str:
        self.launch()
        if self.url is not None:
            return self.url
        process = self._process
        assert process is not None
        assert process.stdout is not None
        line = _read_line(process.stdout, timeout)
        match = URL_PATTERN.search(line or "")
        if match is None:
            self.stop()
            detail = process.stderr.read().strip() if process.stderr else ""
            raise BackendError(
                "the embedded engine did not start"
                + (f": {detail}" if detail else f" within {timeout:.0f}s")
            )
        self.url = match.group(0)
        return self.url

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _read_line(stream: IO[str], timeout: float) -> str | None:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    return stream.readline()


def _engine_environment() -> dict[str, str]:
    env = dict(os.environ)
    # The engine speaks plain HTTP and raw TCP, yet importing aiohttp builds TLS contexts and
    # loads the system's CA store (~40 ms of start-up). An empty store makes that free.
    env["SSL_CERT_FILE"] = os.devnull
    env["SSL_CERT_DIR"] = os.devnull
    return env
