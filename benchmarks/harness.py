"""What the benchmark scripts share: progress on stderr, the error a failed measurement raises,
statistics, the machine's description, JSON output, generated pytest runs, and supervision of
every process a run starts.

Not a benchmark itself. The scripts next to it run as `python benchmarks/<name>.py` (this
directory is then first on sys.path) or as `python -m benchmarks.<name>` from the project root
(they put this directory on sys.path themselves), and import it as `harness`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# Every process a benchmark starts, and every process those start, inherits this variable;
# the clean-up at the end finds leftovers by it (and only by it).
TOKEN_VAR = "PYTEST_CHAOS_BENCH_TOKEN"
BUSY_WARNING = "  (WARNING: busy machine, figures are noisy)"
STRAY_GRACE = 3.0  # seconds from SIGTERM to SIGKILL for a process found by the token


class BenchError(Exception):
    """A measurement or set-up step failed; the message is meant for the user."""


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ statistics
def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return statistics.median(values) if values else math.nan


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile, q in 0..1 (numpy's default); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ------------------------------------------------------------------------- machine, output
def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo, if it says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def busy_warning(load: float, nproc: int) -> str:
    """A warning to append to the load line when the load average is over half the CPUs."""
    return BUSY_WARNING if load > 0.5 * nproc else ""


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each distribution; None for one that is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


# ------------------------------------------------------------------- process supervision
def is_listening(port: int) -> bool:
    """Check the kernel's socket table rather than connecting.

    A probe connection would count as a failed test run for iperf3's server.
    """
    wanted = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()  # local address is "HEXIP:HEXPORT", state 0A = LISTEN
                if fields[1].rsplit(":", 1)[-1] == wanted and fields[3] == "0A":
                    return True
    return False


def log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[Any], label: str, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{label} exited with code {proc.returncode} while starting")
        if ready():
            return
        time.sleep(0.05)
    raise BenchError(f"{label} was not ready after {timeout:.0f} s")


class Supervisor:
    """Starts every child through pytest_chaos._process: in its own session (a Ctrl-C
    reaches only the benchmark, which then ends its children itself), killed by the kernel if
    the benchmark dies; and ends each child's process group. Descendants that leave the group
    are the token sweep's (TokenSupervisor): a container watchdog must outlive its pytest."""

    end_grace = 3.0  # seconds from SIGTERM to SIGKILL

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        from pytest_chaos import _process

        proc = _process.spawn(argv, tree=False, **kwargs)
        self._procs.append(proc)
        return proc

    def run(
        self, argv: Sequence[str], timeout: float, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run to completion, output captured as text; a timeout ends its process group."""
        options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        proc = self.spawn(argv, **(options | kwargs), text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.end(proc)
            raise BenchError(f"{shlex.join(argv)} did not finish within {timeout:g}s") from None
        except BaseException:
            self.end(proc)
            raise
        self.end(proc)
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

    def end(self, proc: subprocess.Popen[Any]) -> None:
        """SIGTERM to its process group, SIGKILL after `end_grace`; returns once it exited."""
        from pytest_chaos import _process

        _process.stop(proc, signal.SIGTERM, self.end_grace, group=True, tree=False)
        # Its pipes are left to the garbage collector: a thread may still be reading one.
        if proc in self._procs:
            self._procs.remove(proc)

    def end_all(self) -> None:
        # Newest first: clients before the servers they talk to.
        for proc in list(reversed(self._procs)):
            self.end(proc)

    def live_pids(self) -> list[int]:
        return [proc.pid for proc in self._procs if proc.returncode is None]


class TokenSupervisor(Supervisor):
    """Also finds, by the token in their environment, the processes that children left behind
    (a pytest run's engine, a container watchdog) and ends them at the end."""

    patience = 0.0  # seconds that processes with the token get to exit on their own at the end

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def token_processes(self) -> dict[int, list[bytes]]:
        """Processes other than this one that carry this run's token, with their arguments."""
        needle = f"{TOKEN_VAR}={self.token}".encode()
        found: dict[int, list[bytes]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found[int(entry.name)] = cmdline
        return found

    def leftovers(self) -> list[int]:
        return list(self.token_processes())

    def stop_all(self) -> list[str]:
        """End every child, then every process that still carries the token. Returns what had
        to be stopped by force (empty when all went well)."""
        self.end_all()
        deadline = time.monotonic() + self.patience
        while (stray := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not stray:
            return []
        for pid in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STRAY_GRACE
        while any(Path(f"/proc/{pid}").exists() for pid in stray) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        after = f" by {self.patience:g}s" if self.patience else ""
        return [f"{len(stray)} process(es) that outlived their parent{after}"]

    def finish(self) -> None:
        """The clean-up when the benchmark ends, however it ends."""
        forced = self.stop_all()
        if forced:
            log("clean-up: " + "; ".join(forced))


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the benchmark through the same clean-up as an error (SystemExit)."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


S = TypeVar("S", bound=TokenSupervisor)


def run_supervised(
    make_supervisor: Callable[[str], S],
    benchmark: Callable[[S, Path], int],
    *,
    needs: str,
    tmp_prefix: str,
) -> int:
    """The frame of a benchmark's main(): check that the module `needs` imports, give every
    process to come a fresh token, run `benchmark(supervisor, workdir)` in a temporary
    directory, and stop every process whatever happens. The exit status is the benchmark's,
    2 after a BenchError, 130 after Ctrl-C."""
    try:
        importlib.import_module(needs)
    except ImportError as error:
        log(f"cannot import pytest_chaos ({error}); run with the project's virtualenv")
        return 2
    token = uuid.uuid4().hex
    os.environ[TOKEN_VAR] = token  # inherited by every child and grandchild
    supervisor = make_supervisor(token)
    status = 0
    with terminate_on_sigterm(), tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp:
        try:
            status = benchmark(supervisor, Path(tmp))
        except BenchError as error:
            log(f"error: {error}")
            status = 2
        except KeyboardInterrupt:
            log("interrupted")
            status = 130
        finally:
            supervisor.finish()
    return status


# ------------------------------------------------------------------ generated pytest runs
@dataclass(frozen=True)
class PytestRun:
    spawned: float  # time.time() at the spawn, the clock the generated conftests stamp
    wall: float  # seconds from the spawn to the exit
    data: dict[str, Any]  # what the generated conftest wrote to $BENCH_OUT


def run_pytest(
    supervisor: Supervisor,
    directory: Path,
    args: Sequence[str],
    env: dict[str, str],
    timeout: float,
    what: str,
) -> PytestRun:
    """`python -m pytest -q -p no:cacheprovider ARGS` in a generated project whose conftest
    writes JSON to the file named by $BENCH_OUT. `env` is the whole environment, less
    PYTEST_ADDOPTS; `what` names the run in the error when pytest fails."""
    out = directory / f".bench-{uuid.uuid4().hex}.json"
    env = {key: value for key, value in env.items() if key != "PYTEST_ADDOPTS"}
    env["BENCH_OUT"] = str(out)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    spawned = time.time()
    start = time.perf_counter()
    done = supervisor.run(argv, timeout, cwd=directory, env=env, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode != 0 or not out.exists():
        tail = "\n".join(done.stdout.strip().splitlines()[-25:])
        raise BenchError(f"{what} failed (exit {done.returncode}):\n{tail}")
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    return PytestRun(spawned, wall, data)
