"""Workloads across faults, and their golden signals per fault window.

    with chaos.load(lambda: client.get("/users/1"), concurrency=4) as load:
        time.sleep(1)                                   # the baseline
        with chaos.latency("api", 200) as slow:
            time.sleep(1)
        time.sleep(1)                                   # the recovery
    load.stats(during=slow)       # count, throughput, errors by type, p50/p90/p99/max, proxies
    load.recovery_time()          # seconds from the last revert back to the baseline

`Load` runs the calls (threads, or asyncio tasks under `async with` for a coroutine
function), `Recording` reads them against the test's faults, `Stats` holds one window's
signals. The assertions on them are in `pytest_chaos.assertions` (`assert_steady_state`,
`assert_recovers`, `assert_graceful_shutdown`).
"""

from __future__ import annotations

from pytest_chaos.load.recording import LoadError, Recording, Recovery, Window
from pytest_chaos.load.shutdown import Shutdown
from pytest_chaos.load.signals import HUNG, CallRecord, ProxyStats, Stats
from pytest_chaos.load.workload import Load

__all__ = [
    "HUNG",
    "CallRecord",
    "Load",
    "LoadError",
    "ProxyStats",
    "Recording",
    "Recovery",
    "Shutdown",
    "Stats",
    "Window",
]
