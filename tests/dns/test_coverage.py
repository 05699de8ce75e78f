"""Which clients each layer reaches (the README's table): the in-process layer reaches what
resolves through the socket module (aiohttp's ThreadedResolver, psycopg, a redis-py client
in the examples), not uvloop's resolver, c-ares or other processes; those reach the plugin's
DNS server when pointed at it. "localhost" stands for a name outside the plugin's reach:
/etc/hosts answers it, so no query leaves the machine."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiodns
import aiohttp
import psycopg
import pytest
import uvloop

from pytest_chaos.faults import DnsFailure


def fetch(url: str, resolver: Callable[[], aiohttp.abc.AbstractResolver]) -> BaseException | None:
    async def get() -> BaseException | None:
        connector = aiohttp.TCPConnector(resolver=resolver())
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                await session.get(url, timeout=aiohttp.ClientTimeout(total=5))
            except aiohttp.ClientError as error:
                return error
        return None

    return asyncio.run(get())


def test_aiohttp_with_its_threaded_resolver_is_reached_in_process(chaos: Any) -> None:
    chaos.inject(DnsFailure("db.internal"))
    error = fetch("http://db.internal:9/", aiohttp.ThreadedResolver)
    assert isinstance(error, aiohttp.ClientConnectorDNSError)
    assert error.os_error.args == (socket.EAI_NONAME, "Name or service not known")


def test_aiohttp_with_aiodns_is_reached_through_the_dns_server(chaos: Any) -> None:
    chaos.inject(DnsFailure("db.internal", error="servfail"))
    # With aiodns installed this is aiohttp's default resolver; pointed at the plugin's server.
    nameserver = chaos.dns_server.nameserver
    error = fetch("http://db.internal:9/", lambda: aiohttp.AsyncResolver(nameservers=[nameserver]))
    assert isinstance(error, aiohttp.ClientConnectorDNSError)
    # aiohttp keeps c-ares's message and chains its error.
    assert error.os_error.args == (None, "DNS server returned general failure")
    assert error.os_error.__cause__.args[0] == aiodns.error.ARES_ESERVFAIL


def test_psycopg_resolves_in_process(chaos: Any) -> None:
    chaos.inject(DnsFailure("db.internal", error="refused"))
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect("host=db.internal port=9 connect_timeout=2")
    assert "Temporary failure in name resolution" in str(raised.value)


def test_uvloop_bypasses_the_in_process_layer_and_aiodns_reaches_the_server(chaos: Any) -> None:
    chaos.inject(DnsFailure("localhost"))
    chaos.inject(DnsFailure("broken.internal"))
    chaos.resolve("db.internal", to="127.0.0.3")
    server = chaos.dns_server
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("localhost", 80)

    async def on_uvloop() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        direct = await loop.getaddrinfo("localhost", 80, family=socket.AF_INET)
        resolver = aiodns.DNSResolver(nameservers=[server.nameserver], timeout=1, tries=1)
        failed = None
        try:
            answer = await resolver.getaddrinfo("db.internal", family=socket.AF_INET, port=80)
            try:
                await resolver.getaddrinfo("broken.internal", family=socket.AF_INET, port=80)
            except aiodns.error.DNSError as error:
                failed = error.args[0]
        finally:
            await resolver.close()
        return type(loop).__module__, direct[0][4], answer.nodes[0].addr, failed

    module, direct, answer, failed = uvloop.run(on_uvloop())
    assert module.startswith("uvloop")
    assert direct == ("127.0.0.1", 80)  # libuv's resolver: the fault does not reach it
    assert answer == (b"127.0.0.3", 80)  # the server answers the name,
    assert failed == aiodns.error.ARES_ENOTFOUND  # and fails as the fault says


CHILD = """
import json, socket, sys
import dns.resolver
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers, resolver.port = [sys.argv[1]], int(sys.argv[2])
try:
    resolver.resolve("db.internal", "A")
    through_server = "answered"
except dns.resolver.NXDOMAIN:
    through_server = "NXDOMAIN"
print(json.dumps([through_server, socket.gethostbyname("localhost")]))
"""


def test_a_child_process_is_reached_through_the_dns_server_only(chaos: Any) -> None:
    chaos.inject(DnsFailure("db.internal"))
    chaos.inject(DnsFailure("localhost"))
    server = chaos.dns_server
    done = subprocess.run(
        [sys.executable, "-c", CHILD, server.host, str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == ["NXDOMAIN", "127.0.0.1"]
