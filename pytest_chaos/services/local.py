"""Local servers: a binary from PATH on a free loopback port in a temporary directory.

Nothing outlives the session: each server is started by `_process.spawn()` (its own session,
killed by the kernel if the process that started it dies), stopped with its whole process tree
(PostgreSQL's backends start sessions of their own), and an atexit handler kills whatever is
still running at interpreter exit (including after Ctrl-C).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from pytest_chaos import _process
from pytest_chaos._ports import free_port, port_is_free
from pytest_chaos.services.base import BinaryNotFound, Service, ServiceError
from pytest_chaos.services.recipes import Recipe

POLL_INTERVAL_SECONDS = 0.02
PORT_ATTEMPTS = 3


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
        self.process: subprocess.Popen[Any] | None = None
        self.paused = False
        self._initialised = False
        self._account: pwd.struct_passwd | None = None
        self._log_start = 0

    # ---------------------------------------------------------------------------- properties
    @property
    def data_dir(self) -> Path:
        """The server's data directory, kept across stops and restarts."""
        if self.directory is None:
            raise ServiceError(self.name, "has no data directory: it was never started")
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        """The file the server's output goes to."""
        if self.directory is None:
            raise ServiceError(self.name, "has no log: it was never started")
        return self.directory / "server.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
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
        _process.kill(process, self.recipe.stop_timeout)
        self.paused = False
        _LIVE.discard(self)

    def pause(self) -> None:
        """SIGSTOP the server and its children: connections stay open, nothing answers."""
        process = self._require_running("pause")
        _process.signal_tree(process, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT what `pause()` froze."""
        process = self._require_running("resume")
        _process.signal_tree(process, signal.SIGCONT, leader_last=True)
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
    def _require_running(self, operation: str) -> subprocess.Popen[Any]:
        if self.process is None or self.process.poll() is not None:
            raise ServiceError(self.name, f"cannot {operation}(): it is not running")
        return self.process

    def _shutdown(self, operation: str, stop_signal: signal.Signals) -> None:
        process = self._require_running(operation)
        # A stopped process handles its signal only once continued.
        _process.stop(process, stop_signal, self.recipe.stop_timeout, thaw=self.paused)
        self.paused = False
        _LIVE.discard(self)

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
        # Failures quote this start's lines of the log, not earlier ones.
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            process = _process.spawn(
                self._format(command),
                log=self.log_path,
                env=self._env(),
                user=self._uid,
                group=self._gid,
                extra_groups=self._groups,
            )
        except OSError as error:
            raise ServiceError(self.name, f"cannot run {command[0]}: {error}") from None
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
        tail = _process.log_tail(self.log_path, start=self._log_start)
        if tail is None:
            return "(no log)"
        return tail or "(empty)"


class _PortTaken(Exception):
    pass


# ------------------------------------------------------------------------------------ helpers
def _version_key(path: str) -> tuple[int, ...]:
    parent = Path(path).parent.name
    return tuple(int(part) for part in parent.split(".") if part.isdigit())


def _unprivileged_account(service: str) -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServiceError(service, "refuses to run as root, and there is no postgres or nobody user")


# Every local server still running; killed at interpreter exit if nothing stopped it before.
_LIVE: set[LocalProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            if service.running:
                service.kill()
            service.close()
