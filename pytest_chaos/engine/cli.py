"""`pytest-chaos serve`: a drop-in for `toxiproxy-server`.

Accepts upstream's single-dash flags (`-host`, `-port`, `-config`, `-seed`, `-proxy-metrics`,
`-runtime-metrics`) and their `--` forms. Prints one line on stdout once ready, flushed at
once, naming the API's URL ("pytest-chaos engine VERSION listening on http://HOST:PORT (seed
SEED)"); everything else it has to say goes to stderr as timestamped log lines (see `logs`),
written by a thread of their own so that a stream nobody reads never blocks the proxies.
Shuts down cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from pytest_chaos import __version__
from pytest_chaos.engine.api import TOXIPROXY_VERSION
from pytest_chaos.engine.errors import ApiError
from pytest_chaos.engine.logs import LogWriter
from pytest_chaos.engine.server import Engine, run_event_loop, settle_garbage_collector

PARENT_CHECK_SECONDS = 0.5

log = logging.getLogger("pytest_chaos.engine")


def build_parser() -> argparse.ArgumentParser:
    """The `pytest-chaos serve` options, named as upstream's `toxiproxy-server` names them."""
    parser = argparse.ArgumentParser(
        prog="pytest-chaos serve",
        description="Run the pytest-chaos engine: a Toxiproxy-compatible fault proxy server.",
    )
    parser.add_argument(
        "-host",
        "--host",
        default="127.0.0.1",
        help="address for the HTTP API (default 127.0.0.1; upstream's localhost)",
    )
    parser.add_argument(
        "-port",
        "--port",
        type=int,
        default=8474,
        help="port for the HTTP API (default 8474; 0 picks a free one)",
    )
    parser.add_argument(
        "-config",
        "--config",
        metavar="FILE",
        help="JSON array of proxies to create at start, as POST /populate",
    )
    parser.add_argument(
        "-seed",
        "--seed",
        type=int,
        default=None,
        help="seed for jitter, toxicity rolls and slicing (default: random)",
    )
    parser.add_argument(
        "-proxy-metrics",
        "--proxy-metrics",
        action="store_true",
        help="also serve upstream's toxiproxy_proxy_{received,sent}_bytes_total on /metrics"
        " (the engine's own metrics are always served)",
    )
    parser.add_argument(
        "-runtime-metrics",
        "--runtime-metrics",
        action="store_true",
        help="also serve the process's metrics on /metrics (process_*, python_*)",
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="exit when the process that started this one is gone (no orphaned engines)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop implementation (default: uvloop when installed)",
    )
    parser.add_argument(
        "-version",
        "--version",
        action="version",
        version=f"pytest-chaos {__version__} (toxiproxy-server {TOXIPROXY_VERSION})",
    )
    return parser


def load_config(path: str) -> object:
    """The proxies of a `-config` JSON file, or exit naming the file and what is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"pytest-chaos serve: cannot read config file {path}: {error}") from None


async def serve(args: argparse.Namespace) -> int:
    """Run the engine until SIGTERM, SIGINT or (with `--exit-with-parent`) the parent's death,
    and return the exit status."""
    engine = Engine(
        seed=args.seed, proxy_metrics=args.proxy_metrics, runtime_metrics=args.runtime_metrics
    )
    proxies = load_config(args.config) if args.config else None
    try:
        await engine.start(args.host, args.port)
    except OSError as error:
        # asyncio wraps the errno's text in a long "error while attempting to bind" sentence.
        code = error.errno or 0
        reason = os.strerror(code).lower() if code > 0 else str(error)
        print(
            f"pytest-chaos serve: cannot listen on {args.host}:{args.port}: {reason}",
            file=sys.stderr,
        )
        return 1
    if proxies is not None:
        try:
            await engine.populate(proxies)
        except ApiError as error:
            print(
                f"pytest-chaos serve: config file {args.config}: {error.message}", file=sys.stderr
            )
            await engine.stop()
            return 1
    settle_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop_on_signal, stop, signum)
    seed = "random" if args.seed is None else args.seed
    # The one line on stdout, flushed at once: whoever started us (or a log file) learns the URL.
    print(f"pytest-chaos engine {__version__} listening on {engine.url} (seed {seed})", flush=True)
    log.info("listening on %s (seed %s)", engine.url, seed)
    if args.exit_with_parent:
        engine.tasks.spawn(_stop_when_orphaned(os.getppid(), stop), name="parent watch")
    await stop.wait()
    await engine.stop()
    log.info("stopped")
    return 0


def _stop_on_signal(stop: asyncio.Event, signum: int) -> None:
    log.info("stopping on %s", signal.Signals(signum).name)
    stop.set()


async def _stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    # When the parent dies, the child is re-parented and getppid() changes.
    while os.getppid() == parent:  # noqa: ASYNC110 - re-parenting sends no event to wait on
        await asyncio.sleep(PARENT_CHECK_SECONDS)
    log.info("stopping: the parent process %d is gone", parent)
    stop.set()


def run(argv: Sequence[str]) -> int:
    """The `pytest-chaos serve` command: parse `argv`, log to stderr through a queue, serve."""
    args = build_parser().parse_args(argv)
    # Log lines go to stderr, timestamped, through a queue: a log call never blocks the loop.
    writer = LogWriter(sys.stderr)
    writer.install(level=logging.WARNING)
    logging.getLogger("pytest_chaos").setLevel(logging.INFO)
    try:
        return int(run_event_loop(serve(args), args.loop))
    finally:
        writer.uninstall()
