"""The engine's life cycle: what it owns on a shared event loop, and how it starts and fails."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from pytest_chaos.engine import Engine, EngineThread
from pytest_chaos.engine import server as server_module
from tests.engine.api_helpers import listen_of, listening_socket


@pytest.mark.asyncio
async def test_stopping_an_engine_leaves_other_tasks_on_its_loop_alone() -> None:
    engine = Engine(seed=1)
    await engine.start("127.0.0.1", 0)
    reached = asyncio.Event()

    async def upstream_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.set()
        await reader.read()
        writer.close()

    upstream = await asyncio.start_server(upstream_handler, "127.0.0.1", 0)
    upstream_port = upstream.sockets[0].getsockname()[1]
    foreign_release = asyncio.Event()
    foreign = asyncio.get_running_loop().create_task(foreign_release.wait(), name="foreign")
    async with httpx.AsyncClient(base_url=engine.url) as api:
        body = {"name": "e", "upstream": f"127.0.0.1:{upstream_port}"}
        created = await api.post("/proxies", json=body)
        assert created.status_code == 201
        toxic = {"type": "latency", "attributes": {"latency": 10_000}}
        assert (await api.post("/proxies/e/toxics", json=toxic)).status_code == 200
    proxy_host, _, proxy_port = created.json()["listen"].rpartition(":")
    reader, writer = await asyncio.open_connection(proxy_host, int(proxy_port))
    async with asyncio.timeout(5):
        await reached.wait()
    # The engine now runs a task of its own: the latency toxic's, on the downstream link.
    assert len(engine.tasks) >= 1

    await engine.stop()

    assert not foreign.done()
    assert len(engine.tasks) == 0
    foreign_release.set()
    await foreign
    assert await reader.read() == b""
    writer.close()
    upstream.close()
    await upstream.wait_closed()


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (
            {"loop": "bogus"},
            ValueError,
            "loop must be one of 'auto', 'asyncio', 'uvloop', got 'bogus'",
        ),
        (
            {"port": 70000},
            ValueError,
            "port must be an integer from 0 to 65535 (0: any free), got 70000",
        ),
        (
            {"port": "8474"},
            ValueError,
            "port must be an integer from 0 to 65535 (0: any free), got '8474'",
        ),
        ({"host": None}, TypeError, "host must be a string such as '127.0.0.1', got None"),
        ({"seed": "42"}, TypeError, "seed must be an integer or None (random), got '42'"),
    ],
)
def test_bad_arguments_raise_at_once(
    arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        EngineThread(**arguments).start()  # type: ignore[arg-type]
    assert str(raised.value) == message


@pytest.mark.timeout(20)
def test_a_port_in_use_reaches_the_caller_of_start() -> None:
    with listening_socket() as taken:
        port = int(listen_of(taken).rpartition(":")[2])
        running = EngineThread(port=port)
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            running.start()
        running.stop()  # harmless after a failed start


@pytest.mark.timeout(20)
def test_a_failure_inside_the_thread_reaches_the_caller_of_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_loop(main: object, loop: str = "auto") -> None:
        main.close()  # type: ignore[attr-defined]
        raise RuntimeError("the event loop could not be created")

    monkeypatch.setattr(server_module, "run_event_loop", broken_loop)
    running = EngineThread()

    with pytest.raises(RuntimeError, match="the event loop could not be created"):
        running.start()


@pytest.mark.timeout(20)
def test_an_engine_failing_to_start_reaches_the_caller_of_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(self: Engine, host: str = "", port: int = 0) -> None:
        raise LookupError("no such interface")

    monkeypatch.setattr(Engine, "start", refuse)
    running = EngineThread()

    with pytest.raises(LookupError, match="no such interface"):
        running.start()


def test_an_engine_thread_starts_once() -> None:
    running = EngineThread()
    running.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            running.start()
        with socket.create_connection(("127.0.0.1", running.engine.port), timeout=5):
            pass
    finally:
        running.stop()
