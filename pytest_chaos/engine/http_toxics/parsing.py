"""Cutting each direction's bytes into HTTP messages with h11, without changing a byte.

h11 parses; these readers only remember which raw bytes each message took, so that the layer
can pass, hold or swallow the bytes exactly as they came. A reader works on one message and
hands what follows it to the next one, so that requests are read as they arrive, whatever the
answers are doing (pipelining). Before h11 waits for a whole head, the first line is checked
for the shape of an HTTP/1.x request or status line: a client or server speaking another
protocol must never wait for a head that will not come.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass

import h11

# The largest head (request or status line and headers) read; larger ones are passed through.
MAX_HEAD_BYTES = 64 * 1024
# How much of a first line is waited for before the bytes are judged not to be HTTP.
MAX_FIRST_LINE = 8 * 1024
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_REQUEST_LINE = re.compile(_TOKEN + rb"+ [^\s]+ HTTP/[0-9]\.[0-9]\r?\n")
_REQUEST_LINE_START = re.compile(_TOKEN + rb"{1,32}(?: [^\s]*(?: [HTP/0-9.]*)?)?")
_STATUS_LINE = re.compile(rb"HTTP/[0-9]\.[0-9] [0-9]{3}(?: [^\r\n]*)?\r?\n")
TLS_HANDSHAKE = 0x16


@dataclass(frozen=True)
class Head:
    """A request's or answer's head was read; `message` is h11's event for it."""

    message: h11.Request | h11.Response


@dataclass(frozen=True)
class Raw:
    """Bytes of the current message, exactly as they came (`in_head`: its head's, with the
    1xx answers before it, if any)."""

    data: bytes
    in_head: bool = False


@dataclass(frozen=True)
class End:
    """The current message is complete; `rest` is what came after it."""

    rest: bytes


@dataclass(frozen=True)
class NotHttp:
    """The bytes stopped looking like HTTP: `data` is everything held and not yet handed out."""

    reason: str
    data: bytes


Piece = Head | Raw | End | NotHttp


def request_line_problem(buffer: bytes | bytearray) -> str | None:
    """Why `buffer` cannot start an HTTP/1.x request (None: it can, as far as it goes)."""
    data = bytes(buffer[: MAX_FIRST_LINE + 2]).lstrip(b"\r\n")
    if not data:
        return None
    if data[0] == TLS_HANDSHAKE:
        return "a TLS handshake (HTTPS is out of scope)"
    end = data.find(b"\n")
    if end < 0:
        if len(data) <= MAX_FIRST_LINE and _REQUEST_LINE_START.fullmatch(data):
            return None
        return f"not an HTTP/1.x request: {data[:40]!r}"
    if _REQUEST_LINE.fullmatch(data[: end + 1]) is None:
        return f"not an HTTP/1.x request line: {_first_line(data, end)!r}"
    return None


def status_line_problem(buffer: bytes | bytearray) -> str | None:
    """Why `buffer` cannot start an HTTP/1.x answer (None: it can, as far as it goes)."""
    data = bytes(buffer[:MAX_FIRST_LINE])
    end = data.find(b"\n")
    if end < 0:
        if b"HTTP/".startswith(data[:5]) and len(data) < MAX_FIRST_LINE:
            return None
        return f"not an HTTP/1.x answer: {data[:40]!r}"
    if _STATUS_LINE.fullmatch(data[: end + 1]) is None:
        return f"not an HTTP/1.x status line: {_first_line(data, end)!r}"
    return None


def _first_line(data: bytes, end: int) -> bytes:
    """The first line (up to 60 bytes of it, for a message), without its line break."""
    return data[: min(end, 60)].rstrip(b"\r")


