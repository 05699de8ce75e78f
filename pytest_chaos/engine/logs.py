"""The engine process's logging: timestamped lines on stderr that never block the event loop.

A log call only puts the record on a bounded queue; one daemon thread writes the queue to the
stream. When the stream blocks (a pipe nobody reads, a full disk), the thread waits, the queue
fills, and further records are dropped and counted, never waited for: the proxies keep
running. The number dropped is written once the stream takes lines again.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import TextIO

LINE_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
QUEUE_SIZE = 10_000
STOP_WAIT_SECONDS = 1.0


class _DroppingQueueHandler(logging.Handler):
    """Puts records on a queue; drops them, counted, when it is full."""

    def __init__(self, records: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__()
        self.records = records
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Render the message and traceback here: the arguments may change after the call.
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self.records.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class LogWriter:
    """Routes logging through a queue to `stream`, written by a thread of its own."""

    def __init__(self, stream: TextIO, *, queue_size: int = QUEUE_SIZE) -> None:
        self._records: queue.Queue[logging.LogRecord | None] = queue.Queue(queue_size)
        self.handler = _DroppingQueueHandler(self._records)
        self._output = logging.StreamHandler(stream)
        self._output.setFormatter(logging.Formatter(LINE_FORMAT, DATE_FORMAT))
        self._thread = threading.Thread(target=self._write, name="pytest-chaos log", daemon=True)
        self._reported_drops = 0
        self._installed: tuple[logging.Logger, list[logging.Handler], int] | None = None

    def install(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        """Make `logger` (default: the root logger) log through this writer only."""
        target = logging.getLogger() if logger is None else logger
        self._installed = (target, list(target.handlers), target.level)
        for handler in list(target.handlers):
            target.removeHandler(handler)
        target.addHandler(self.handler)
        target.setLevel(level)
        self._thread.start()

    def uninstall(self) -> None:
        """Restore the logger's handlers; write what is queued, waiting a bounded time."""
        if self._installed is None:
            return
        target, handlers, level = self._installed
        self._installed = None
        target.removeHandler(self.handler)
        for handler in handlers:
            target.addHandler(handler)
        target.setLevel(level)
        # A full queue means the writer is stuck on its stream: being a daemon thread, it
        # dies with the process; it is not waited for beyond the bounded join.
        with contextlib.suppress(queue.Full):
            self._records.put_nowait(None)
        self._thread.join(STOP_WAIT_SECONDS)

    @property
    def dropped(self) -> int:
        """How many log records were dropped because the queue was full."""
        return self.handler.dropped

    def _write(self) -> None:
        while (record := self._records.get()) is not None:
            self._output.handle(record)
            dropped = self.handler.dropped
            if dropped != self._reported_drops:
                note = logging.LogRecord(
                    "pytest_chaos.engine",
                    logging.WARNING,
                    __file__,
                    0,
                    "%d log lines were dropped: the log stream was not taking them",
                    (dropped - self._reported_drops,),
                    None,
                )
                self._reported_drops = dropped
                self._output.handle(note)
