"""`host:port` parsing as Go's net package does it, since upstream answers with Go's words: the
tables of Go's `net.SplitHostPort` tests, its port rules, and its resolver's messages."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx
import pytest

from pytest_chaos.engine.addresses import resolve_listen_host, split_host_port
from tests.engine.api_helpers import LOOPBACK_LISTEN, create_proxy, echo_round_trip


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("localhost:80", "localhost", 80),
        ("127.0.0.1:8474", "127.0.0.1", 8474),
        ("[::1]:80", "::1", 80),
        ("[fe80::1%lo0]:80", "fe80::1%lo0", 80),
        (":80", "", 80),
        ("[]:80", "", 80),
        # Go's resolver: an empty port is 0, a sign is allowed, zeros lead, names are services.
        ("127.0.0.1:", "127.0.0.1", 0),
        (":", "", 0),
        ("h:+80", "h", 80),
        ("h:-0", "h", 0),
        ("h:000080", "h", 80),
        ("h:http", "h", 80),
        ("h:HTTPS", "h", 443),
        ("localhost%lo0:80", "localhost%lo0", 80),
        ("[::1]:", "::1", 0),
    ],
)
def test_addresses_split_as_go_splits_them(address: str, host: str, port: int) -> None:
    assert split_host_port(address) == (host, port)


# Go's own table of SplitHostPort failures (src/net/ip_test.go), then its port rules.
SPLIT_FAILURES = [
    ("golang.org", "missing port in address"),
    ("127.0.0.1", "missing port in address"),
    ("[::1]", "missing port in address"),
    ("[fe80::1%lo0]", "missing port in address"),
    ("[localhost%lo0]", "missing port in address"),
    ("localhost%lo0", "missing port in address"),
    ("::1", "too many colons in address"),
    ("fe80::1%lo0", "too many colons in address"),
    ("fe80::1%lo0:80", "too many colons in address"),
    ("[foo:bar]", "missing port in address"),
    ("[foo:bar]baz", "missing port in address"),
    ("[foo]bar:baz", "missing port in address"),
    ("[foo]:[bar]:baz", "too many colons in address"),
    ("[foo]:[bar]baz", "unexpected '[' in address"),
    ("foo[bar]:baz", "unexpected '[' in address"),
    ("foo]bar:baz", "unexpected ']' in address"),
    ("[::1", "missing ']' in address"),
]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        *((address, f"address {address}: {why}") for address, why in SPLIT_FAILURES),
        ("h:99999", "address 99999: invalid port"),
        ("h:-1", "address -1: invalid port"),
        ("h:" + "9" * 5000, f"address {'9' * 5000}: invalid port"),
        ("h:nope", "lookup tcp/nope: unknown port"),
        ("h:0 ", "lookup tcp/0 : unknown port"),
        ("h:https%foo", "lookup tcp/https%foo: unknown port"),
        ("h:٣", "lookup tcp/٣: unknown port"),  # Go's digits are ASCII
        ("h:\x00", "lookup tcp/\x00: unknown port"),
    ],
)
def test_bad_addresses_get_gos_messages(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        split_host_port(address)


def test_a_name_that_is_not_a_domain_name_is_no_such_host() -> None:
    # A label over 63 characters: refused without asking any resolver, as Go does.
    label = "x" * 64

    with pytest.raises(ValueError, match=rf"^lookup {label}: no such host$"):
        asyncio.run(resolve_listen_host(label))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (socket.EAI_NONAME, "lookup db.example: no such host"),
        (socket.EAI_AGAIN, "lookup db.example: Temporary failure in name resolution"),
    ],
)
def test_resolver_failures_get_gos_messages(
    monkeypatch: pytest.MonkeyPatch, code: int, message: str
) -> None:
    # The resolver is replaced, not the code under test: its answers depend on the network.
    def failing(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(code, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", failing)

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        asyncio.run(resolve_listen_host("db.example"))


def test_an_empty_port_binds_a_free_one(api: httpx.Client, echo: str) -> None:
    proxy = create_proxy(api, "p", echo, listen="127.0.0.1:")

    assert LOOPBACK_LISTEN.fullmatch(proxy["listen"])
    assert echo_round_trip(proxy["listen"]) == b"ping"
