"""Clients that take a nameserver (dnspython's resolver over UDP and TCP, aiodns), each
outcome described as plain data so that two servers' can be compared."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiodns
import dns.exception
import dns.rcode
import dns.resolver

# Short, so that a server that never answers costs well under a second per client.
TIMEOUT = 0.4


def dnspython(host: str, port: int, name: str, *, tcp: bool = False) -> dict[str, Any]:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.timeout = TIMEOUT
    resolver.lifetime = TIMEOUT
    try:
        answer = resolver.resolve(name, "A", tcp=tcp)
    except dns.resolver.NoNameservers as error:
        # Which answers made it give up (the servers' addresses differ; their rcodes not).
        rcodes = sorted(
            {
                type(problem).__name__ if response is None else dns.rcode.to_text(response.rcode())
                for *_, problem, response in error.kwargs["errors"]
            }
        )
        return {"error": "dns.resolver.NoNameservers", "rcodes": rcodes}
    except dns.exception.DNSException as error:
        return {"error": f"{type(error).__module__}.{type(error).__name__}"}
    return {"answer": sorted(record.to_text() for record in answer)}


def aiodns_outcomes(host: str, port: int, name: str) -> dict[str, Any]:
    """aiodns's query_dns and getaddrinfo (c-ares's resolver), on a fresh asyncio loop."""

    async def ask() -> dict[str, Any]:
        resolver = aiodns.DNSResolver(nameservers=[f"{host}:{port}"], timeout=TIMEOUT, tries=1)
        found: dict[str, Any] = {}
        try:
            for call in ("query_dns", "getaddrinfo"):
                try:
                    if call == "query_dns":
                        result = await resolver.query_dns(name, "A")
                        found[call] = {"answer": [r.data.addr for r in result.answer]}
                    else:
                        info = await resolver.getaddrinfo(name, family=socket.AF_INET, port=80)
                        found[call] = {"answer": [n.addr[0].decode() for n in info.nodes]}
                except aiodns.error.DNSError as error:
                    found[call] = {"error": "aiodns.error.DNSError", "args": list(error.args)}
        finally:
            await resolver.close()
        return found

    return asyncio.run(ask())


def everything(host: str, port: int, name: str) -> dict[str, Any]:
    return {
        "dnspython udp": dnspython(host, port, name),
        "dnspython tcp": dnspython(host, port, name, tcp=True),
        **{f"aiodns {call}": o for call, o in aiodns_outcomes(host, port, name).items()},
    }
