"""assert_graceful_shutdown against real server processes (tests/load/shutdown_server.py, run
by LocalProcess behind a proxy of the session's engine), each handling SIGTERM its own way:
one drains and passes; one dies at once, one keeps its listening socket open while it
answers nothing, one outlives its grace period: each fails with a message saying what the
load saw."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_chaos.assertions import (
    ChaosAssertionError,
    assert_graceful_shutdown,
    assert_graceful_shutdown_async,
)
from pytest_chaos.backends.client import ProxyInfo
from pytest_chaos.chaos import Chaos
from pytest_chaos.load import Load, LoadError
from pytest_chaos.services import LocalProcess, Recipe
from tests.assertions.helpers import assert_message
from tests.load.helpers import http_get

SERVER = Path(__file__).with_name("shutdown_server.py")
DROPPED_HINT = (
    "Hint: on SIGTERM a server should stop accepting, finish the requests in flight, then exit"
    " (uvicorn and gunicorn do); a server that does not handle the signal dies at once."
)

Started = Callable[[str], tuple[LocalProcess, ProxyInfo]]


@pytest.fixture
def api(chaos: Chaos) -> Iterator[Started]:
    """Start the test server in a mode, behind the proxy "api"; stopped at the end."""
    started: list[LocalProcess] = []

    def start(mode: str) -> tuple[LocalProcess, ProxyInfo]:
        recipe = Recipe("api", [sys.executable, str(SERVER), "{port}", mode], stop_timeout=10)
        server = LocalProcess(recipe).start()
        started.append(server)
        return server, chaos.proxy("api", upstream=server.address)

    yield start
    for server in started:
        server.close()


def slow_get(proxy: ProxyInfo) -> Callable[[], bytes]:
    return lambda: http_get(proxy, "/slow", timeout=3)


def test_a_server_that_drains_shuts_down_gracefully(api: Started) -> None:
    server, proxy = api("drain")
    with chaos_load(slow_get(proxy)) as load:
        time.sleep(0.4)
        shutdown = assert_graceful_shutdown(server, load=load, grace=2.0)
    assert shutdown.in_flight
    assert shutdown.completed == list(shutdown.in_flight)
    assert shutdown.exit_time is not None
    assert 0.0 < shutdown.exit_time < 2.0
    assert not shutdown.refused_late
    assert not shutdown.new_running
    assert not server.running


def failed_shutdown(api: Started, mode: str, grace: float) -> ChaosAssertionError:
    """SIGTERM to the test server in `mode` under a load; the assertion's error."""
    server, proxy = api(mode)
    with chaos_load(slow_get(proxy)) as load:
        time.sleep(0.4)
        with pytest.raises(ChaosAssertionError) as raised:
            assert_graceful_shutdown(server, load=load, grace=grace)
    assert not server.running
    return raised.value


def test_a_server_that_exits_at_once_drops_the_calls_in_flight(api: Started) -> None:
    assert_message(
        failed_shutdown(api, "abrupt", grace=2.0),
        "\n".join(
            [
                "The service 'api' did not shut down gracefully on SIGTERM.",
                "- <n> calls in flight at the SIGTERM: 0 completed, <n> failed (<text>)  <--"
                " dropped",
                "- <text>",
                "- exited <s> after the SIGTERM (grace 2.00s)",
                DROPPED_HINT,
            ]
        ),
    )


def test_a_server_that_keeps_listening_but_answers_nothing_leaves_new_calls_hanging(
    api: Started,
) -> None:
    assert_message(
        failed_shutdown(api, "hang", grace=3.0),
        "\n".join(
            [
                "The service 'api' did not shut down gracefully on SIGTERM.",
                "- <n> calls in flight at the SIGTERM: <n> completed",
                "- <n> calls started after it: <text> refused only after up to <s> (<text>)"
                "  <-- hung",
                "- exited <s> after the SIGTERM (grace 3.00s)",
                "Hint: a server that stops serving must stop accepting too: close the listening"
                " socket at once, so that new connections are refused rather than queued.",
            ]
        ),
    )


def test_a_server_that_outlives_its_grace_is_killed_and_reported(api: Started) -> None:
    started = time.monotonic()
    error = failed_shutdown(api, "slow", grace=1.0)
    assert time.monotonic() - started < 5  # killed after its grace, not after its 8 s linger
    assert_message(
        error,
        "\n".join(
            [
                "The service 'api' did not shut down gracefully on SIGTERM.",
                "- <n> calls in flight at the SIGTERM: <n> completed",
                "- <text>",
                "- still running 1.00s after the SIGTERM, then killed  <-- too late",
                "Hint: the drain outlived the grace period: bound it with a timeout shorter than"
                " the grace (uvicorn --timeout-graceful-shutdown, gunicorn --graceful-timeout).",
            ]
        ),
    )


