"""The plugin's DNS server: UDP and TCP on one free loopback port, built on dnspython.

It answers the names the DNS rules know (A and AAAA records, TTL 0 so that no client caches
across a fault), fails as their faults say (NXDOMAIN, SERVFAIL, REFUSED, no answer at all,
NOERROR without an answer), and refuses every other name, or forwards it to `forward`
(`host:port` of a DNS server) when one is configured. Every query is recorded.

Threads: one for I/O (UDP queries and TCP accepts, answered at once), one that sends the
answers held back by a `delay`, one per TCP connection, and a small pool for forwarding.
`stop()` ends them all.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from pytest_chaos.dns.lookups import Lookup
from pytest_chaos.dns.rules import Outcome
from pytest_chaos.faults import normalize_dns_name

RCODES = {
    "nxdomain": dns.rcode.NXDOMAIN,
    "servfail": dns.rcode.SERVFAIL,
    "refused": dns.rcode.REFUSED,
    "empty": dns.rcode.NOERROR,
}
# The answers change under the test: nothing may be cached.
TTL = 0
UDP_PAYLOAD = 512  # without EDNS, as RFC 1035 says
BIND_ATTEMPTS = 20
FORWARD_WORKERS = 4


class DnsServerError(Exception):
    """The DNS server could not start; the message says why."""


@dataclass(frozen=True)
class Reply:
    """What to do with one query: send `message` (None: stay silent, the client times out)
    after `delay` seconds, or forward the query upstream; `record` describes it."""

    message: dns.message.Message | None
    delay: float = 0.0
    forward: bool = False
    error: str | None = None
    answer: tuple[str, ...] = ()
    fault: str | None = None


class DnsServer:
    """A DNS server on `host` and a free port (`port` after `start()`), for clients that
    take a nameserver: dnspython's `Resolver` (`nameservers=[host]`, `port=port`), aiodns
    (`nameservers=[f"{host}:{port}"]`), `dig @host -p port`."""

    def __init__(
        self,
        decide: Callable[[str], Outcome | None],
        record: Callable[[Lookup], None],
        *,
        forward: tuple[str, int] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        forward_timeout: float = 2.0,
    ) -> None:
        self._decide = decide
        self._record = record
        self.forward = forward
        self.host = host
        self.port = port  # 0: a free one, chosen at start()
        self.forward_timeout = forward_timeout
        self._stopping = threading.Event()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None  # written to by stop() to end the I/O
        self._wake_w: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._later = _Later(self._stopping)
        self._pool = ThreadPoolExecutor(FORWARD_WORKERS, thread_name_prefix="chaos-dns-forward")

    @property
    def address(self) -> str:
        """Where it listens, as "host:port" (before `start()`, port 0 stands for a free one)."""
        return f"{self.host}:{self.port}"

    # -- life
    def start(self) -> DnsServer:
        """Bind UDP and TCP on one port (a free one when `port` is 0) and serve from
        background threads; returns the server. DnsServerError when no port is free for
        both."""
        self._udp, self._tcp = _bind_pair(self.host, self.port)
        self._wake_r, self._wake_w = socket.socketpair()
        self.port = int(self._udp.getsockname()[1])
        self._spawn(self._serve, "chaos-dns-io")
        self._spawn(self._later.run, "chaos-dns-later")
        return self

    def stop(self) -> None:
        """Stop answering and end every thread (queries in flight are dropped)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._later.wake()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    # -- I/O
    def _serve(self) -> None:
        assert self._udp is not None
        assert self._tcp is not None
        assert self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ, "udp")
            selector.register(self._tcp, selectors.EVENT_READ, "tcp")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.data == "udp":
                        self._on_datagram()
                    elif key.data == "tcp":
                        self._on_connection()

    def _on_datagram(self) -> None:
        assert self._udp is not None
        try:
            wire, client = self._udp.recvfrom(65535)
        except OSError:
            return
        query = _parse(wire)
        if query is None:
            return
        received = time.monotonic()
        reply = self._reply(query)
        where = f"{client[0]}:{client[1]}/udp"
        if reply.forward:
            self._pool.submit(self._forward_udp, query, client, reply, received, where)
        elif reply.message is None:
            self._note(query, reply, received, where)
        elif reply.delay > 0:
            self._later.call_at(
                received + reply.delay,
                lambda: self._send_udp(query, reply.message, client, reply, received, where),
            )
        else:
            self._send_udp(query, reply.message, client, reply, received, where)

    def _send_udp(
        self,
        query: dns.message.Message,
        message: dns.message.Message | None,
        client: Any,
        reply: Reply,
        received: float,
        where: str,
    ) -> None:
        assert self._udp is not None
        assert message is not None
        try:
            wire = message.to_wire(max_size=_payload(query))
        except dns.exception.TooBig:
            # Too big for a datagram: the client is told to ask again over TCP.
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC | dns.flags.RA
            truncated.set_rcode(message.rcode())
            wire = truncated.to_wire()
        # Recorded before it is sent: a client that has its answer finds it in the lookups.
        self._note(query, reply, received, where)
        with contextlib.suppress(OSError):
            self._udp.sendto(wire, client)

    def _forward_udp(
        self, query: dns.message.Message, client: Any, reply: Reply, received: float, where: str
    ) -> None:
        self._stopping.wait(reply.delay)
        message, reply = self._forwarded(query, reply, tcp=False)
        if not self._stopping.is_set():
            self._send_udp(query, message, client, reply, received, where)

    def _on_connection(self) -> None:
        assert self._tcp is not None
        try:
            connection, client = self._tcp.accept()
        except OSError:
            return
        with self._lock:
            self._connections.add(connection)
        self._spawn(self._serve_connection, "chaos-dns-tcp", connection, client)

    def _serve_connection(self, connection: socket.socket, client: Any) -> None:
        where = f"{client[0]}:{client[1]}/tcp"
        try:
            while not self._stopping.is_set():
                try:
                    query, _ = dns.query.receive_tcp(connection)
                except (EOFError, OSError, dns.exception.DNSException):
                    return
                received = time.monotonic()
                reply = self._reply(query)
                if self._stopping.wait(reply.delay):
                    return
                message = reply.message
                if reply.forward:
                    message, reply = self._forwarded(query, reply, tcp=True)
                # Recorded before it is sent, as over UDP.
                self._note(query, reply, received, where)
                if message is not None:
                    try:
                        dns.query.send_tcp(connection, message)
                    except OSError:
                        return
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    # -- answers
    def _reply(self, query: dns.message.Message) -> Reply:
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            return Reply(_response(query, dns.rcode.NOTIMP), error="not a single query")
        question = query.question[0]
        name = normalize_dns_name(question.name.to_text(omit_final_dot=True))
        outcome = self._decide(name)
        if outcome is None:
            return self._unknown(query)
        fault = outcome.fault_text
        if outcome.error == "timeout":
            return Reply(None, delay=outcome.delay, error="timeout (no answer)", fault=fault)
        if outcome.error is not None:
            response = _response(query, RCODES[outcome.error])
            return Reply(response, delay=outcome.delay, error=outcome.error, fault=fault)
        if outcome.addresses is None:
            # A name the fault let through, that the plugin does not answer itself.
            unknown = self._unknown(query)
            return Reply(
                unknown.message,
                delay=outcome.delay,
                forward=unknown.forward,
                error=unknown.error,
                fault=fault,
            )
        response = _response(query, dns.rcode.NOERROR)
        response.flags |= dns.flags.AA
        answer = _records(question.name, question.rdtype, outcome.addresses)
        response.answer.extend(answer)
        found = tuple(str(rdata) for rrset in answer for rdata in rrset)
        return Reply(response, delay=outcome.delay, answer=found, fault=fault)

    def _unknown(self, query: dns.message.Message) -> Reply:
        if self.forward is not None:
            return Reply(None, forward=True)
        return Reply(_response(query, dns.rcode.REFUSED), error="refused (unknown name)")

    def _forwarded(
        self, query: dns.message.Message, reply: Reply, *, tcp: bool
    ) -> tuple[dns.message.Message, Reply]:
        assert self.forward is not None
        host, port = self.forward
        ask = dns.query.tcp if tcp else dns.query.udp
        try:
            response = ask(query, host, port=port, timeout=self.forward_timeout)
        except (dns.exception.DNSException, OSError) as problem:
            failed = _response(query, dns.rcode.SERVFAIL)
            return failed, Reply(
                failed,
                error=f"servfail (forwarding to {host}:{port}: {problem})",
                fault=reply.fault,
            )
        found = tuple(
            str(rdata)
            for rrset in response.answer
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
            for rdata in rrset
        )
        rcode = response.rcode()
        error = None if rcode == dns.rcode.NOERROR else dns.rcode.to_text(rcode).lower()
        return response, Reply(
            response,
            answer=found,
            error=error,
            fault=reply.fault,
        )

    def _note(self, query: dns.message.Message, reply: Reply, received: float, where: str) -> None:
        # (an RRset of a question is empty, hence false: compare with None)
        question = query.question[0] if query.question else None
        name = question.name.to_text(omit_final_dot=True) if question is not None else "?"
        kind = dns.rdatatype.to_text(question.rdtype) if question is not None else "?"
        forwarded = " forwarded" if reply.forward else ""
        self._record(
            Lookup(
                received,
                "server",
                normalize_dns_name(name),
                answer=reply.answer,
                error=reply.error,
                fault=reply.fault,
                duration=time.monotonic() - received,
                detail=f"{kind} from {where}{forwarded}",
            )
        )


