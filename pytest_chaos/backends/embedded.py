"""The embedded engine as a child process (`python -m pytest_chaos serve`).

A process rather than a thread: a latency fault must stay accurate while the test process is
busy running Python, and a proxy sharing the test's GIL cannot promise that. The plugin
launches it as soon as it knows a test needs it, before importing anything heavy, so by the
time the fixture asks it is usually ready. This module imports nothing beyond the standard
library and `_process` for that reason (and `_process` imports psutil only for process trees,
which the engine does not make).

The engine's output (its ready line, then whatever it logs) goes to `engine.log` in a
temporary directory: a pipe that nobody reads would block the engine once full. The
directory is removed when the engine is stopped at the end of the session; when the engine
exits by itself (it could not start, or it died), it is kept, and the error says where.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_chaos import _process
from pytest_chaos.backends import BackendError

READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0
READY_POLL_SECONDS = 0.002  # the log is polled for the ready line: start-up is ~150 ms
URL_PATTERN = re.compile(r"listening on (http://[0-9.]+:\d+)")
LOG_NAME = "engine.log"


def engine_command(seed: int) -> list[str]:
    """The engine's command line: on a free loopback port, seeded with `seed`."""
    return [
        sys.executable,
        "-m",
        "pytest_chaos",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--seed",
        str(seed),
    ]


class EngineProcess:
    """The embedded engine as a child process on a free port, dying with this process (see
    `_process.spawn`); `diagnose()` says why it no longer answers."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.url: str | None = None
        self._process: subprocess.Popen[Any] | None = None
        self._log_path: Path | None = None
        self._stopped = False  # by stop(), while it ran: at the end of the session

    @property
    def pid(self) -> int | None:
        """The engine's process id, once launched."""
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path:
        """The file the engine's stdout and stderr go to (once launched)."""
        if self._log_path is None:
            raise BackendError("the embedded engine has no log: it was never launched")
        return self._log_path

    def launch(self) -> None:
        """Start the process without waiting for it (see `wait_ready`)."""
        if self._process is not None:
            return
        self._log_path = Path(tempfile.mkdtemp(prefix="pytest-chaos-engine-")) / LOG_NAME
        self._process = _process.spawn(
            engine_command(self.seed),
            log=self._log_path,
            env=_engine_environment(),
            tree=False,  # the engine starts no process: psutil stays unimported
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> str:
        """The API's URL once the engine has printed it; BackendError, with the engine's exit
        status and the end of its log, when it exits first or takes longer than `timeout`."""
        self.launch()
        if self.url is None:
            self.url = self._read_url(timeout)
        return self.url

    def diagnose(self) -> str | None:
        """Why the engine does not answer: None while it runs, else how it ended and, if it
        ended by itself, its exit status and the end of its log."""
        if self._process is None:
            return None
        if self._stopped:
            return "the embedded engine has been stopped (the session is over)"
        returncode = self._process.poll()
        if returncode is None:
            return None
        return f"the embedded engine died ({_process.describe_exit(returncode)}); {self._tail()}"

    def stop(self) -> None:
        """SIGTERM, SIGKILL after a few seconds; returns once it has exited. Its log is
        removed, unless it exited by itself (then it is what explains why)."""
        self._end(keep_log=False)

    def _end(self, *, keep_log: bool) -> None:
        process = self._process
        if process is None or self._stopped or process.poll() is not None:
            return
        _process.stop(process, signal.SIGTERM, STOP_TIMEOUT_SECONDS, tree=False)
        self._stopped = not keep_log
        if not keep_log and self._log_path is not None:
            shutil.rmtree(self._log_path.parent, ignore_errors=True)

    def _read_url(self, timeout: float) -> str:
        """The URL in the engine's ready line, read from its log as it is written."""
        process, log_path = self._process, self.log_path
        assert process is not None
        deadline = time.monotonic() + timeout
        line = b""
        with log_path.open("rb") as log:
            while True:
                line += log.readline()
                if line.endswith(b"\n"):
                    found = URL_PATTERN.search(line.decode(errors="replace"))
                    if found is not None:
                        return found.group(1)
                    line = b""  # something else the engine printed first
                elif process.poll() is not None:
                    status = _process.describe_exit(process.returncode)
                    if status.startswith("killed"):
                        status = f"was {status}"
                    why = f"it {status} before printing its address"
                    break
                elif time.monotonic() > deadline:
                    self._end(keep_log=True)
                    why = f"it printed no address within {timeout:g}s"
                    break
                else:
                    time.sleep(READY_POLL_SECONDS)
        raise BackendError(f"the embedded engine did not start: {why}; {self._tail()}")

    def _tail(self) -> str:
        path = self.log_path
        tail = _process.log_tail(path)
        if not tail:
            return f"its log, kept at {path}, is empty"
        return f"its log, kept at {path}, ends with:\n{tail}"


def _engine_environment() -> dict[str, str]:
    env = dict(os.environ)
    # The engine speaks plain HTTP and raw TCP, yet importing aiohttp builds TLS contexts and
    # loads the system's CA store (~40 ms of start-up). An empty store makes that free.
    env["SSL_CERT_FILE"] = os.devnull
    env["SSL_CERT_DIR"] = os.devnull
    return env