class MessageReader(abc.ABC):
    """Reads one direction's messages, one at a time: `feed` returns the pieces the bytes
    complete; after an `End`, `next_message` starts the next one with what is already held.

    One h11 connection serves every message of the direction while HTTP lets it (keep-alive),
    cycled between messages: making one per message costs more than reading the message."""

    def __init__(self) -> None:
        self._h11 = self._new_connection()
        self._held = bytearray()  # fed, not handed out yet
        self.head: h11.Request | h11.Response | None = None
        # When the message's first byte arrived (`time.monotonic()`), set by the reader's user.
        self.started_at: float | None = None

    @abc.abstractmethod
    def _new_connection(self) -> h11.Connection:
        """A fresh h11 connection of this direction's role."""

    @abc.abstractmethod
    def first_line_problem(self, held: bytearray) -> str | None:
        """Why the start of the message cannot be HTTP (None: it can, as far as it goes)."""

    def feed(self, data: bytes) -> list[Piece]:
        """Take `data` (b"" for the end of the stream); the pieces it completes, in order. After
        an `End` the reader takes nothing more until `next_message`; after a `NotHttp`,
        nothing at all."""
        self._held += data
        if self.head is None and data:
            problem = self.first_line_problem(self._held)
            if problem is not None:
                return self._fail(problem)
        self._h11.receive_data(data)
        return self._read()

    def _restart(self) -> None:
        """Make h11 ready for the next message: cycled when HTTP keeps the connection, else a
        fresh one given what is held."""
        self.head = None
        self.started_at = None
        connection = self._h11
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
            return
        self._h11 = self._new_connection()
        if self._held:
            self._h11.receive_data(bytes(self._held))

    @property
    def holding(self) -> bool:
        """Bytes were fed that no piece has handed out yet."""
        return bool(self._held)

    def take_held(self) -> bytes:
        """Hand out what is held as it is, and start afresh (bytes no message asked for)."""
        data = bytes(self._held)
        self._held.clear()
        self._h11 = self._new_connection()
        self.head = None
        return data

    def _read_held(self) -> list[Piece]:
        """The pieces of what was held over from the previous message."""
        if not self._held:
            return []
        problem = self.first_line_problem(self._held)
        if problem is not None:
            return self._fail(problem)
        return self._read()

    def _read(self) -> list[Piece]:
        pieces: list[Piece] = []
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                return pieces + self._fail(f"h11 rejected it: {error}")
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if self.head is not None and self._held:
                    pieces.append(Raw(bytes(self._held)))
                    self._held.clear()
                return pieces
            if isinstance(event, h11.Request | h11.Response):
                self._read_head(event, pieces)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                rest = self._h11.trailing_data[0]
                used = len(self._held) - len(rest)
                if used:
                    pieces.append(Raw(bytes(self._held[:used])))
                # What follows is the next message's, and stays in h11's buffer for it.
                del self._held[:used]
                pieces.append(End(rest))
                return pieces
            # Data and 1xx answers: their bytes go out with the rest of the message's.

    def _read_head(self, event: h11.Request | h11.Response, pieces: list[Piece]) -> None:
        # The head first, so that a decision can be made before any of its bytes goes on; then
        # the head's bytes (with any 1xx answers before it); what follows is body.
        rest = len(self._h11.trailing_data[0])
        used = len(self._held) - rest
        self.head = event
        pieces.append(Head(event))
        if used:
            pieces.append(Raw(bytes(self._held[:used]), in_head=True))
            del self._held[:used]

    def _fail(self, reason: str) -> list[Piece]:
        data = bytes(self._held)
        self._held.clear()
        return [NotHttp(reason, data)]


class RequestReader(MessageReader):
    """Reads the requests the client sends."""

    def _new_connection(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    def first_line_problem(self, held: bytearray) -> str | None:
        return request_line_problem(held)

    def next_message(self) -> list[Piece]:
        """Start reading the next request; the pieces of what the client already sent."""
        connection = self._h11
        if connection.our_state is h11.SEND_RESPONSE:
            # h11 cycles once the server has answered: the answer here is the server's (or was
            # made in `answer`), so h11's own is written to nowhere.
            connection.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
            connection.send(h11.EndOfMessage())
        self._restart()
        return self._read_held()

    def answer(
        self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, *, close: bool
    ) -> tuple[bytes, bool]:
        """An answer to this request, written by h11 (framing, HEAD, HTTP/1.0 and `Connection:
        close` as HTTP wants them), and whether the connection must close after it."""
        sent = list(headers)
        if close:
            sent.append(("connection", "close"))
        sent.append(("content-length", str(len(body))))
        h11_connection = self._h11
        data = h11_connection.send(h11.Response(status_code=status, reason=reason, headers=sent))
        data = data or b""
        is_head = self.head is not None and self.head.method == b"HEAD"  # type: ignore[union-attr]
        if body and not is_head:
            data += h11_connection.send(h11.Data(data=body)) or b""
        data += h11_connection.send(h11.EndOfMessage()) or b""
        return data, h11_connection.our_state is h11.MUST_CLOSE

    @property
    def waits_for_continue(self) -> bool:
        """The client sent `Expect: 100-continue` and waits before sending its body."""
        return bool(self._h11.they_are_waiting_for_100_continue)


class AnswerReader(MessageReader):
    """Reads the server's answers, each once `expect` said which request it answers (h11 needs
    the request's method: the answer to a HEAD has no body)."""

    def _new_connection(self) -> h11.Connection:
        return h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)

    def first_line_problem(self, held: bytearray) -> str | None:
        return status_line_problem(held)

    def expect(self, method: bytes) -> list[Piece]:
        """Start reading the answer to a `method` request; the pieces of what the server
        already sent."""
        if self._h11.our_state is not h11.IDLE:
            self._restart()
        self._h11.send(h11.Request(method=method, target="/", headers=[("host", "upstream")]))
        self._h11.send(h11.EndOfMessage())
        return self._read_held()