@pytest.mark.asyncio
async def test_an_async_load_is_checked_without_blocking_its_loop(api: Started) -> None:
    server, proxy = api("drain")

    async def get() -> None:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        try:
            writer.write(b"GET /slow HTTP/1.0\r\nHost: api\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 3)
            if not answer.startswith(b"HTTP/1.0 200"):
                raise ConnectionError(f"no answer: {answer[:20]!r}")
        finally:
            writer.close()

    async with Load(get, concurrency=4) as load:
        await asyncio.sleep(0.4)
        with pytest.raises(LoadError) as raised:
            assert_graceful_shutdown(server, load=load, grace=2.0)
        assert str(raised.value) == (
            "this load runs as asyncio tasks, which a blocking check would stall: use"
            " `await assert_graceful_shutdown_async(...)`"
        )
        shutdown = await assert_graceful_shutdown_async(server, load=load, grace=2.0)
    assert shutdown.in_flight
    assert all(call.ok for call in shutdown.in_flight)


# ------------------------------------------------------------------------------- bad input
def test_a_grace_as_long_as_the_service_s_stop_timeout_is_refused(api: Started) -> None:
    server, proxy = api("drain")
    with chaos_load(slow_get(proxy)) as load, pytest.raises(LoadError) as raised:
        assert_graceful_shutdown(server, load=load, grace=10)
    assert str(raised.value) == (
        "grace (10s) must be shorter than the service's stop timeout (10s), after which"
        " terminate() kills it; raise stop_timeout in its Recipe or ContainerSpec"
    )
    assert server.running


def test_a_load_that_is_not_running_is_refused(api: Started) -> None:
    server, proxy = api("drain")
    with chaos_load(slow_get(proxy)) as load:
        time.sleep(0.05)
    with pytest.raises(LoadError) as raised:
        assert_graceful_shutdown(server, load=load, grace=1)
    assert str(raised.value) == (
        "the load is not running: call assert_graceful_shutdown inside its block, so that"
        " calls are in flight when the SIGTERM arrives"
    )


@pytest.mark.parametrize(
    ("service", "grace", "message"),
    [
        (
            "api",
            1.0,
            "service 'api' is a name, and this load belongs to no chaos object to look it up;"
            " pass the service itself (the fixture's value)",
        ),
        (
            object,
            1.0,
            "service must be a service the plugin runs (a service fixture's value, a"
            " LocalProcess, a ContainerService) or its name, got <class 'object'>",
        ),
        (None, -1, "grace must be a number of seconds above 0, got -1"),
    ],
    ids=["name-without-chaos", "not-a-service", "negative-grace"],
)
def test_bad_arguments_are_refused(service: object, grace: float, message: str) -> None:
    with Load(lambda: time.sleep(0.01)) as load, pytest.raises(LoadError) as raised:
        assert_graceful_shutdown(service, load=load, grace=grace)  # type: ignore[arg-type]
    assert str(raised.value) == message


def chaos_load(call: Callable[[], object]) -> Load:
    """Four workers, a slow endpoint: calls are in flight whenever the SIGTERM arrives."""
    return Load(call, concurrency=4)


# --------------------------------------------------------------- the verdict, on chosen calls
def judged(**fields: object) -> str:
    """The message for a Shutdown made of chosen calls (signal at 10.0, exit at 10.3)."""
    from pytest_chaos.assertions import _judge_shutdown
    from pytest_chaos.load.shutdown import Shutdown

    values: dict[str, object] = {
        "service": "api",
        "grace": 2.0,
        "refuse_within": 0.5,
        "signalled_at": 10.0,
        "exited_at": 10.3,
        "in_flight": (),
        "started_after": (),
        "still_running": (),
        "checked_at": 10.4,
    } | fields
    with pytest.raises(ChaosAssertionError) as raised:
        _judge_shutdown(Shutdown(**values))  # type: ignore[arg-type]
    return str(raised.value)


def test_a_sigterm_with_nothing_in_flight_proves_nothing() -> None:
    from pytest_chaos.load import CallRecord

    assert judged(started_after=(CallRecord(10.1, 0.001, "ConnectionRefusedError"),)) == (
        "\n".join(
            [
                "The service 'api' did not shut down gracefully on SIGTERM.",
                "- no call was in flight at the SIGTERM  <-- nothing to drain",
                "- 1 call started after it: 1 refused within 0.50s",
                "- exited 0.30s after the SIGTERM (grace 2.00s)",
                "Hint: make the calls slower than a SIGTERM takes to arrive (a slow endpoint),"
                " or raise the load's concurrency, so that there is something to drain.",
            ]
        )
    )


def test_calls_still_running_after_the_exit_are_dropped_or_hung() -> None:
    from pytest_chaos.load import CallRecord

    message = judged(
        in_flight=(CallRecord(9.9, 0.2, None),),
        started_after=(CallRecord(10.1, 0.001, None),),
        still_running=(9.95, 10.2),
    )
    assert message.splitlines()[1:3] == [
        "- 2 calls in flight at the SIGTERM: 1 completed, 1 still running  <-- dropped",
        "- 2 calls started after it: 1 served, 1 still running  <-- hung",
    ]


def test_an_exit_after_the_grace_period_is_too_late() -> None:
    from pytest_chaos.load import CallRecord

    message = judged(in_flight=(CallRecord(9.9, 0.2, None),), exited_at=12.5)
    assert message.splitlines()[1:] == [
        "- 1 call in flight at the SIGTERM: 1 completed",
        "- no call started between the SIGTERM and the exit",
        "- exited 2.50s after the SIGTERM (grace 2.00s)  <-- too late",
        "Hint: the drain outlived the grace period: bound it with a timeout shorter than the"
        " grace (uvicorn --timeout-graceful-shutdown, gunicorn --graceful-timeout).",
    ]


def test_a_new_call_left_waiting_is_hung() -> None:
    from pytest_chaos.load import CallRecord

    message = judged(in_flight=(CallRecord(9.9, 0.2, None),), still_running=(10.2,))
    assert message.splitlines()[1:3] == [
        "- 1 call in flight at the SIGTERM: 1 completed",
        "- 1 call started after it: 1 still running  <-- hung",
    ]
