"""A reference DNS server for comparisons: what a real server answering each failure sends,
decided by the first label of the name (independent of the plugin's rules and server).

`ok.*` has an A record, `ok6.*` an AAAA record, `nx.*` is NXDOMAIN, `sf.*` SERVFAIL, `rf.*`
REFUSED, `empty.*` NOERROR without an answer, and `to.*` is never answered. Built on
dnspython's message classes like the plugin's server, but with nothing else in common.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

# The label that makes each failure kind, by the plugin's name for it.
LABELS = {
    "nxdomain": "nx",
    "servfail": "sf",
    "refused": "rf",
    "empty": "empty",
    "timeout": "to",
}
ADDRESS = "127.0.0.7"
ADDRESS6 = "::1"


def answer(query: dns.message.Message) -> dns.message.Message | None:
    question = query.question[0]
    label = question.name.labels[0].decode().lower()
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    rcodes = {"nx": dns.rcode.NXDOMAIN, "sf": dns.rcode.SERVFAIL, "rf": dns.rcode.REFUSED}
    if label == "to":
        return None
    if label in rcodes:
        response.set_rcode(rcodes[label])
    elif label == "ok" and question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(question.name, 0, "IN", "A", ADDRESS))
    elif label == "ok6" and question.rdtype == dns.rdatatype.AAAA:
        response.answer.append(dns.rrset.from_text(question.name, 0, "IN", "AAAA", ADDRESS6))
    return response


def _serve_udp(sock: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            wire, client = sock.recvfrom(65535)
        except TimeoutError:
            continue
        reply = answer(dns.message.from_wire(wire))
        if reply is not None:
            sock.sendto(reply.to_wire(), client)


def _serve_tcp(listener: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        with connection:
            connection.settimeout(5)
            try:
                query, _ = dns.query.receive_tcp(connection)
            except (EOFError, OSError):
                continue
            reply = answer(query)
            if reply is not None:
                dns.query.send_tcp(connection, reply)
            else:
                # Silent, not closed: the client waits until its own timeout.
                with contextlib.suppress(OSError):
                    while connection.recv(512):
                        pass


def _bind(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on one port (a free one for port 0: tried until both are free)."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((host, port))
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        tcp.listen(16)
        return udp, tcp
    raise OSError(f"no port of {host} free for both UDP and TCP")


@contextmanager
def reference_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[str, int]]:
    """The reference server on `host` (UDP, and TCP on the same port), as (host, port)."""
    udp, tcp = _bind(host, port)
    port = udp.getsockname()[1]
    # Short timeouts so that the threads see `stop` soon after it is set.
    udp.settimeout(0.05)
    tcp.settimeout(0.05)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_serve_udp, args=(udp, stop), daemon=True),
        threading.Thread(target=_serve_tcp, args=(tcp, stop), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield host, port
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        udp.close()
        tcp.close()
