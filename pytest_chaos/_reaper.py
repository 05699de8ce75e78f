"""The watchdog behind `_docker.ensure_session()`: `python -m pytest_chaos._reaper PID LABEL`.

Started once per process, in its own session (a Ctrl-C meant for pytest does not reach it),
by the process PID that starts containers labelled LABEL (`key=value`): services' and the
Toxiproxy backend's. It waits for PID to exit, however it exits (normally, Ctrl-C, SIGKILL,
a crash), then removes every container carrying LABEL, and exits. After a normal exit the
atexit handler of PID has already removed them, and there is nothing left to do.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

from pytest_chaos._docker import remove_containers

POLL_SECONDS = 0.2
# A container whose creation was in flight when PID died appears a moment later.
SECOND_SWEEP_AFTER_SECONDS = 2.0
USAGE = "usage: python -m pytest_chaos._reaper PID LABEL (LABEL is key=value)"


def wait_for_exit(pid: int) -> None:
    """Return once `pid` has exited: a pidfd when the kernel has them, else polling whether we
    were handed over to another parent (immune to pid reuse)."""
    if os.getppid() != pid:
        return  # it died before we looked: we were handed over already
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            select.select([pidfd], [], [])
        finally:
            os.close(pidfd)
        return
    while os.getppid() == pid:
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit() or "=" not in argv[1]:
        print(USAGE, file=sys.stderr)
        return 2
    pid, label = int(argv[0]), argv[1]
    # The terminal's Ctrl-C goes to pytest's process group; a stray one must not stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wait_for_exit(pid)
    for sweep in range(2):
        if sweep:
            time.sleep(SECOND_SWEEP_AFTER_SECONDS)
        with contextlib.suppress(Exception):
            remove_containers(label)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
