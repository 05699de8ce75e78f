"""Helpers for the assertion tests: whole-message comparison with placeholders for the parts
that vary from run to run, real clients set up the same way everywhere, and a stand-in for
the `chaos` fixture that replays synthetic engine events."""

from __future__ import annotations

import re
import time
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.chaos import Chaos
from pytest_chaos.events import Event, for_proxy, parse_events

# An HTTP response big enough that a slicer or a bandwidth limit stretches it over seconds.
BODY_SIZE = 20_000
BODY = bytes(i % 251 for i in range(BODY_SIZE))

# The parts of a message that must vary (durations measured on a shared machine, connection
# ids that depend on which tests ran before): everything else is compared character by
# character.
PLACEHOLDERS = {
    "<s>": r"\d+\.\d\ds",  # a duration as the helpers print it: 0.20s
    "<+s>": r"[+-]\d+\.\d\ds",  # an offset: +0.03s
    "<n>": r"\d+",  # a connection id, a byte count
    "<text>": r".+?",  # an error message from a client library
    "<ms>": r"\d+(\.\d+)? m?s",  # a latency as the load's signals print it: 0.42 ms, 52 ms
    "<%>": r"\d+\.\d%",  # an error rate: 2.4%
    "<rate>": r"\d+\.\d/s",  # a throughput: 42.0/s
}


def assert_message(error: BaseException, expected: str) -> None:
    """`str(error)` is exactly `expected`, where each placeholder of PLACEHOLDERS stands for
    the varying part it names."""
    pattern = re.escape(expected)
    for placeholder, regex in PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape(placeholder), regex)
    message = str(error)
    assert re.fullmatch(pattern, message), (
        f"message differs\n--- got:\n{message}\n--- expected:\n{expected}"
    )


def redis_client(proxy: ProxyInfo, *, timeout: float | None, **options: Any) -> redis.Redis:
    """A redis-py client through `proxy` that never retries on its own (one call, one try),
    so the retries under test are the retry library's. redis-py 8 warns when
    `retry_on_timeout` is passed at all; a zero-retry `Retry` says the same without it."""
    options.setdefault("retry", Retry(NoBackoff(), 0))
    return redis.Redis(
        host=proxy.host,
        port=proxy.port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        **options,
    )


class SyntheticChaos:
    """Stands in for the `chaos` fixture where a test feeds the helpers made-up engine events,
    so that a message can be checked to the last character."""

    def __init__(self, events: list[Event], started_at: float = 0.0) -> None:
        self._events = events
        self.started_at = started_at

    def events(self, proxy: str | None = None) -> list[Event]:
        return for_proxy(self._events, proxy)

    def as_chaos(self) -> Chaos:
        return cast(Chaos, self)


def event_stream(proxy: str, *specs: tuple[float, str, int, dict[str, Any]]) -> list[Event]:
    """Engine events from (time, kind, connection, extra fields) tuples, numbered in order,
    parsed as the plugin parses the engine's answer."""
    return parse_events(
        {"seq": seq, "time": at, "kind": kind, "proxy": proxy, "connection": conn, **extra}
        for seq, (at, kind, conn, extra) in enumerate(specs, 1)
    )


def wait_until(condition: Any, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll `condition()` until it is true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = bool(condition())
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def attempts_at(*offsets: float, start: float = 1000.0) -> list[float]:
    """Monotonic attempt times `offsets` seconds after `start` (synthetic wire attempts)."""
    return [start + offset for offset in offsets]
