"""Hypothesis: whatever HTTP/1.1 exchanges cross a proxy whose connections are read as HTTP,
the bytes the toxics do not touch arrive exactly as sent, each way, however they are cut into
reads and however many requests are pipelined."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_chaos.engine import EngineThread
from tests.engine.api_helpers import add_toxic, create_proxy
from tests.http.servers import Scripted, answering_server

TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12
)
VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
BODY = st.binary(max_size=300)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bytes]:
    """Framing headers and the body as sent: with a length, or chunked (with extensions and
    trailers sometimes), or none."""
    body = draw(BODY)
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    if framing == "none" or (framing == "length" and not body):
        return [("Content-Length", "0")] if draw(st.booleans()) else [], b""
    if framing == "length":
        return [("Content-Length", str(len(body)))], body
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    wire = b"".join(
        b"%x%s\r\n%s\r\n" % (len(p), b";x=1" if draw(st.booleans()) else b"", p)
        for p in pieces
        if p
    )
    trailer = b"T-Rail: 1\r\n" if draw(st.booleans()) else b""
    return [("Transfer-Encoding", "chunked")], wire + b"0\r\n" + trailer + b"\r\n"


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500, 503]))
    headers = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=3))
    framing, body = ([], b"") if status in (204, 304) else draw(bodies())
    if framing == [] and status not in (204, 304):
        framing = [("Content-Length", "0")]  # an answer without a length would end the stream
    head = b"HTTP/1.1 %d X\r\n" % status + b"".join(
        f"{name}: {value}\r\n".encode() for name, value in [*headers, *framing]
    )
    return head + b"\r\n" + body


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[bytes, bytes]:
    answer = draw(answers())
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS"]))
    path = "/" + draw(st.text("abc/%20?=&", max_size=15))
    headers = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=3))
    framing, body = draw(bodies())
    lines = [("Host", "api"), ("x-answer", answer.hex()), *headers, *framing]
    request = f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(
        f"{name}: {value}\r\n".encode() for name, value in lines
    )
    return request + b"\r\n" + body, answer


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[Scripted, str]]:
    engine = EngineThread(seed=5)
    engine.start()
    try:
        with answering_server() as server, httpx.Client(base_url=engine.engine.url) as api:
            listen = str(create_proxy(api, "fuzz", server.address)["listen"])
            add_toxic(api, "fuzz", type="http_error", attributes={"match": "/never-sent"})
            yield server, listen
    finally:
        engine.stop()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(exchanges(), min_size=1, max_size=5), st.lists(st.integers(1, 200), max_size=6))
def test_bytes_pass_exactly(
    proxied: tuple[Scripted, str], sent: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    server, listen = proxied
    requests = b"".join(request for request, _ in sent)
    expected = b"".join(answer for _, answer in sent)
    host, _, port = listen.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        at = 0
        for cut in [*cuts, len(requests)]:
            sock.sendall(requests[at : at + cut])
            at += cut
            if at >= len(requests):
                break
        sock.sendall(requests[at:])
        received = b""
        deadline = time.monotonic() + 5
        while len(received) < len(expected) and time.monotonic() < deadline:
            received += sock.recv(65536)
    assert received == expected
    assert bytes(server.received[-1]) == requests
