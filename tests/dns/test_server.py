"""The plugin's DNS server, through real clients that take a nameserver (dnspython's
resolver over UDP and TCP, aiodns/c-ares): under every error kind, each client sees what it
sees from a real server answering that failure (`reference`), and that is asserted outright."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.message
import pytest

from pytest_chaos.dns.lookups import DnsLog
from pytest_chaos.dns.rules import ActiveFault, DnsRules, HostEntry
from pytest_chaos.dns.server import DnsServer, DnsServerError
from pytest_chaos.faults import DNS_ERRORS, DnsFailure
from tests.dns.clients import dnspython, everything
from tests.dns.real_resolver import HOSTS
from tests.dns.reference import ADDRESS, reference_server

AIODNS = {
    "nxdomain": [4, "Domain name not found"],
    "servfail": [3, "DNS server returned general failure"],
    "refused": [6, "DNS server refused query"],
    "empty": [1, "DNS server returned answer with no data"],
    "timeout": [12, "Timeout while contacting DNS servers"],
}
DNSPYTHON = {
    "nxdomain": {"error": "dns.resolver.NXDOMAIN"},
    "servfail": {"error": "dns.resolver.NoNameservers", "rcodes": ["SERVFAIL"]},
    "refused": {"error": "dns.resolver.NoNameservers", "rcodes": ["REFUSED"]},
    "empty": {"error": "dns.resolver.NoAnswer"},
    "timeout": {"error": "dns.resolver.LifetimeTimeout"},
}


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[str, int]]:
    with reference_server() as address:
        yield address


def expected(kind: str) -> dict[str, Any]:
    aiodns = {"error": "aiodns.error.DNSError", "args": AIODNS[kind]}
    return {
        "dnspython udp": DNSPYTHON[kind],
        "dnspython tcp": DNSPYTHON[kind],
        "aiodns query_dns": aiodns,
        "aiodns getaddrinfo": aiodns,
    }


@pytest.mark.parametrize("kind", DNS_ERRORS)
def test_each_failure_looks_as_from_a_real_server(
    chaos: Any, reference: tuple[str, int], kind: str
) -> None:
    name = HOSTS[kind]
    chaos.inject(DnsFailure(name, error=kind))  # type: ignore[arg-type]
    server = chaos.dns_server
    mine = everything(server.host, server.port, name)
    assert mine == everything(*reference, name)
    assert mine == expected(kind)
    # Every query was recorded (both transports), with the fault that decided it.
    seen = [lookup for lookup in chaos.lookups(name) if lookup.layer == "server"]
    assert {lookup.detail.rsplit("/", 1)[-1] for lookup in seen} == {"udp", "tcp"}
    assert {lookup.fault for lookup in seen} == {str(DnsFailure(name, error=kind))}  # type: ignore[arg-type]


def test_names_are_answered_as_by_a_real_server(chaos: Any, reference: tuple[str, int]) -> None:
    chaos.resolve(HOSTS["answer"], to=ADDRESS)
    server = chaos.dns_server
    mine = everything(server.host, server.port, HOSTS["answer"])
    assert mine == everything(*reference, HOSTS["answer"])
    assert mine["dnspython udp"] == {"answer": [ADDRESS]}
    assert mine["aiodns getaddrinfo"] == {"answer": [ADDRESS]}


def test_a_name_resolves_to_a_proxy(chaos: Any, echo: str) -> None:
    proxy = chaos.proxy("dns-echo", upstream=echo)
    chaos.resolve("echo.internal", to="dns-echo")
    server = chaos.dns_server
    assert dnspython(server.host, server.port, "echo.internal") == {"answer": [proxy.host]}
    assert socket.gethostbyname("echo.internal") == proxy.host
    with socket.create_connection(("echo.internal", proxy.port), timeout=5) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"


def test_other_names_are_refused(chaos: Any) -> None:
    server = chaos.dns_server
    assert dnspython(server.host, server.port, "unknown.internal") == {
        "error": "dns.resolver.NoNameservers",
        "rcodes": ["REFUSED"],
    }
    (lookup,) = chaos.lookups("unknown.internal")
    assert lookup.error == "refused (unknown name)"


def test_a_delay_slows_answers_that_still_succeed(chaos: Any) -> None:
    chaos.resolve("slow.internal", to="127.0.0.9")
    chaos.inject(DnsFailure("slow.internal", delay=250, probability=0))
    server = chaos.dns_server
    for tcp in (False, True):
        started = time.monotonic()
        assert dnspython(server.host, server.port, "slow.internal", tcp=tcp) == {
            "answer": ["127.0.0.9"]
        }
        assert time.monotonic() - started >= 0.25


def serving(rules: DnsRules, log: DnsLog | None = None, **options: Any) -> DnsServer:
    return DnsServer(rules.decide, (log or DnsLog()).add, **options).start()


def test_unknown_names_are_forwarded_when_configured(reference: tuple[str, int]) -> None:
    rules = DnsRules()
    rules.add_name(HostEntry("mine.internal", "test", addresses=("127.0.0.3",)))
    server = serving(rules, forward=reference)
    try:
        for tcp in (False, True):
            assert dnspython(server.host, server.port, "mine.internal", tcp=tcp) == {
                "answer": ["127.0.0.3"]
            }
            # The reference server's answers, passed on as they are.
            assert dnspython(server.host, server.port, HOSTS["answer"], tcp=tcp) == {
                "answer": [ADDRESS]
            }
            assert dnspython(server.host, server.port, HOSTS["nxdomain"], tcp=tcp) == {
                "error": "dns.resolver.NXDOMAIN"
            }
    finally:
        server.stop()


def test_an_upstream_that_does_not_answer_is_a_servfail(reference: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # receives, never answers
        server = serving(DnsRules(), forward=silent.getsockname(), forward_timeout=0.1)
        try:
            assert dnspython(server.host, server.port, "anything.internal") == {
                "error": "dns.resolver.NoNameservers",
                "rcodes": ["SERVFAIL"],
            }
        finally:
            server.stop()


def test_stopping_ends_every_thread_and_frees_the_port() -> None:
    before = set(threading.enumerate())
    rules = DnsRules()
    rules.add_name(HostEntry("a.internal", "test", addresses=("127.0.0.3",)))
    rules.add_fault(ActiveFault(DnsFailure("hung.internal", error="timeout"), "0"))
    log = DnsLog()
    server = serving(rules, log)
    assert dnspython(server.host, server.port, "a.internal", tcp=True) == {"answer": ["127.0.0.3"]}
    # A TCP client left waiting on a query that is never answered.
    waiting = socket.create_connection((server.host, server.port))
    waiting.sendall(dns.message.make_query("hung.internal", "A").to_wire(prepend_length=True))
    deadline = time.monotonic() + 10
    while not any(event.name == "hung.internal" for event in log.since(0)):
        assert time.monotonic() < deadline, "the server never read the query"
        time.sleep(0.01)
    server.stop()
    assert waiting.recv(10) == b""  # closed by the server, not left hanging
    waiting.close()
    assert set(threading.enumerate()) <= before
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((server.host, server.port))


def test_a_port_in_use_is_said() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(DnsServerError, match=f"port {port} of 127.0.0.1 is not free"):
            serving(DnsRules(), port=port)
