"""The HTTP layer of one connection: requests and answers read with h11, the HTTP toxics'
decisions carried out, and one `http_request` event per request.

It sits in front of both links (see the package's docstring). Client bytes are cut into
requests; each request's head is judged by the proxy's HTTP toxics in the order they were
added (`base.RequestPlan`), then its bytes go to the upstream link (through the *gate*, which
holds delayed requests and everything behind them, in order), or are swallowed when the layer
answers the request itself. Answers are owed to the client in request order (`pending`): the
server's answers are cut with h11 and passed as they come when their exchange is first in
line; an answer made here goes out when every answer before it has, and its delay is over.

Connections already open when their proxy gets its first HTTP toxic are taken to be between
two exchanges: a client that does not pipeline sends its next request only once it has read
the previous answer, so that answer has passed. Should the next bytes not start a request or
an answer, the layer stops parsing that connection (an `http_passthrough` event).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import h11

from pytest_chaos.engine.http_toxics.base import HttpToxic
from pytest_chaos.engine.http_toxics.parsing import (
    AnswerReader,
    End,
    Head,
    NotHttp,
    Piece,
    Raw,
    RequestReader,
)
from pytest_chaos.http_rules import RequestPlan, plan_request

if TYPE_CHECKING:
    from pytest_chaos.engine.connection import Connection
    from pytest_chaos.engine.link import ToxicSetting

# The side names of `connection.py` (not imported from there: it imports this module).
CLIENT = "client"
# How long an abort waits for the answer's bytes it let through to leave the downstream link
# (whose toxics may hold them) before it resets the connection anyway, and how often it looks.
ABORT_FLUSH_SECONDS = 5.0
ABORT_POLL_SECONDS = 0.001
# The loop's timers round to the millisecond and fire late when the loop is busy: they are
# set this much early, and the rest is waited out turn by turn of the loop.
TIMER_MARGIN = 0.002


@dataclass(eq=False)
class Exchange:
    """One request and its answer."""

    method: str
    target: str
    arrived: float
    plan: RequestPlan
    # When its bytes may go upstream, or its answer made here may go out (arrival + delay).
    release_at: float
    reached_upstream: bool = False
    # Answer bytes for the client, not passed on yet, and whether the answer is all there.
    out: list[bytes] = field(default_factory=list)
    answer_done: bool = False
    outcome: str = "answered"
    status: int | None = None
    retry_after: float | None = None
    close_after: bool = False
    body_bytes: int = 0
    cut: bool = False
    answer_started: bool = False
    recorded: bool = False

    @property
    def answered_here(self) -> bool:
        """An `http_error` answers it here: it never goes upstream."""
        return self.plan.error is not None


class HttpLayer:
    """Carries out the HTTP toxics on one connection (made by `Connection` on first need)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.proxy = connection.proxy
        self.up = connection.links["upstream"]
        self.down = connection.links["downstream"]
        self.loop = asyncio.get_running_loop()
        self.toxics: list[ToxicSetting] = []
        self._rolls: dict[tuple[str, float], bool] = {}
        # None once the client's bytes are no longer parsed (then passed as they are).
        self.reader: RequestReader | None = RequestReader()
        self.answers = AnswerReader()
        self.current: Exchange | None = None  # the request being read
        self.pending: deque[Exchange] = deque()  # answers owed to the client, in order
        self.awaiting: deque[Exchange] = deque()  # passed upstream, answer not complete
        self.answers_parsed = True
        self.swallowing = False  # after an answer that closes: the client's bytes are dropped
        self.server_eof = False
        self.eof_sent = False
        self.cutting = False  # an abort is under way: the server's bytes are dropped
        self.closed = False
        # The gate: (not before, bytes or None for the client's FIN, exchange) for upstream.
        self.held: deque[tuple[float, bytes | None, Exchange | None]] = deque()
        self._gate_timer: asyncio.Handle | None = None
        self._answer_timer: asyncio.Handle | None = None

    # -- toxics
    def set_toxics(self, settings: Sequence[ToxicSetting]) -> None:
        """Judge requests from now on by `settings` (the proxy's HTTP toxics, in order)."""
        self.toxics = list(settings)
        if not any(setting.type == "http_delay" for setting in settings):
            # No delay left: what the removed ones held goes on now, in order, as a removed
            # latency toxic's chunks do.
            for exchange in self.pending:
                exchange.release_at = min(exchange.release_at, time.monotonic())
            self._release(force=True)
            self._flush()

    def _plan(self, method: str, target: str, headers: list[tuple[str, str]]) -> RequestPlan:
        states = []
        for setting in self.toxics:
            toxic = setting.toxic
            assert isinstance(toxic, HttpToxic)
            if self._acts_here(setting):
                states.append(toxic.state(self.proxy.seed, self.proxy.name, setting.name))
        return plan_request(states, method, target, headers)

    def _acts_here(self, setting: ToxicSetting) -> bool:
        """The toxicity roll: whether the toxic acts on this connection (as for plain toxics,
        one roll per connection and toxic, from the seed and the connection's number)."""
        if setting.toxicity >= 1:
            return True
        key = (setting.name, setting.toxicity)
        rolled = self._rolls.get(key)
        if rolled is None:
            seed, index = self.proxy.seed, self.connection.index
            draws = random.Random(
                None if seed is None else f"{seed}/{self.proxy.name}/{index}/http/{setting.name}"
            )
            rolled = self._rolls[key] = draws.random() < setting.toxicity
        return rolled

    # -- from the sides
    def data_from(self, side: str, data: bytes) -> None:
        """Bytes read from `side` (`client` or `server`)."""
        if side == CLIENT:
            self._from_client(data)
        else:
            self._from_server(data)

    def eof_from(self, side: str) -> None:
        """`side` sent its FIN."""
        if side == CLIENT:
            self._client_eof()
        else:
            self._server_eof()

    def connection_closed(self) -> None:
        """The connection closed: record the requests still in flight, stop the timers."""
        self.closed = True
        for timer in (self._gate_timer, self._answer_timer):
            if timer is not None:
                timer.cancel()
        self.held.clear()
        for exchange in self.pending:
            self._record(exchange, "aborted" if exchange.cut else "unanswered")
        if self.current is not None:
            self._record(self.current, "unanswered")
        self.pending.clear()

    # -- requests
    def _from_client(self, data: bytes) -> None:
        if self.swallowing:
            return
        reader = self.reader
        if reader is None:
            self._pass_up(data, None)
            return
        now = time.monotonic()
        if reader.started_at is None:
            reader.started_at = now
        pieces = reader.feed(data)
        while pieces and not self.swallowing:
            pieces = self._request_pieces(pieces, now)

    def _request_pieces(self, pieces: list[Piece], now: float) -> list[Piece]:
        """Act on a request reader's pieces; after a complete request, the pieces of the next
        one as far as the client sent it."""
        for piece in pieces:
            if self.swallowing:
                return []
            if isinstance(piece, Head):
                assert isinstance(piece.message, h11.Request)
                self._request_head(piece.message, now)
            elif isinstance(piece, Raw):
                self._request_bytes(piece.data)
            elif isinstance(piece, End):
                self._request_end()
                reader = self.reader
                if reader is None:
                    self._pass_up(piece.rest, None)
                    return []
                if self.swallowing:
                    return []
                following = reader.next_message()
                if piece.rest:
                    reader.started_at = now
                return following
            else:
                self._stop_requests(piece.reason, piece.data)
        return []

    def _request_head(self, request: h11.Request, now: float) -> None:
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("latin-1")
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers]
        if method == "CONNECT" or any(name == b"upgrade" for name, _ in request.headers):
            # After a protocol switch the bytes are not HTTP/1.1 any more.
            what = "CONNECT" if method == "CONNECT" else "Upgrade"
            self._stop_requests(f"a protocol switch ({what}): not parsed from here", b"")
            return
        plan = self._plan(method, target, headers)
        assert self.reader is not None
        assert self.reader.started_at is not None
        arrived = self.reader.started_at
        exchange = Exchange(method, target, arrived, plan, release_at=arrived + plan.delay)
        self.current = exchange
        self.pending.append(exchange)
        if not exchange.answered_here:
            self.awaiting.append(exchange)
        elif self.reader.waits_for_continue:
            # The client waits for a 100 Continue before sending its body: answer now, and
            # close after the answer, since the body may or may not follow (RFC 9110, 10.1.1).
            self._answer(exchange, close=True)

    def _request_bytes(self, data: bytes) -> None:
        exchange = self.current
        if exchange is None:
            self._pass_up(data, None)
        elif not exchange.answered_here:
            self._pass_up(data, exchange)
        # else: the request is answered here, its bytes never go upstream.

    def _request_end(self) -> None:
        exchange, self.current = self.current, None
        if exchange is not None and exchange.answered_here and not exchange.answer_done:
            self._answer(exchange, close=False)
        self._flush()

    def _answer(self, exchange: Exchange, *, close: bool) -> None:
        """Write the answer of the `http_error` that took `exchange`; it goes out in turn."""
        fault = exchange.plan.error
        assert fault is not None
        assert self.reader is not None
        data, must_close = self.reader.answer(
            fault.status, fault.reason, fault.answer_headers(), fault.answer_body(), close=close
        )
        exchange.out.append(data)
        exchange.answer_done = True
        exchange.status = fault.status
        exchange.retry_after = None if fault.retry_after is None else float(fault.retry_after)
        exchange.close_after = must_close
        if must_close:
            # Nothing the client sends after a request answered with a close is read.
            self.swallowing = True
        self._flush()

    def _stop_requests(self, reason: str, data: bytes) -> None:
        if self.reader is not None:
            self._record_passthrough("client", reason)
        self.reader = None
        self.current = None
        self._pass_up(data, None)

    def _client_eof(self) -> None:
        reader = self.reader
        if reader is not None and not self.swallowing:
            # An unfinished request is passed on as it is (the server decides what it means).
            for piece in reader.feed(b""):
                if isinstance(piece, Raw | NotHttp) and piece.data:
                    self._request_bytes(piece.data)
            self.reader = None
        current, self.current = self.current, None
        if current is not None and current.answered_here and not current.answer_done:
            current.answer_done, current.outcome = True, "unanswered"
            self._flush()
        self._pass_up(None, None)

    # -- the gate: what goes upstream, in order, no earlier than its time
    def _pass_up(self, data: bytes | None, exchange: Exchange | None) -> None:
        """Send `data` (None: the client's FIN) upstream once `exchange`'s delay is over and
        everything before it has gone."""
        if data == b"":
            return
        not_before = exchange.release_at if exchange is not None else 0.0
        if not self.held and not_before <= time.monotonic():
            self._feed_up(data, exchange)
            return
        self.held.append((not_before, data, exchange))
        self._arm_gate()

    def _feed_up(self, data: bytes | None, exchange: Exchange | None) -> None:
        if data is None:
            self.up.feed_eof()
            return
        if exchange is not None:
            exchange.reached_upstream = True
        self.up.feed(data)

    def _arm_gate(self) -> None:
        if self._gate_timer is None and self.held and not self.closed:
            self._gate_timer = self._call_at(self.held[0][0], self._release)

    def _call_at(self, due: float, callback: Callable[[], None]) -> asyncio.Handle:
        """Call `callback` at `due` (`time.monotonic()`), never before, and as close to it as
        the loop allows (see TIMER_MARGIN); `callback` re-arms while it is early."""
        wait = due - time.monotonic()
        if wait <= TIMER_MARGIN:
            return self.loop.call_soon(callback)
        return self.loop.call_later(wait - TIMER_MARGIN, callback)

    def _release(self, *, force: bool = False) -> None:
        self._gate_timer = None
        now = time.monotonic()
        while self.held and not self.closed and (force or self.held[0][0] <= now):
            _, data, exchange = self.held.popleft()
            self._feed_up(data, exchange)
        self._arm_gate()

    # -- answers
    def _from_server(self, data: bytes) -> None:
        if self.cutting:
            return
        incoming: bytes | None = data
        while self.answers_parsed and not self.cutting:
            if not self.awaiting:
                # Nothing asked for it (a server's 408 before it closes): as it is.
                leftover = self.answers.take_held() + (incoming or b"")
                if leftover:
                    self.down.feed(leftover)
                return
            exchange = self.awaiting[0]
            abort = exchange.plan.abort
            if abort is not None and abort.after_bytes == 0:
                if incoming or self.answers.holding:
                    self._cut(exchange)
                return
            if not exchange.answer_started:
                exchange.answer_started = True
                method = exchange.method.encode("ascii", "replace")
                if self._answer_pieces(exchange, self.answers.expect(method)):
                    continue  # answered by what the server had sent already
            if incoming is None:
                return
            pieces, incoming = self.answers.feed(incoming), None
            self._answer_pieces(exchange, pieces)
        if incoming:
            self.down.feed(incoming)  # no longer parsed: as it is

    def _answer_pieces(self, exchange: Exchange, pieces: list[Piece]) -> bool:
        """Act on the answer reader's pieces for `exchange`; True when its answer is complete."""
        done = self._take_answer_pieces(exchange, pieces)
        self._flush()
        return done

    def _take_answer_pieces(self, exchange: Exchange, pieces: list[Piece]) -> bool:
        for piece in pieces:
            if self.cutting or not self.answers_parsed:
                return False
            if isinstance(piece, Head):
                assert isinstance(piece.message, h11.Response)
                exchange.status = piece.message.status_code
                exchange.retry_after = retry_after_seconds(piece.message.headers)
            elif isinstance(piece, Raw):
                abort = exchange.plan.abort
                if piece.in_head or abort is None:
                    exchange.out.append(piece.data)
                    continue
                room = abort.after_bytes - exchange.body_bytes
                exchange.out.append(piece.data[:room])
                exchange.body_bytes += min(room, len(piece.data))
                if len(piece.data) > room:
                    self._cut(exchange)
                    return False
            elif isinstance(piece, End):
                exchange.answer_done = True
                self.awaiting.popleft()
                return True
            else:
                self._stop_answers(exchange, piece.reason, piece.data)
                return False
        return False

    def _cut(self, exchange: Exchange) -> None:
        """http_abort: nothing more of this answer; the connection is reset once what was let
        through has gone out."""
        exchange.cut = True
        exchange.answer_done = True
        self.cutting = True
        self.awaiting.clear()
        self._flush()

    def _stop_answers(self, exchange: Exchange, reason: str, data: bytes) -> None:
        self._record_passthrough("server", reason)
        self.answers_parsed = False
        self.reader = None
        exchange.out.append(data)
        for unanswered in self.awaiting:
            unanswered.answer_done, unanswered.outcome = True, "untracked"
        self.awaiting.clear()
        self._flush()

    def _server_eof(self) -> None:
        self.server_eof = True
        if self.answers_parsed and self.awaiting and not self.cutting:
            # An answer without a length ends with the connection.
            exchange = self.awaiting[0]
            pieces = []
            if not exchange.answer_started:
                exchange.answer_started = True
                pieces = self.answers.expect(exchange.method.encode("ascii", "replace"))
            if not any(isinstance(piece, End) for piece in pieces):
                pieces += self.answers.feed(b"")
            if pieces and not isinstance(pieces[-1], End):
                # Cut short by the server's close: what came goes on, the answer is incomplete.
                exchange.out += [p.data for p in pieces if isinstance(p, Raw | NotHttp)]
                exchange.answer_done, exchange.outcome = True, "unanswered"
                self.awaiting.popleft()
            else:
                self._take_answer_pieces(exchange, pieces)
        self._flush()
        if not self.answers_parsed:
            self._send_eof()

    def _flush(self) -> None:
        """Pass on the answers owed to the client, in order, as far as they are ready."""
        now = time.monotonic()
        while self.pending and not self.closed:
            exchange = self.pending[0]
            if exchange.answered_here and exchange.release_at > now:
                self._arm_answer(exchange.release_at)
                return
            for chunk in exchange.out:
                self.down.feed(chunk)
            exchange.out.clear()
            if exchange.cut:
                self.pending.popleft()
                self._record(exchange, "aborted")
                self._reset_when_passed(exchange, now + ABORT_FLUSH_SECONDS)
                return
            if not exchange.answer_done:
                break
            self.pending.popleft()
            self._record(exchange, exchange.outcome)
            if exchange.close_after:
                self._send_eof()
                return
        if self.server_eof and (not self.pending or not self.pending[0].answered_here):
            self._send_eof()

    def _arm_answer(self, due: float) -> None:
        if self._answer_timer is None:
            self._answer_timer = self._call_at(due, self._answer_due)

    def _answer_due(self) -> None:
        self._answer_timer = None
        self._flush()

    def _send_eof(self) -> None:
        if not self.eof_sent:
            self.eof_sent = True
            self.down.feed_eof()

    def _reset_when_passed(self, exchange: Exchange, deadline: float) -> None:
        """Reset the connection once the downstream link has written what the abort let
        through (its toxics may still hold some), or at `deadline`."""
        if self.closed:
            return
        client = self.connection.client
        waiting = self.down.bytes_out < self.down.bytes_in or (
            client is not None and client.get_write_buffer_size() > 0
        )
        if waiting and time.monotonic() < deadline:
            self.loop.call_later(ABORT_POLL_SECONDS, self._reset_when_passed, exchange, deadline)
            return
        self.connection.close(by=f"toxic {exchange.plan.cut_by} (http_abort)", reset=True)

    # -- the record
    def _record(self, exchange: Exchange, outcome: str) -> None:
        if exchange.recorded:
            return
        exchange.recorded = True
        self.proxy.events.record(
            "http_request",
            proxy=self.proxy.name,
            at=exchange.arrived,
            connection=self.connection.id,
            method=exchange.method,
            path=exchange.target,
            status=exchange.status,
            reached_upstream=exchange.reached_upstream,
            **exchange.plan.recorded(),
            retry_after=exchange.retry_after,
            outcome=outcome,
            until=time.monotonic(),
        )

    def _record_passthrough(self, side: str, reason: str) -> None:
        self.proxy.events.record(
            "http_passthrough",
            proxy=self.proxy.name,
            connection=self.connection.id,
            side=side,
            reason=reason,
        )


def retry_after_seconds(headers: Sequence[tuple[bytes, bytes]]) -> float | None:
    """An answer's Retry-After in seconds: its delta-seconds, or the time until its HTTP-date
    (never below 0); None without one or when it is neither."""
    for name, value in headers:
        if name.lower() != b"retry-after":
            continue
        text = value.decode("latin-1").strip()
        if text.isdigit():
            return float(text)
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return None
