"""pytest_chaos._process with real processes: output to a log, whole trees stopped (a
grandchild in a session of its own included), SIGKILL for what ignores the stop signal,
children that die with the process that spawned them but not with the thread."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from pytest_chaos import _process


def gone(pid: int, timeout: float = 10.0) -> bool:
    """`pid` has exited (a zombie counts: only its parent can reap it) within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def wait_for_line(path: Path, timeout: float = 10.0) -> str:
    """The first complete line of a file another process writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if "\n" in text:
            return text.split("\n", 1)[0]
        time.sleep(0.02)
    raise AssertionError(f"nothing written to {path} in {timeout}s")


def test_output_goes_to_the_log_and_its_tail_reads_from_a_start(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("an earlier run\n")
    start = log.stat().st_size
    script = "import sys\nfor n in range(30): print('line', n)\nprint('oops', file=sys.stderr)"
    child = _process.spawn([sys.executable, "-c", script], log=log)
    assert child.wait(timeout=20) == 0
    assert _process.log_tail(log, start=start, lines=3) == "line 28\nline 29\noops"
    assert _process.log_tail(log, lines=100).startswith("an earlier run\nline 0\n")
    assert _process.log_tail(tmp_path / "missing.log") is None


GRANDCHILD = """
import os, sys, time
os.setsid()  # it leaves the group, as PostgreSQL's backends do: only the tree finds it
with open(sys.argv[1], "w") as pids:
    pids.write(f"{os.getpid()}\\n")
time.sleep(600)
"""


def test_stop_ends_the_whole_tree_a_grandchild_in_its_own_session_included(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    grandchild_argv = shlex.join([sys.executable, "-c", GRANDCHILD, str(pids)])
    script = f"{grandchild_argv} & exec sleep 600"
    child = _process.spawn(["sh", "-c", script])
    try:
        grandchild = int(wait_for_line(pids))
        assert psutil.Process(grandchild).ppid() == child.pid
        assert os.getsid(grandchild) != os.getsid(child.pid)
    finally:
        assert _process.stop(child, signal.SIGTERM, timeout=5) == -signal.SIGTERM
    assert gone(grandchild, timeout=0)  # stop() returns once the tree is gone


def test_what_ignores_the_stop_signal_is_killed_after_the_timeout() -> None:
    script = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(1)\n"
    script += "time.sleep(600)"
    child = _process.spawn([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert child.stdout is not None
    child.stdout.readline()  # the handler is in place
    started = time.monotonic()
    assert _process.stop(child, signal.SIGTERM, timeout=0.5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5
    child.stdout.close()


def test_pause_and_resume_a_tree() -> None:
    child = _process.spawn(["sh", "-c", "sleep 600 & exec sleep 600"])
    try:
        deadline = time.monotonic() + 10
        while not _process.descendants(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        tree = [psutil.Process(child.pid), *_process.descendants(child.pid)]
        _process.signal_tree(child, signal.SIGSTOP)
        time.sleep(0.1)
        assert {each.status() for each in tree} == {psutil.STATUS_STOPPED}
        _process.signal_tree(child, signal.SIGCONT, leader_last=True)
        time.sleep(0.1)
        assert psutil.STATUS_STOPPED not in {each.status() for each in tree}
    finally:
        assert _process.kill(child) == -signal.SIGKILL


PARENT = """
import sys, threading, time
from pathlib import Path
from pytest_chaos import _process

def spawn():
    child = _process.spawn(["sleep", "600"])
    Path(sys.argv[1]).write_text(f"{{child.pid}}\\n")

# From a thread that ends at once: PR_SET_PDEATHSIG follows the thread that forks, so the
# spawner thread forks instead, and the child must outlive this thread.
worker = threading.Thread(target=spawn)
worker.start()
worker.join()
time.sleep({linger})
print("alive", flush=True)
time.sleep(600)
"""


def test_a_child_spawned_from_a_short_lived_thread_outlives_it_and_dies_with_the_process(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    script = textwrap.dedent(PARENT.format(linger=0.5))
    with subprocess.Popen(
        [sys.executable, "-c", script, str(pids)], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            assert parent.stdout.readline() == "alive\n"
            child = int(wait_for_line(pids))
            assert not gone(child, timeout=0)  # the thread that asked for it has ended
        finally:
            parent.kill()  # no clean-up of its own: the kernel's signal is all there is
    assert gone(child)


@pytest.mark.parametrize(
    ("returncode", "words"),
    [(0, "exited with code 0"), (3, "exited with code 3"), (-9, "killed by SIGKILL")],
)
def test_describe_exit(returncode: int, words: str) -> None:
    assert _process.describe_exit(returncode) == words
