"""The record of what the engine saw: connections, dials, bytes, closes and fault changes.

Served by `GET /events?since=SEQ&proxy=NAME&limit=N` as
`{"events": [...], "last_seq": int, "oldest_seq": int}`: the events with a sequence number
above `since` (default 0: all kept), of one proxy when `proxy` is given, at most `limit`.
`last_seq` is the number to pass as `since` next time: the last event returned when `limit`
cut the answer short, else the last event recorded. `oldest_seq` is the oldest event still
kept; a reader whose `since` is below `oldest_seq - 1` has missed events.

The log keeps the newest 100,000 events, and fewer when they are large: the oldest are dropped
once the kept events would take more than 64 MiB by the log's own estimate (see
`estimated_size`). A connection records about seven events, of about 470 bytes each as kept
(a `closed` event about 800), so the log reaches its count cap after some 15,000 connections,
at about 47 MB of the engine's memory, and stays there: that, not a leak, is why a long-lived
engine grows by that much and then no more.

Every event has these fields:

- `seq` (int): 1, 2, 3... in the order events are recorded.
- `time` (float): when it happened, in seconds of `time.monotonic()`, which on Linux is the
  same clock in every process of the machine, so a test can line events up with its own
  `time.monotonic()` readings.
- `kind` (str): one of the kinds below.
- `proxy` (str | null): the proxy's name; null for `reset`.

Kinds and their other fields:

- `proxy_created`, `proxy_updated`: `listen` (str, the bound address once listening),
  `upstream` (str), `enabled` (bool).
- `proxy_deleted`: none.
- `reset`: none (every proxy re-enabled, every toxic removed; no `toxic_removed` events).
- `toxic_added`, `toxic_updated`, `toxic_removed`: `toxic` (object): the toxic as the API shows
  it (`attributes`, `name`, `type`, `stream`, `toxicity`).

Connection events also carry `connection` (int): an id unique within the engine (across all
its proxies), the same in every event of that connection.

- `accepted`: `client` (str | null): the client's `host:port`.
- `upstream_connected`: `upstream` (str), `dial_ms` (float): how long the dial took.
- `upstream_failed`: `upstream` (str), `error` (str): the reason with its errno, e.g.
  `"Connection refused (errno 111)"`. The client's connection is then closed with a FIN.
- `toxics_active`: `toxics` (object): `{"upstream": [names], "downstream": [names]}`, the
  toxics whose toxicity roll landed on this connection; only when there is at least one.
- `data`: bytes read from one side. `direction` (str): `upstream` (client to server) or
  `downstream` (server to client); `bytes` (int); `time`: when the first of these bytes
  arrived; `until` (float): when the last of them arrived. One event covers a run of reads
  of one direction lasting under 50 ms. A run is recorded when it ends, which is when a read
  comes 50 ms or more after the run began, when that side sends its FIN, when the connection
  closes, when the proxy's toxics change, and before any `GET /events` is answered. So an
  answer holds every byte the engine had read before the request arrived, and a data event's
  `seq` can come after events that happened later than its `time`: sort by `time` when the
  order of happenings matters.
- `half_closed`: `side` (str): `client` or `server`, the side that sent a FIN.
- `closed`: `by` (str): `client`, `server`, `proxy`, `proxy: upstream dial failed`,
  `proxy: timeout toxic removed` or `toxic NAME (REASON)`; `reset` (bool): closed with a TCP
  RST; `duration_ms` (float); `bytes` (object): per direction `{"in": int, "out": int}`,
  read and written (`{}` when the upstream dial failed); `error` (str, only when a socket error
  or a failed dial closed it).

Events of the `packet_loss` toxic on TCP (see `toxics/packet_loss.py`), also with `connection`:

- `retransmitted`: a segment lost at least once. `direction` (str), `toxic` (str, its name),
  `bytes` (int, the segment's size; 0 for the end of stream), `fin` (bool: the segment is the
  end of stream), `losses` (int: transmissions lost), `rto_ms` (float: the first retransmission
  timeout), `stalled_ms` (float: from the first transmission to the one that got through, or to
  giving up), `gave_up` (bool: the connection was then reset); `time`: the first transmission,
  `until`: when it got through (or the reset). Recorded when it got through.
- `syn_lost`: the handshake lost `losses` (int) SYNs or SYN-ACKs; `delay_ms` (float): how long
  the dial to the upstream was held back; `gave_up` (bool: the connection was then reset);
  `toxics` (list of str): the packet_loss toxics acting on it. `time`: when it was accepted.

Events of UDP proxies (`engine/udp/`) carry `session` (int) instead of `connection`: an id
from the same sequence, so unique across the engine's connections and sessions.

- `session_opened`: a datagram from a new client address. `client` (str): its `host:port`;
  `upstream` (str); `toxics` (object): `{"upstream": [names], "downstream": [names]}` acting
  on the session.
- `datagrams`: what happened in one `direction` within one run of under 50 ms (recorded as
  `data` runs are, and before any `GET /events` is answered): `received` and `sent` (int:
  datagrams read from one side and written to the other, duplicates included),
  `received_bytes` and `sent_bytes` (int), and the numbers (0 for the session's first datagram
  in that direction) of the datagrams `dropped`, `duplicated`, `corrupted` and `reordered`
  (lists of int) then. `time` and `until`: the first and last happening of the run.
- `session_error`: the upstream socket got `error` (str, e.g. `"Connection refused (errno
  111)"`: nothing listens there; the client is not told, and times out), or the upstream could
  not be used; each distinct error once per session.
- `session_closed`: `by` (str): `idle`, `proxy`, `proxy: upstream unusable`, `proxy: too many
  sessions` or `toxic NAME (REASON)`; `duration_ms` (float); `datagrams` (object): per
  direction, totals `in`, `out`, `bytes_in`, `bytes_out`, `dropped`, `duplicated`,
  `corrupted`, `reordered` (int).
HTTP events, on a proxy that has had an HTTP-aware toxic (`http_error`, `http_delay`,
`http_abort`; see `engine/http_toxics`), whose connections are then read as HTTP/1.1:

- `http_request`: one request, recorded once it is over (answered, cut, or its connection
  gone), so its `seq` comes after events that happened later than its `time`. `time`: when
  its first byte arrived; `until` (float): when its answer was over. `method` (str); `path`
  (str): the request target as sent (path and query); `status` (int | null): the answer's
  status, the server's or an `http_error`'s (null when no head came); `reached_upstream`
  (bool): its bytes went on to the upstream link (false when an `http_error` answered it, or
  the connection ended while a delay held it); `fault` (str | null): the type of the toxic
  that decided its fate (`http_error`, `http_abort`, else `http_delay` when it was only
  delayed); `toxics` (list of str): the names of the toxics that acted on it; `delay_ms`
  (float): how long it was held; `retry_after` (float | null): the answer's Retry-After in
  seconds; `outcome` (str): `answered` (a whole answer went to the client), `aborted` (cut by
  `http_abort`, the connection reset), `unanswered` (the connection ended first) or
  `untracked` (the answer was passed on unparsed, see `http_passthrough`).
- `http_passthrough`: the connection is passed through unparsed from now on. `side` (str):
  `client` or `server`, whose bytes were not HTTP/1.x; `reason` (str): e.g. `a TLS handshake
  (HTTPS is out of scope)`, `not an HTTP/1.x request line: b'*1'`, `h11 rejected it: ...`,
  `a protocol switch (Upgrade): not parsed from here`.

On such a proxy, `data` and `closed` count the bytes the HTTP layer fed each link: a request
an `http_error` answered never enters the upstream link, and its answer enters the downstream
one as the server's would; a delayed request enters when its delay is over.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

Event = dict[str, Any]
# How the log keeps an event: (seq, time, kind, proxy, its other fields). A tuple around the
# recorder's own dict of fields, made into an `Event` only when read: the log writes far more
# than it is read (several events per connection), and on a busy loop the memory a whole event
# dict takes and touches was most of what recording cost.
Entry = tuple[int, float, str, str | None, dict[str, Any]]

DEFAULT_CAPACITY = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Per kept event beyond its fields' dict and values: its entry tuple, sequence number and
# stamp, and its slots in the log's two deques.
EVENT_OVERHEAD_BYTES = 170


def estimated_size(fields: dict[str, Any]) -> int:
    """What an event with these fields (besides `seq`, `time`, `kind`) costs in memory.

    CPython 3.11's object sizes, summed without looking for sharing, so it errs high: +33 %
    over what tracemalloc measures for a short connection's events as the log keeps them
    (`Entry`), from +59 % for a `closed` event to 2.7 times for a `data` event, whose strings
    are shared literals. Strings (an HTTP path, an error, a proxy name) are what can make an
    event large.
    """
    return _values_bytes(fields.values(), EVENT_OVERHEAD_BYTES + _dict_bytes(len(fields)))


def _dict_bytes(entries: int) -> int:
    # A dict's table grows in steps: 184 bytes up to 5 entries, 272 up to 10, 464 up to 21.
    if entries <= 5:
        return 184
    if entries <= 10:
        return 272
    return 464 if entries <= 21 else 40 * entries


def _values_bytes(values: Iterable[Any], size: int) -> int:
    # `size` plus what `values` take. Every accepted connection records several events, so
    # this is a hot path: flat values are sized in the loop, without a call each.
    for value in values:
        kind = type(value)
        if kind is str:
            size += 49 + len(value)
        elif kind is int or kind is float:
            size += 32
        elif kind is dict:
            size += _values_bytes(value.values(), _dict_bytes(len(value)))
        elif value is not None and kind is not bool:
            size += _bytes_of(value)
    return size


def _bytes_of(value: Any) -> int:
    if isinstance(value, dict):
        return _values_bytes(value.values(), _dict_bytes(len(value)))
    if isinstance(value, list | tuple):
        return _values_bytes(value, 56 + 8 * len(value))
    if isinstance(value, str):
        return 49 + len(value)
    if isinstance(value, int | float):
        return 32
    if value is None or isinstance(value, bool):
        return 0  # singletons
    return 64  # nothing else is recorded today: a small object


class OpenRun(Protocol):
    """Something holding bytes not yet in a `data` event (a link's current run)."""

    def close_data_run(self) -> None:
        """Record the bytes held as a `data` event."""
        ...


class EventLog:
    """A bounded, append-only log of events; the oldest are dropped when it is full.

    Full is `capacity` events, or `max_bytes` of them by `estimated_size`, whichever comes
    first (the newest event is always kept).
    """

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self._events: deque[Entry] = deque()
        # The estimated size of each kept event, in the same order.
        self._sizes: deque[int] = deque()
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.estimated_bytes = 0
        self.last_seq = 0
        self._open_runs: set[OpenRun] = set()

    def record(
        self, kind: str, proxy: str | None = None, *, at: float | None = None, **fields: Any
    ) -> None:
        """Append an event stamped `at` (default: now, `time.monotonic()`)."""
        self.append(kind, proxy, fields, at)

    def append(
        self,
        kind: str,
        proxy: str | None,
        fields: dict[str, Any],
        at: float | None = None,
        size: int | None = None,
    ) -> None:
        """`record`, with the fields in a dict the caller made for it and gives up (kept as
        it is, its keys after `proxy` in its order), and their `estimated_size` if the caller
        knows it already: the engine's hot paths save a dict and a walk over the fields."""
        seq = self.last_seq + 1
        if size is None:
            size = estimated_size(fields)
        if proxy is not None:
            size += 49 + len(proxy)
        events, sizes = self._events, self._sizes
        events.append((seq, time.monotonic() if at is None else at, kind, proxy, fields))
        sizes.append(size)
        self.last_seq = seq
        estimated = self.estimated_bytes + size
        # Drop the oldest events until the log is within both caps (the newest always stays).
        while len(events) > self.capacity or (estimated > self.max_bytes and len(events) > 1):
            events.popleft()
            estimated -= sizes.popleft()
        self.estimated_bytes = estimated

    # -- data runs not recorded yet
    def run_opened(self, run: OpenRun) -> None:
        """`run` holds bytes not yet recorded: `close_open_runs` will ask it to record them."""
        self._open_runs.add(run)

    def run_closed(self, run: OpenRun) -> None:
        """`run` has recorded its bytes."""
        self._open_runs.discard(run)

    def close_open_runs(self) -> None:
        """Record every pending data run, so that a reader sees every byte read until now."""
        for run in list(self._open_runs):
            run.close_data_run()

    # -- reading
    def snapshot(self, seq: int = 0) -> list[Entry]:
        """The entries of the events with a sequence number above `seq`, oldest first
        (references, no copies; `select` makes them events).

        Recorded events are never changed afterwards, so the list can be read bit by bit.
        """
        events = self._events
        if not events or seq >= self.last_seq:
            return []
        first = events[0][0]
        if seq < first:
            return list(events)
        # Sequence numbers are dense, so the first new event sits at a known offset.
        return list(itertools.islice(events, seq - first + 1, None))

    def since(
        self, seq: int = 0, *, proxy: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Events with a sequence number above `seq`, oldest first, optionally for one proxy."""
        return list(select(self.snapshot(seq), proxy=proxy, limit=limit))

    @property
    def oldest_seq(self) -> int:
        """The sequence number of the oldest event kept (`last_seq + 1` when none is)."""
        return self._events[0][0] if self._events else self.last_seq + 1

    def __len__(self) -> int:
        return len(self._events)


def select(entries: list[Entry], *, proxy: str | None, limit: int | None) -> Iterator[Event]:
    """The events of `proxy` (all when None) among `entries`, at most `limit` of them, each a
    new dict."""
    chosen: Iterator[Entry] = iter(entries)
    if proxy is not None:
        chosen = (entry for entry in chosen if entry[3] == proxy)
    if limit is not None:
        chosen = itertools.islice(chosen, min(limit, sys.maxsize))
    for seq, stamp, kind, name, fields in chosen:
        yield {"seq": seq, "time": stamp, "kind": kind, "proxy": name, **fields}
