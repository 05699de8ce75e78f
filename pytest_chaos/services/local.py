"""Local servers: a binary from PATH on a free loopback port in a temporary directory.

Nothing outlives the session: each server leads its own process group (its descendants are
found through /proc as well, since PostgreSQL backends start their own sessions), the kernel
SIGKILLs it if the process that started it dies (PR_SET_PDEATHSIG, Linux; note that this
follows the *thread* that started it: servers are therefore always started from the main
thread or from one long-lived spawner thread, never from a short-lived caller's), and an
atexit handler kills whatever is still running at interpreter exit (including after Ctrl-C).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from pytest_chaos._ports import free_port, port_is_free
from pytest_chaos.services.base import BinaryNotFound, Service, ServiceError
from pytest_chaos.services.recipes import Recipe

POLL_INTERVAL_SECONDS = 0.02
PORT_ATTEMPTS = 3
PR_SET_PDEATHSIG = 1
LOG_TAIL_LINES = 15


class LocalProcess(Service):
    """A local server run from `recipe` on a free loopback port (or `port`) in a temporary
    directory. The port and `data_dir` are kept by `stop()`/`start()`/`restart()`; `close()`
    stops the server and removes the directory."""

    provider = "local"

    def __init__(self, recipe: Recipe, *, name: str | None = None, port: int | None = None) -> None:
        self.recipe = recipe
        self.name = name or recipe.name
        self.host = "127.0.0.1"
        self.port = port or 0
        self._fixed_port = port is not None
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False
        self._initialised = False
        self._account: pwd.struct_passwd | None = None
        self._log_start = 0

    # ---------------------------------------------------------------------------- properties
    @property
    def data_dir(self) -> Path:
        if self.directory is None:
            raise ServiceError(self.name, "has no data directory: it was never started")
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        if self.directory is None:
            raise ServiceError(self.name, "has no log: it was never started")
        return self.directory / "server.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ---------------------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Start the server and wait until its readiness check passes. On failure nothing is
        left running; a port chosen by us that someone took first is replaced (up to 3 times)."""
        if self.running:
            raise ServiceError(self.name, f"already running (pid {self.pid}) at {self.address}")
        fresh = self.directory is None
        try:
            self._start()
        except BaseException:
            if fresh:  # a first start that failed leaves nothing behind, not even its directory
                self.close()
            raise
        return self

    def _start(self) -> None:
        command = [self._binary(self.recipe.command[0]), *self.recipe.command[1:]]
        init = [[self._binary(step[0]), *step[1:]] for step in self.recipe.init]
        self._prepare_directory()
        if not self._initialised:
            for step in init:
                self._run_init(step)
            self._initialised = True
        for attempt in range(PORT_ATTEMPTS):
            if not self.port or (attempt and not self._fixed_port):
                self.port = free_port(self.host)
            if not port_is_free(self.host, self.port):
                if self._fixed_port or attempt + 1 == PORT_ATTEMPTS:
                    raise ServiceError(
                        self.name, f"port {self.port} on {self.host} is already in use"
                    )
                continue
            try:
                self._spawn_and_wait(command)
            except _PortTaken:
                if self._fixed_port or attempt + 1 == PORT_ATTEMPTS:
                    raise ServiceError(
                        self.name, f"port {self.port} on {self.host} is already in use"
                    ) from None
                continue
            return
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Graceful stop with the recipe's stop signal; SIGKILL after `stop_timeout`."""
        self._shutdown("stop", self.recipe.stop_signal)

    def terminate(self) -> None:
        """SIGTERM, then wait for the exit (SIGKILL after `stop_timeout`)."""
        self._shutdown("terminate", signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the server and everything it started; returns once it is dead."""
        process = self._require_running("kill")
        self._signal_tree(process.pid, signal.SIGKILL)
        process.wait()
        self.paused = False
        _LIVE.discard(self)

    def pause(self) -> None:
        """SIGSTOP the server and its children: connections stay open, nothing answers."""
        process = self._require_running("pause")
        self._signal_tree(process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT what `pause()` froze."""
        process = self._require_running("resume")
        self._signal_tree(process.pid, signal.SIGCONT, parent_last=True)
        self.paused = False

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same data directory."""
        if self.running:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server (killing it if it does not stop in time) and remove its directory."""
        if self.running:
            self.stop()
        _LIVE.discard(self)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self._initialised = False

    # ---------------------------------------------------------------------------- internals
    def _require_running(self, operation: str) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            raise ServiceError(self.name, f"cannot {operation}(): it is not running")
        return self.process

    def _shutdown(self, operation: str, stop_signal: signal.Signals) -> None:
        process = self._require_running(operation)
        descendants = _descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(stop_signal)
        if self.paused:  # a stopped process handles its signal only once continued
            self._signal_tree(process.pid, signal.SIGCONT, parent_last=True)
            self.paused = False
        try:
            process.wait(timeout=self.recipe.stop_timeout)
        except subprocess.TimeoutExpired:
            self._signal_tree(process.pid, signal.SIGKILL)
            process.wait()
        _signal_processes(descendants, signal.SIGKILL)  # children that outlived their parent
        _wait_gone(descendants, self.recipe.stop_timeout)
        _LIVE.discard(self)

    def _signal_tree(self, pid: int, sig: signal.Signals, *, parent_last: bool = False) -> None:
        """Signal the process group led by `pid` and every descendant (PostgreSQL backends
        lead their own sessions, so the group alone does not reach them). Descendants are
        listed before the leader is signalled: once it dies they belong to init."""
        descendants = _descendants(pid)
        if not parent_last:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            descendants += _descendants(pid)  # forked while we looked
        _signal_processes(descendants, sig)
        if sig == signal.SIGKILL:
            _wait_gone(descendants, self.recipe.stop_timeout)
        if parent_last:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)

    def _binary(self, name: str) -> str:
        found = shutil.which(name)
        if found is None and self.recipe.search_path:
            for pattern in self.recipe.search_path:
                for directory in sorted(glob.glob(pattern), key=_version_key, reverse=True):
                    found = shutil.which(name, path=directory)
                    if found is not None:
                        return found
        if found is None:
            where = (
                " nor in " + ", ".join(self.recipe.search_path) if self.recipe.search_path else ""
            )
            raise BinaryNotFound(self.name, f"binary {name!r} is not on PATH{where}")
        return found

    def _prepare_directory(self) -> None:
        if self.directory is not None:
            return
        if self.recipe.refuses_root and os.geteuid() == 0:
            self._account = _unprivileged_account(self.name)
        self.directory = Path(tempfile.mkdtemp(prefix=f"pytest-chaos-{self.name}-"))
        if self._account is None:
            (self.directory / "data").mkdir()
        else:
            os.chown(self.directory, self._account.pw_uid, self._account.pw_gid)
            # initdb wants to create the data directory itself, or to find it empty and its own
            (self.directory / "data").mkdir(mode=0o700)
            os.chown(self.directory / "data", self._account.pw_uid, self._account.pw_gid)

    def _format(self, argv: Sequence[str]) -> list[str]:
        assert self.directory is not None
        values = {
            "host": self.host,
            "port": self.port,
            "data_dir": self.directory / "data",
            "directory": self.directory,
        }
        return [part.format(**values) for part in argv]

    def _run_init(self, argv: list[str]) -> None:
        try:
            done = subprocess.run(
                self._format(argv),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
                timeout=self.recipe.ready_timeout * 3,
                env=self._env(),
                start_new_session=True,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        except subprocess.TimeoutExpired:
            raise ServiceError(self.name, f"{Path(argv[0]).name} did not finish in time") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            raise ServiceError(
                self.name, f"{Path(argv[0]).name} failed with code {done.returncode}:\n{output}"
            )

    @property
    def _uid(self) -> int | None:
        return None if self._account is None else self._account.pw_uid

    @property
    def _gid(self) -> int | None:
        return None if self._account is None else self._account.pw_gid

    @property
    def _groups(self) -> list[int] | None:
        return None if self._account is None else []

    def _env(self) -> dict[str, str] | None:
        return {**os.environ, **self.recipe.env} if self.recipe.env else None

    def _spawn_and_wait(self, command: list[str]) -> None:
        log = self.log_path.open("ab")
        self._log_start = log.tell()  # failures quote this start's lines, not earlier ones
        try:
            process = _popen(
                self._format(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                # Its own process group: a Ctrl-C reaches pytest only, which stops the server.
                start_new_session=True,
                preexec_fn=_die_with_parent,
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        except OSError as error:
            raise ServiceError(self.name, f"cannot run {command[0]}: {error}") from None
        finally:
            log.close()
        self.process, self.paused = process, False
        _LIVE.add(self)
        deadline = time.monotonic() + self.recipe.ready_timeout
        while True:
            try:
                ready = self.recipe.ready(self)
            except Exception:
                ready = False
            if ready:
                return
            if process.poll() is not None:
                tail = self._log_tail()
                _LIVE.discard(self)
                if "in use" in tail.lower():
                    raise _PortTaken
                raise ServiceError(
                    self.name,
                    f"exited with code {process.returncode} before it was ready; log:\n{tail}",
                )
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    self.name,
                    f"not ready after {self.recipe.ready_timeout:g}s: the readiness check "
                    f"never passed; log:\n{self._log_tail()}",
                )
            time.sleep(POLL_INTERVAL_SECONDS)

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty)"


class _PortTaken(Exception):
    pass


# ------------------------------------------------------------------------------------ helpers
def _version_key(path: str) -> tuple[int, ...]:
    parent = Path(path).parent.name
    return tuple(int(part) for part in parent.split(".") if part.isdigit())


def _stat(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> list[tuple[int, bytes]]:
    """Every live descendant of `pid` as (pid, start time), from /proc (empty without it)."""
    children: dict[int, list[tuple[int, bytes]]] = {}
    for entry in glob.glob("/proc/[0-9]*"):
        number = entry.rsplit("/", 1)[1]
        fields = _stat(number)
        if fields is not None and len(fields) > 19:
            children.setdefault(int(fields[1]), []).append((int(number), fields[19]))
    found: list[tuple[int, bytes]] = []
    pending = list(children.get(pid, []))
    while pending:
        child, started = pending.pop()
        found.append((child, started))
        pending.extend(children.get(child, []))
    return found


def _is_running(pid: int, started: bytes) -> bool:
    """`pid` is still the process that started at `started`, and not a zombie."""
    fields = _stat(pid)
    return fields is not None and len(fields) > 19 and fields[19] == started and fields[0] != b"Z"


def _wait_gone(processes: Sequence[tuple[int, bytes]], timeout: float) -> None:
    """Until every process has exited (a SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    for pid, started in processes:
        while _is_running(pid, started) and time.monotonic() < deadline:
            time.sleep(0.005)


def _signal_processes(processes: Sequence[tuple[int, bytes]], sig: signal.Signals) -> None:
    """Signal each (pid, start time) that is still that process (not a reused pid)."""
    for pid, started in dict.fromkeys(processes):
        if _is_running(pid, started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _unprivileged_account(service: str) -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceError(service, "refuses to run as root, and there is no postgres or nobody user")


def _popen(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen, from a thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the thread that forked the child ends, not the process: a
    server started by a test's worker thread (a restart while a workload runs) would be
    killed as soon as that thread returned. The main thread forks directly; other threads
    hand the fork to one spawner thread that lives until interpreter exit.
    """

    def fork() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, **options)

    if threading.current_thread() is threading.main_thread():
        return fork()
    global _spawner
    with _SPAWNER_LOCK:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(1, thread_name_prefix="pytest-chaos-spawner")
    return _spawner.submit(fork).result()


_spawner: ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


def _die_with_parent() -> None:
    """In the child before exec: have the kernel SIGKILL it if pytest dies without cleaning up
    (SIGKILL, a crash). Runs after the switch of user, which would clear the setting."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


# Every local server still running; killed at interpreter exit if nothing stopped it before.
_LIVE: set[LocalProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            if service.running:
                service.kill()
            service.close()