def _bind_pair(host: str, port: int = 0) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to `port` (0: one free port for both) of `host`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for _ in range(BIND_ATTEMPTS if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.bind((host, udp.getsockname()[1]))
                tcp.listen(64)
            except OSError as error:
                tcp.close()
                raise error
        except OSError as error:
            udp.close()
            last = error
            continue
        return udp, tcp
    if port:
        raise DnsServerError(f"port {port} of {host} is not free for both UDP and TCP: {last}")
    raise DnsServerError(f"no port of {host} was free for both UDP and TCP: {last}")


def _parse(wire: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None  # not a DNS message: nothing sensible to answer


def _payload(query: dns.message.Message) -> int:
    return max(UDP_PAYLOAD, query.payload) if query.edns >= 0 else UDP_PAYLOAD


def _response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query)
    # The plugin's server acts as the recursive resolver its clients talk to.
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    return response


def _records(name: Any, rdtype: int, addresses: tuple[str, ...]) -> list[dns.rrset.RRset]:
    """The A and AAAA records of `addresses` that answer a question of type `rdtype`."""
    wanted = []
    if rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
        wanted.append(("A", [a for a in addresses if ":" not in a]))
    if rdtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY):
        wanted.append(("AAAA", [a for a in addresses if ":" in a]))
    return [
        dns.rrset.from_text_list(name, TTL, dns.rdataclass.IN, kind, found)
        for kind, found in wanted
        if found
    ]


class _Later:
    """Runs callbacks at their due time (time.monotonic()) on one thread."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._condition = threading.Condition()

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        with self._condition:
            heapq.heappush(self._due, (when, next(self._order), callback))
            self._condition.notify()

    def wake(self) -> None:
        with self._condition:
            self._condition.notify()

    def run(self) -> None:
        while True:
            with self._condition:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        break
                    timeout = self._due[0][0] - now if self._due else None
                    self._condition.wait(timeout)
                if self._stopping.is_set():
                    return
                _, _, callback = heapq.heappop(self._due)
            callback()
