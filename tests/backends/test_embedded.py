"""The embedded engine's process (`EngineProcess`), for real: a log that grows without limit,
an engine that cannot start, and one that dies mid-run, each explained with its exit status
and the end of its log; and nothing left behind."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from pytest_chaos.backends import BackendError
from pytest_chaos.backends.embedded import EngineProcess

# A request line the engine's HTTP server rejects and logs, with its traceback, as an error
# (about 600 bytes of log each).
BAD_REQUEST = b"GET /version HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
PIPE_BUFFER = 64 * 1024  # what a pipe holds before its writer blocks


@pytest.fixture
def engine() -> Iterator[EngineProcess]:
    process = EngineProcess(seed=1)
    try:
        yield process
    finally:
        process.stop()


def kept_log(message: str) -> Path:
    """The log a message says was kept; removed by the caller once checked."""
    found = re.search(r"its log, kept at (\S+),", message)
    assert found is not None, message
    return Path(found.group(1))


def running(pid: int) -> bool:
    """`pid` is alive (a zombie is dead: only its parent can reap it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def send_bad_request(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(BAD_REQUEST)
        return sock.recv(100)


def test_an_engine_that_logs_more_than_a_pipe_holds_still_answers(
    engine: EngineProcess,
) -> None:
    url = engine.wait_ready()
    host, port = url.removeprefix("http://").split(":")
    for _ in range(3 * PIPE_BUFFER // 500):
        assert send_bad_request((host, int(port))).startswith(b"HTTP/1.0 400 Bad Request")
    with httpx.Client(timeout=5, trust_env=False) as http:
        assert http.get(f"{url}/version").status_code == 200
    log = engine.log_path.read_text()
    assert len(log) > 2 * PIPE_BUFFER
    assert log.count("Error handling request") >= 3 * PIPE_BUFFER // 500
    assert engine.diagnose() is None  # running


def test_the_log_is_removed_with_an_engine_stopped_in_order() -> None:
    process = EngineProcess(seed=1)
    process.wait_ready()
    directory = process.log_path.parent
    assert directory.is_dir()
    process.stop()
    assert not directory.exists()
    assert process.diagnose() == "the embedded engine has been stopped (the session is over)"


def test_an_engine_that_cannot_start_says_why_with_its_exit_status_and_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An aiohttp that cannot be imported, first on the engine's path.
    (tmp_path / "aiohttp").mkdir()
    (tmp_path / "aiohttp" / "__init__.py").write_text("raise ImportError('aiohttp is broken')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    process = EngineProcess(seed=1)
    started = time.monotonic()
    try:
        with pytest.raises(BackendError) as raised:
            process.wait_ready()
    finally:
        process.stop()
    assert time.monotonic() - started < 15  # not the whole start timeout
    message = str(raised.value)
    log = kept_log(message)
    try:
        headline, *tail = message.splitlines()
        assert headline == (
            "the embedded engine did not start: it exited with code 1 before printing its"
            f" address; its log, kept at {log}, ends with:"
        )
        assert tail[-1] == "ImportError: aiohttp is broken"
        assert "Traceback (most recent call last):" in tail
        assert log.read_text().rstrip().endswith("ImportError: aiohttp is broken")
    finally:
        shutil.rmtree(log.parent)


def test_an_engine_that_died_is_explained_with_its_exit_status_and_log(
    engine: EngineProcess,
) -> None:
    url = engine.wait_ready()
    assert engine.diagnose() is None
    # The engine's own log line is written by its logging thread: wait for it, so that the
    # log's end is known when the engine is killed.
    deadline = time.monotonic() + 10
    while " INFO " not in engine.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(engine.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (explanation := engine.diagnose()) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert explanation is not None
    log = kept_log(explanation)
    try:
        headline, *tail = explanation.splitlines()
        assert headline == (
            f"the embedded engine died (killed by SIGKILL); its log, kept at {log}, ends with:"
        )
        # The ready line (stdout) and the engine's own log line (stderr, timestamped) share
        # the file, in whichever order the two streams reached it.
        assert f"pytest-chaos engine 0.1.0 listening on {url} (seed 1)" in tail
        logged = [line for line in tail if " INFO pytest_chaos.engine: " in line]
        assert [line.split(" ", 1)[1] for line in logged] == [
            f"INFO pytest_chaos.engine: listening on {url} (seed 1)"
        ]
        assert len(tail) == 2
    finally:
        engine.stop()
        shutil.rmtree(log.parent)


OWNER = """
import os, signal, sys
from pytest_chaos.backends.embedded import EngineProcess

engine = EngineProcess(seed=1)
engine.launch()
# Launching must stay cheap: no process-tree library for a process that makes no tree.
print("psutil" in sys.modules, flush=True)
engine.wait_ready()
print(engine.pid, engine.log_path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of ours runs
"""


def test_the_engine_dies_with_a_killed_owner_and_its_launch_imports_no_psutil() -> None:
    owner = subprocess.run(
        [sys.executable, "-c", OWNER], capture_output=True, text=True, check=False, timeout=60
    )
    assert owner.returncode == -signal.SIGKILL, owner.stderr
    imported, pid_and_log = owner.stdout.splitlines()
    assert imported == "False"
    pid, log = pid_and_log.split()
    shutil.rmtree(Path(log).parent)  # no exit handler ran: only the process is the kernel's
    deadline = time.monotonic() + 10
    while running(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running(int(pid))
