"""Child processes that never outlive us: the embedded engine, local services, the benchmarks'
processes.

`spawn()` starts a child in its own session (a Ctrl-C meant for pytest reaches pytest only,
which then stops its children in order), its output appended to a log file if asked, and has
the kernel SIGKILL it if the spawning process dies without cleaning up (PR_SET_PDEATHSIG,
Linux). That signal follows the *thread* that forked the child, not the process: children are
therefore forked from the main thread, or from one spawner thread that lives as long as the
process, never from a short-lived caller's thread (a restart from a workload's thread).

`stop()`, `kill()` and `signal_tree()` act on the child's whole tree: its process group and
every descendant, since some leave the group (PostgreSQL's backends start sessions of their
own). Descendants are found with psutil, whose process objects are safe from pid reuse, and
which is imported only by the functions that walk the tree: spawning, and stopping a child
that starts nothing (`tree=False`), stay as cheap as subprocess itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import psutil

LOG_TAIL_LINES = 15
LOG_TAIL_BYTES = 64 * 1024  # the end of a long log is all a tail needs to read
GONE_POLL_SECONDS = 0.005
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


# ------------------------------------------------------------------------------- spawning
def spawn(
    argv: Sequence[str],
    *,
    log: Path | None = None,
    die_with_parent: bool = True,
    tree: bool = True,
    **options: Any,
) -> subprocess.Popen[Any]:
    """Start `argv` as the leader of a new session, stdin from /dev/null unless `options` say
    otherwise; `options` are subprocess.Popen's (env, cwd, user, stdout...).

    With `log`, stdout and stderr are appended to that file (a pipe nobody reads would block
    the child once full). With `die_with_parent`, the kernel SIGKILLs the child when this
    process dies (Linux; elsewhere the caller's own clean-up is all there is). `tree=False`
    says the child will be stopped with `stop(..., tree=False)`; otherwise psutil is imported
    now, so that stopping the tree later, even from an exit handler, imports nothing (an
    import while the interpreter exits makes Python forget that a Ctrl-C ended it: exit
    status 1 instead of SIGINT's).
    """
    if tree:
        import psutil  # noqa: F401

    options.setdefault("stdin", subprocess.DEVNULL)
    if die_with_parent and sys.platform.startswith("linux"):
        options["preexec_fn"] = _die_with(os.getpid(), options.get("preexec_fn"))
    if log is None:
        return _fork(lambda: subprocess.Popen(argv, start_new_session=True, **options))
    with log.open("ab") as output:
        options.update(stdout=output, stderr=subprocess.STDOUT)
        return _fork(lambda: subprocess.Popen(argv, start_new_session=True, **options))


def _fork(start: Callable[[], subprocess.Popen[Any]]) -> subprocess.Popen[Any]:
    """`start()` on the main thread, or on the spawner thread (see the module's docstring)."""
    if threading.current_thread() is threading.main_thread():
        return start()
    global _spawner
    with _SPAWNER_LOCK:
        if _spawner is None:
            from concurrent.futures import ThreadPoolExecutor

            _spawner = ThreadPoolExecutor(1, thread_name_prefix="pytest-chaos-spawner")
    return _spawner.submit(start).result()


def _die_with(parent: int, then: Callable[[], object] | None) -> Callable[[], None]:
    """The child's last step before exec: ask for SIGKILL when `parent` dies. It runs after
    subprocess switched user and group, which would have cleared the setting."""
    prctl = _prctl()  # looked up here: the child must not load libraries between fork and exec

    def in_the_child() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request: nobody will ask
            os.kill(os.getpid(), signal.SIGKILL)
        if then is not None:
            then()

    return in_the_child


def _prctl() -> Callable[..., int]:
    global _prctl_function
    if _prctl_function is None:
        import ctypes

        _prctl_function = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl_function


_prctl_function: Callable[..., int] | None = None
_spawner: ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


# ------------------------------------------------------------------------- process trees
def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of `pid` (empty when it is gone)."""
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def signal_tree(
    process: subprocess.Popen[Any],
    sig: signal.Signals,
    *,
    leader_last: bool = False,
    timeout: float = 5.0,
) -> None:
    """Send `sig` to the process group `process` leads and to every descendant of it.

    Descendants are listed before the leader is signalled: once it dies they belong to init
    and can no longer be found. `leader_last` signals them first (SIGCONT: the leader finds
    its children running when it runs again). After SIGKILL, returns once they are all gone
    (at most `timeout` seconds).
    """
    if process.poll() is not None:
        return  # reaped: its pid, and so its group and children, may be another's now
    found = descendants(process.pid)
    if not leader_last:
        _signal_group(process, sig)
        found += descendants(process.pid)  # forked while we looked
    _signal_each(found, sig)
    if sig == signal.SIGKILL:
        wait_gone(found, timeout)
    if leader_last:
        _signal_group(process, sig)


def stop(
    process: subprocess.Popen[Any],
    sig: signal.Signals = signal.SIGTERM,
    timeout: float = 5.0,
    *,
    group: bool = False,
    thaw: bool = False,
    tree: bool = True,
) -> int:
    """Stop `process` and what it started; its exit status (Popen's returncode).

    `sig` goes to the leader (to its whole group with `group`), which gets `timeout` seconds
    to exit before its tree is SIGKILLed; descendants that outlive it are SIGKILLed too. With
    `thaw`, SIGCONT follows `sig` (a stopped process handles signals once continued). Returns
    once every process of the tree is gone. `tree=False` is for a child that starts no
    process of its own: only its group is signalled, and psutil is not imported.
    """
    if process.poll() is not None:
        return process.returncode  # reaped: its pid, and its descendants, are not ours now
    found = descendants(process.pid) if tree else []
    if group:
        _signal_group(process, sig)
    else:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
    if thaw:
        if tree:
            signal_tree(process, signal.SIGCONT, leader_last=True)
        else:
            _signal_group(process, signal.SIGCONT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if tree:
            signal_tree(process, signal.SIGKILL, timeout=timeout)
        else:
            _signal_group(process, signal.SIGKILL)
        process.wait()
    if found:
        _signal_each(found, signal.SIGKILL)  # children that outlived their parent
        wait_gone(found, timeout)
    return process.returncode


def kill(process: subprocess.Popen[Any], timeout: float = 5.0) -> int:
    """SIGKILL `process` and its whole tree; returns, with its exit status, once all are gone
    (at most `timeout` seconds for the descendants)."""
    signal_tree(process, signal.SIGKILL, timeout=timeout)
    return process.wait()


def wait_gone(processes: Sequence[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """Wait until each process has exited (a signal is delivered asynchronously), at most
    `timeout` seconds; those still there. A zombie counts as gone: it is dead, and only its
    parent, not us, can reap it."""
    deadline = time.monotonic() + timeout
    alive = list(processes)
    while alive:
        alive = [each for each in alive if _is_alive(each)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(GONE_POLL_SECONDS)
    return alive


def _is_alive(process: psutil.Process) -> bool:
    import psutil

    try:
        # is_running() is False once the pid belongs to another process.
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group(process: subprocess.Popen[Any], sig: signal.Signals) -> None:
    # Only while the leader is unreaped: afterwards its pid, and so the group's id, could
    # belong to another process.
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


def _signal_each(processes: Sequence[psutil.Process], sig: signal.Signals) -> None:
    import psutil

    for each in dict.fromkeys(processes):  # psutil refuses a pid now used by another process
        with contextlib.suppress(psutil.Error):
            each.send_signal(sig)


# --------------------------------------------------------------------------------- status
def describe_exit(returncode: int) -> str:
    """ "exited with code 3", "killed by SIGKILL": a Popen returncode in words."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"


def log_tail(path: Path, *, start: int = 0, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last `lines` lines of the log at `path`, from byte `start` on (what one run of a
    server wrote to a log it appends to); None when it cannot be read."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(start, size - LOG_TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    return "\n".join(text.splitlines()[-lines:])
