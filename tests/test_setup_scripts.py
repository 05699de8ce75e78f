"""The set-up scripts wait for a busy package manager instead of failing (a fresh VM often runs
its own apt at boot)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What apt and dpkg lock (fcntl locks, as they take them).
APT_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock")
HELD_SECONDS = 4.0

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("apt-get") is None or shutil.which("redis-server") is None,
    reason="needs root, apt-get and an installed redis-server (the package apt is asked for)",
)


def hold_apt_locks(seconds: float, held: threading.Event) -> None:
    handles = [open(path, "a") for path in APT_LOCKS]  # noqa: SIM115 - closed below
    try:
        for handle in handles:
            fcntl.lockf(handle, fcntl.LOCK_EX)
        held.set()
        time.sleep(seconds)
    finally:
        for handle in handles:
            handle.close()


def run_apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    script = f'. "{ROOT}/scripts/lib/apt.sh"; apt_get "$@"'
    return subprocess.run(
        ["bash", "-c", script, "apt", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "APT_LOCK_WAIT": "60"},
    )


def test_apt_waits_for_the_lock_then_works() -> None:
    held = threading.Event()
    holder = threading.Thread(target=hold_apt_locks, args=(HELD_SECONDS, held))
    holder.start()
    try:
        assert held.wait(10)
        # The locks are really in the way: plain apt-get gives up at once.
        plain = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-download", "redis-server"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert plain.returncode != 0
        assert "lock" in plain.stderr.lower()
        started = time.monotonic()
        # Already installed: apt takes its locks, finds nothing to do and succeeds.
        result = run_apt_get("install", "-y", "-qq", "--no-download", "redis-server")
        waited = time.monotonic() - started
    finally:
        holder.join()
    assert result.returncode == 0, result.stderr
    assert waited >= HELD_SECONDS - 1.5


def test_other_apt_errors_are_not_retried() -> None:
    started = time.monotonic()
    result = run_apt_get("install", "-y", "-qq", "--no-download", "no-such-package-here")
    assert result.returncode != 0
    assert "Unable to locate package no-such-package-here" in result.stderr
    assert time.monotonic() - started < 30
