"""The engine process's output: one flushed ready line on stdout, timestamped log lines on
stderr, and logging that never blocks the event loop, even on a stream nobody reads."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx

from pytest_chaos.engine.logs import LogWriter
from tests.engine.api_helpers import create_proxy, echo_round_trip, wait_until
from tests.engine.served import COMMANDS, EXIT_SECONDS, READY_LINE, STARTUP_SECONDS, serve

TIMESTAMPED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} [A-Z]+ [\w.]+: .*")
# A request aiohttp refuses and logs at ERROR with its traceback: about 500 bytes of log.
BAD_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"


def test_logging_to_a_stream_nobody_reads_never_blocks() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    logger = logging.getLogger("tests.engine.blocked")
    logger.propagate = False
    writer = LogWriter(stream, queue_size=100)
    writer.install(logger, level=logging.INFO)
    try:
        started = time.perf_counter()
        for i in range(5000):  # 5 MB: far more than the pipe holds
            logger.warning("line %d %s", i, "x" * 1000)
        elapsed = time.perf_counter() - started

        assert elapsed < 2.0  # a blocking handler would wait here for ever
        assert writer.dropped > 0
    finally:
        received: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(read_end, received))
        reader.start()
        wait_until(lambda: writer._records.empty(), failure="the log queue did not drain")
        writer.uninstall()
        stream.close()  # closes the write end: the reader sees the end of the pipe
        reader.join(10)
        os.close(read_end)
    lines = b"".join(received).decode().splitlines()
    assert all(TIMESTAMPED.fullmatch(line) for line in lines), lines[:3]
    assert any(re.search(r"\d+ log lines were dropped", line) for line in lines)


def _read_all(fd: int, into: list[bytes]) -> None:
    while chunk := os.read(fd, 65536):
        into.append(chunk)


def test_the_engine_keeps_serving_while_nobody_reads_its_stderr(echo: str) -> None:
    """The plugin's old habit: stderr piped and never read. Every bad request logs an error
    with its traceback; far more than a pipe holds must not stall the API or the proxies."""
    with serve("-port", "0") as served:
        for _ in range(400):  # about 200 kB of log
            with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
                sock.sendall(BAD_REQUEST)
                assert sock.recv(100).startswith(b"HTTP/1.0 400 Bad Request")
        with httpx.Client(base_url=served.url, timeout=5) as api:
            proxy = create_proxy(api, "p", echo)
            assert echo_round_trip(proxy["listen"]) == b"ping"


def test_ready_line_and_log_lines_reach_files_at_once(tmp_path: Path) -> None:
    """As the plugin will run it: stdout and stderr redirected to files, not terminals."""
    out_path, err_path = tmp_path / "engine.out", tmp_path / "engine.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [*COMMANDS["module"], "-port", "0"], stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
    try:
        # Nothing signals a write to a file: poll it until the line is there.
        wait_until(lambda: b"\n" in out_path.read_bytes(), STARTUP_SECONDS, failure="no ready line")
        ready = out_path.read_text()
        match = READY_LINE.fullmatch(ready)
        assert match is not None, ready
        with socket.create_connection(("127.0.0.1", int(match["port"])), timeout=5) as sock:
            sock.sendall(BAD_REQUEST)
            assert sock.recv(100).startswith(b"HTTP/1.0 400")
        wait_until(lambda: b"Error handling request" in err_path.read_bytes())
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(EXIT_SECONDS)

    assert process.returncode == 0
    assert out_path.read_text() == ready  # the ready line is all that goes to stdout
    log_lines = [line for line in err_path.read_text().splitlines() if TIMESTAMPED.fullmatch(line)]
    messages = [line.split(" ", 1)[1] for line in log_lines]
    assert messages == [
        f"INFO pytest_chaos.engine: listening on {match['url']} (seed random)",
        "ERROR aiohttp.server: Error handling request from 127.0.0.1",
        "INFO pytest_chaos.engine: stopping on SIGTERM",
        "INFO pytest_chaos.engine: stopped",
    ]
