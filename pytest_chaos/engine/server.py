"""The engine: proxies, the event log and the HTTP API, with start-up and shutdown.

Shutdown order: stop accepting API requests and new client connections (listeners close),
close every live connection (its links' tasks are cancelled, transports closed), then wait a
bounded time for the remaining tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

from pytest_chaos import __version__
from pytest_chaos.engine.addresses import join_host_port
from pytest_chaos.engine.api import build_app
from pytest_chaos.engine.collection import ProxyCollection
from pytest_chaos.engine.events import DEFAULT_CAPACITY, EventLog
from pytest_chaos.engine.proxy import listen_backlog
from pytest_chaos.engine.tasks import TaskSet

SHUTDOWN_WAIT_SECONDS = 2.0
# Every name the API accepts can be addressed again: a body is at most 1 MiB (aiohttp's
# `client_max_size`), so a name is at most 1 MiB of UTF-8, at most 3 MiB percent-encoded, and a
# toxic's path holds two names. (aiohttp's default, 8190 bytes, cut names of 8 KiB off; Go's
# server reads request heads up to 1 MiB.)
MAX_REQUEST_LINE = 8 * 1024 * 1024
LOOPS = ("auto", "asyncio", "uvloop")

T = TypeVar("T")


def check_loop(loop: object) -> None:
    """Raise ValueError unless `loop` names an event loop this machine can run."""
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {', '.join(map(repr, LOOPS))}, got {loop!r}")
    if loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise ValueError("loop 'uvloop' asked for, but uvloop is not installed") from None


def run_event_loop(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run `main` on uvloop when installed (or asked for), else on asyncio's own loop."""
    try:
        check_loop(loop)
    except ValueError:
        main.close()  # never awaited: close it so Python does not warn about it
        raise
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def settle_garbage_collector() -> None:
    """Keep the garbage collector's pauses short in a process that is only the engine.

    A full collection walks every tracked object; in a fresh engine process most of them are
    the imported modules' (about 40,000 objects, 6 ms a collection, 20 ms on a busy loop,
    delaying a latency toxic's timers as long). Freezing what start-up made takes them out of
    every later collection. Not for an engine sharing a test's process: the collector is the
    whole process's.
    """
    gc.collect()
    gc.freeze()


class Engine:
    """A Toxiproxy-compatible server on the running event loop."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        event_capacity: int = DEFAULT_CAPACITY,
        proxy_metrics: bool = False,
        runtime_metrics: bool = False,
    ) -> None:
        self.seed = seed
        self.proxy_metrics = proxy_metrics
        self.runtime_metrics = runtime_metrics
        self.events = EventLog(event_capacity)
        self.tasks = TaskSet()
        self.collection = ProxyCollection(self.events, seed, self.tasks)
        self._runner: web.AppRunner | None = None
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        """The API's base URL, e.g. `http://127.0.0.1:8474`."""
        return f"http://{join_host_port(self.host, self.port)}"

    async def start(self, host: str = "127.0.0.1", port: int = 8474) -> None:
        """Serve the API on `host`:`port` (0: any free port, see `url`); OSError if it cannot."""
        app = build_app(
            self.collection,
            self.events,
            f"pytest-chaos {__version__}",
            proxy_metrics=self.proxy_metrics,
            runtime_metrics=self.runtime_metrics,
        )
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, max_line_size=MAX_REQUEST_LINE
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True, backlog=listen_backlog())
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0] if runner.addresses else (host, port)
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = int(bound[1])

    async def populate(self, proxies: Any) -> None:
        """Load proxies as `POST /populate` would (used for `-config FILE`)."""
        _, error = await self.collection.populate(proxies)
        if error is not None:
            raise error

    async def stop(self) -> None:
        """Stop the API, every proxy and every task the engine started."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.collection.close()
        # Only this engine's tasks: the loop may be shared with other code.
        await self.tasks.cancel_all(SHUTDOWN_WAIT_SECONDS)


class EngineThread:
    """The engine on its own event loop in a background thread of this process.

    Starts fastest, but shares the GIL with the caller: a busy test process delays its
    timers. The plugin runs the engine in its own process by default for that reason.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        loop: str = "auto",
        proxy_metrics: bool = False,
        runtime_metrics: bool = False,
    ) -> None:
        # Checked here, in the caller's thread: a bad argument must not surface (or hang) later.
        if not isinstance(host, str):
            raise TypeError(f"host must be a string such as '127.0.0.1', got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer from 0 to 65535 (0: any free), got {port!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an integer or None (random), got {seed!r}")
        check_loop(loop)
        self.engine = Engine(
            seed=seed, proxy_metrics=proxy_metrics, runtime_metrics=runtime_metrics
        )
        self._loop_kind = loop
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None

    def start(self) -> str:
        """Start the engine's thread; return the API's URL once it serves, or raise what failed."""
        if self._thread is not None:
            raise RuntimeError("this EngineThread was already started; create a new one")
        self._thread = threading.Thread(target=self._run, name="pytest-chaos engine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.engine.url

    def _run(self) -> None:
        try:
            run_event_loop(self._serve(), self._loop_kind)
        except BaseException as error:  # handed to start()'s caller
            if not self._ready.is_set():
                self._error = error
        finally:
            # Whatever happened, start() must not wait for ever.
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.engine.start(self._host, self._port)
        except Exception as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await self.engine.stop()

    def stop(self) -> None:
        """Stop the engine and wait for its thread (a bounded time); harmless when not running."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if self._loop is not None and self._stopped is not None:
            # The loop may have closed in between: nothing is left to stop then.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopped.set)
        thread.join(timeout=10)
