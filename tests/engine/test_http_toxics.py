"""The engine's HTTP-aware toxics over real sockets: a real HTTP server (uvicorn) behind a
proxy, raw sockets and httpx in front of it. Requests and answers keep their order on
keep-alive and pipelined connections, what the toxics do not touch passes byte for byte, and
what is not HTTP is passed through and noted."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import h11
import httpx
import pytest

from tests.engine.api_helpers import add_toxic, create_proxy, events, remove_toxic
from tests.http.servers import CLOSE, Upstream, scripted_server, uvicorn_server
from tests.servers import recv_exactly

GET = b"GET %s HTTP/1.1\r\nHost: api\r\n\r\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with uvicorn_server() as server:
        yield server


@pytest.fixture
def proxy(api: httpx.Client, upstream: Upstream) -> str:
    """The proxy's `host:port`; the upstream's record starts empty."""
    upstream.served.clear()
    return str(create_proxy(api, "api", upstream.address)["listen"])


def toxic(api: httpx.Client, type_: str, **attributes: Any) -> dict[str, Any]:
    return add_toxic(
        api, "api", type=type_, name=f"{type_}_{len(attributes)}", attributes=attributes
    )


def requests_seen(api: httpx.Client) -> list[dict[str, Any]]:
    return [e for e in events(api, proxy="api") if e["kind"] == "http_request"]


def address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """The next `count` answers from `sock` (read with h11 as a client would), each as
    `b"<status> <body>"`."""
    reader = h11.Connection(h11.CLIENT)
    answers: list[bytes] = []
    while len(answers) < count:
        # h11 frames an answer by the request it answers: one GET each (no HEAD here).
        reader.send(h11.Request(method="GET", target="/", headers=[("host", "api")]))
        reader.send(h11.EndOfMessage())
        status, body = 0, b""
        while not isinstance(event := reader.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                assert data, f"closed after {answers}"
                reader.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
        answers.append(b"%d %s" % (status, body))
        reader.start_next_cycle()
    return answers


def read_until_reset(sock: socket.socket) -> bytes:
    """What `sock` received before the connection was reset (it must be reset, not closed)."""
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        return received
    raise AssertionError(f"closed without a reset after {received!r}")


def test_an_error_answers_without_reaching_the_upstream(
    api: httpx.Client, proxy: str, upstream: Upstream
) -> None:
    toxic(api, "http_error", status=503, retry_after=2, match="GET /fail*")
    with httpx.Client(base_url=f"http://{proxy}") as client:
        answers = [client.get(path) for path in ("/a", "/fail/1", "/b")]
    assert [a.status_code for a in answers] == [200, 503, 200]
    assert answers[1].headers["retry-after"] == "2"
    assert answers[1].text == "503 Service Unavailable (pytest-chaos http_error)\n"
    assert upstream.targets() == ["/a", "/b"]
    seen = requests_seen(api)
    assert [(e["path"], e["status"], e["reached_upstream"], e["fault"]) for e in seen] == [
        ("/a", 200, True, None),
        ("/fail/1", 503, False, "http_error"),
        ("/b", 200, True, None),
    ]
    # One connection: keep-alive survived the injected answer.
    assert len({e["connection"] for e in seen}) == 1
    assert seen[1]["retry_after"] == 2.0
    assert seen[1]["until"] >= seen[1]["time"]


def test_pipelined_requests_get_their_answers_in_order(
    api: httpx.Client, proxy: str, upstream: Upstream
) -> None:
    toxic(api, "http_error", status=429, match="/limited")
    with socket.create_connection(address(proxy), timeout=5) as sock:
        sock.sendall(b"".join(GET % p for p in (b"/one", b"/limited", b"/two", b"/limited")))
        answers = read_answers(sock, 4)
    assert answers == [
        b"200 hello /one",
        b"429 429 Too Many Requests (pytest-chaos http_error)\n",
        b"200 hello /two",
        b"429 429 Too Many Requests (pytest-chaos http_error)\n",
    ]
    assert upstream.targets() == ["/one", "/two"]


def test_first_n_fails_only_the_first_matching_requests(
    api: httpx.Client, proxy: str, upstream: Upstream
) -> None:
    toxic(api, "http_error", status=503, first=2, match={"method": "POST"})
    with httpx.Client(base_url=f"http://{proxy}") as client:
        statuses = [client.post("/echo", content=b"x").status_code for _ in range(4)]
        assert client.get("/get").status_code == 200
    assert statuses == [503, 503, 200, 200]
    assert upstream.targets() == ["/echo", "/echo", "/get"]


def test_probability_is_seeded(api: httpx.Client, proxy: str) -> None:
    def pattern() -> list[int]:
        api.post("/seed", json={"seed": 42}).raise_for_status()
        toxic(api, "http_error", status=503, probability=0.5)
        with httpx.Client(base_url=f"http://{proxy}") as client:
            found = [client.get(f"/{i}").status_code for i in range(40)]
        remove_toxic(api, "api", "http_error_2")
        return found

    first, again = pattern(), pattern()
    assert first == again
    assert 5 < first.count(503) < 35


def test_a_delay_holds_the_whole_request(api: httpx.Client, proxy: str, upstream: Upstream) -> None:
    toxic(api, "http_delay", ms=300, match="/slow")
    with socket.create_connection(address(proxy), timeout=5) as sock:
        started = time.monotonic()
        # The head in two writes 100 ms apart: the delay counts from the first byte.
        sock.sendall(b"GET /slow HTTP/1.1\r\n")
        time.sleep(0.1)
        sock.sendall(b"Host: api\r\n\r\n" + GET % b"/after")
        answers = read_answers(sock, 2)
        elapsed = time.monotonic() - started
    assert answers == [b"200 hello /slow", b"200 hello /after"]
    assert 0.3 <= elapsed < 2.0
    slow, after = upstream.served
    assert slow.at - started >= 0.3
    # The request behind the held one waited for it (order is kept), not for a delay of its own.
    assert after.at >= slow.at
    seen = requests_seen(api)
    assert [(e["path"], e["fault"], e["delay_ms"]) for e in seen] == [
        ("/slow", "http_delay", 300.0),
        ("/after", None, 0.0),
    ]


def test_removing_a_delay_releases_what_it_holds(api: httpx.Client, proxy: str) -> None:
    toxic(api, "http_delay", ms=60_000)
    with socket.create_connection(address(proxy), timeout=5) as sock:
        sock.sendall(GET % b"/held")
        time.sleep(0.1)
        remove_toxic(api, "api", "http_delay_1")
        assert read_answers(sock, 1) == [b"200 hello /held"]


def test_an_abort_cuts_the_answer_after_its_head_and_some_body(
    api: httpx.Client, proxy: str, upstream: Upstream
) -> None:
    toxic(api, "http_abort", after_bytes=100, match="/bytes/*")
    with socket.create_connection(address(proxy), timeout=5) as sock:
        sock.sendall(GET % b"/bytes/5000")
        received = read_until_reset(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 5000" in head
    assert body == b"x" * 100
    assert upstream.targets() == ["/bytes/5000"]
    (seen,) = requests_seen(api)
    assert (seen["status"], seen["outcome"], seen["fault"], seen["reached_upstream"]) == (
        200,
        "aborted",
        "http_abort",
        True,
    )
    closed = [e for e in events(api, proxy="api") if e["kind"] == "closed"]
    assert closed[0]["reset"] is True
    assert closed[0]["by"] == "toxic http_abort_2 (http_abort)"


def test_an_abort_with_no_bytes_resets_before_the_answer(
    api: httpx.Client, proxy: str, upstream: Upstream
) -> None:
    toxic(api, "http_abort", match="POST /echo")
    with httpx.Client(base_url=f"http://{proxy}") as client:
        assert client.get("/fine").status_code == 200
        with pytest.raises(httpx.ReadError):  # a reset
            client.post("/echo", content=b"order")
    # The request reached the server: the client cannot know whether it was carried out.
    assert upstream.targets() == ["/fine", "/echo"]


def test_an_abort_lets_a_short_answer_through_whole(api: httpx.Client, proxy: str) -> None:
    toxic(api, "http_abort", after_bytes=1000)
    with httpx.Client(base_url=f"http://{proxy}") as client:
        assert client.get("/bytes/1000").content == b"x" * 1000
        with pytest.raises(httpx.ReadError):  # a reset
            client.get("/bytes/1001?chunks=3")


def test_a_toxic_added_to_a_live_keep_alive_connection_acts_on_its_next_request(
    api: httpx.Client, proxy: str
) -> None:
    with httpx.Client(base_url=f"http://{proxy}") as client:
        assert client.get("/before").status_code == 200
        toxic(api, "http_error", status=502)
        assert client.get("/during").status_code == 502
        remove_toxic(api, "api", "http_error_1")
        assert client.get("/after").status_code == 200
    assert len({e["connection"] for e in requests_seen(api)}) == 1


def test_a_proxy_that_had_an_http_toxic_reads_its_new_connections_as_http(
    api: httpx.Client, proxy: str
) -> None:
    """Once a proxy has had an HTTP toxic, a new connection is parsed from its first byte even
    with no toxic left, so that a toxic added later never starts reading mid-message."""
    toxic(api, "http_error", status=502)
    remove_toxic(api, "api", "http_error_1")
    with httpx.Client(base_url=f"http://{proxy}") as client:
        assert client.get("/later").status_code == 200
    assert [event["path"] for event in requests_seen(api)] == ["/later"]


def test_head_and_http_1_0_are_answered_as_http_wants(api: httpx.Client, proxy: str) -> None:
    toxic(api, "http_error", status=503)
    with socket.create_connection(address(proxy), timeout=5) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: api\r\n\r\n")
        head = sock.recv(65536)
        # No body after the head of an answer to HEAD, though it announces one.
        assert head.endswith(b"\r\n\r\n")
        assert b"content-length: 50\r\n" in head
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert b"Connection: close" in answer
    assert answer.endswith(b"(pytest-chaos http_error)\n")


def test_a_client_waiting_for_100_continue_is_answered_at_once(
    api: httpx.Client, proxy: str, upstream: Upstream
) -> None:
    toxic(api, "http_error", status=413)
    with socket.create_connection(address(proxy), timeout=5) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer
    assert upstream.targets() == []


def test_what_the_toxics_do_not_touch_passes_byte_for_byte(api: httpx.Client) -> None:
    # Odd but valid HTTP: header case, chunk extensions, trailers, a 100 Continue, a 204,
    # an answer without a length that ends with the connection.
    answers = [
        [b"HTTP/1.1 200 OK\r\nX-CaSe:  kept \r\nContent-Length: 3\r\n\r\nab", b"c"],
        [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
        ],
        [b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", CLOSE],
    ]
    requests = [
        b"GET /a?q=%20x HTTP/1.1\r\nHost: api\r\nX-Weird:  v  \r\n\r\n",
        b"POST /b HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;x=y\r\nbody\r\n0\r\nT: 1\r\n\r\n",
        b"DELETE /c HTTP/1.1\r\nhost: api\r\ncontent-length: 2\r\n\r\nhi",
        b"GET /d HTTP/1.1\r\nHost: api\r\n\r\n",
    ]
    with scripted_server(answers) as server:
        listen = create_proxy(api, "raw", server.address)["listen"]
        add_toxic(api, "raw", type="http_error", attributes={"match": "/nothing"})
        with socket.create_connection(address(listen), timeout=5) as sock:
            for piece in requests:
                # Split in the middle of every request, to cross h11's reads.
                sock.sendall(piece[: len(piece) // 2])
                time.sleep(0.01)
                sock.sendall(piece[len(piece) // 2 :])
            received = b""
            while data := sock.recv(65536):
                received += data
        assert bytes(server.received[0]) == b"".join(requests)
    assert received == b"".join(b"".join(a) for a in answers)
    seen = [e for e in events(api, proxy="raw") if e["kind"] == "http_request"]
    assert [(e["method"], e["path"], e["status"]) for e in seen] == [
        ("GET", "/a?q=%20x", 200),
        ("POST", "/b", 200),
        ("DELETE", "/c", 204),
        ("GET", "/d", 200),
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"*1\r\n$4\r\nPING\r\n", "not an HTTP/1.x request line: b'*1'"),
        (b"\x16\x03\x01\x02\x00\x01\x00", "a TLS handshake (HTTPS is out of scope)"),
        (
            b"\x00\x00\x00\x08\x04\xd2\x16/",
            "not an HTTP/1.x request: " + repr(b"\x00\x00\x00\x08\x04\xd2\x16/"),
        ),
        (
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            "h11 rejected it: illegal header line: bytearray(b'no colon here')",
        ),
    ],
)
def test_what_is_not_http_is_passed_through_and_noted(
    api: httpx.Client, echo: str, payload: bytes, reason: str
) -> None:
    listen = create_proxy(api, "echoed", echo)["listen"]
    add_toxic(api, "echoed", type="http_error", attributes={})
    with socket.create_connection(address(listen), timeout=5) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
    noted = [e for e in events(api, proxy="echoed") if e["kind"] == "http_passthrough"]
    assert [(e["side"], e["reason"]) for e in noted] == [("client", reason)]


def test_an_answer_that_is_not_http_is_passed_through_and_noted(api: httpx.Client) -> None:
    with scripted_server([[b"+PONG\r\n"]]) as server:
        listen = create_proxy(api, "raw", server.address)["listen"]
        add_toxic(api, "raw", type="http_delay", attributes={"ms": 0})
        with socket.create_connection(address(listen), timeout=5) as sock:
            sock.sendall(GET % b"/")
            assert recv_exactly(sock, 7) == b"+PONG\r\n"
    noted = [e for e in events(api, proxy="raw") if e["kind"].startswith("http_")]
    assert [(e["kind"], e.get("side"), e.get("outcome")) for e in noted] == [
        ("http_passthrough", "server", None),
        ("http_request", None, "untracked"),
    ]


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"status": 42}, "http_error: status must be an HTTP status code from 200 to 599, got 42"),
        (
            {"probability": 1.5},
            "http_error: probability must be a probability from 0 to 1, got 1.5",
        ),
        (
            {"match": {"paht": "/"}},
            "http_error: match has an unknown key 'paht'; allowed: method, path, headers",
        ),
        (
            {"colour": 1},
            "http_error: unknown option 'colour'; allowed: status, probability,"
            " first, match, body, headers, retry_after",
        ),
        (
            {"headers": {"Content-Length": "1"}},
            "http_error: header 'Content-Length' is set by the answer itself",
        ),
    ],
)
def test_bad_attributes_are_refused_with_what_is_allowed(
    api: httpx.Client, proxy: str, attributes: dict[str, Any], message: str
) -> None:
    answer = api.post("/proxies/api/toxics", json={"type": "http_error", "attributes": attributes})
    assert answer.status_code == 400
    assert answer.json()["error"] == f"bad request body: {message}"


def test_a_delay_needs_its_duration(api: httpx.Client, proxy: str) -> None:
    answer = api.post("/proxies/api/toxics", json={"type": "http_delay", "attributes": {}})
    assert answer.json() == {
        "error": "bad request body: http_delay: attribute ms is required",
        "status": 400,
    }


def test_http_toxics_are_listed_as_the_api_shows_toxics(api: httpx.Client, proxy: str) -> None:
    shown = toxic(api, "http_error", status=503, match="GET /x")
    assert shown == {
        "attributes": {
            "status": 503,
            "probability": 1.0,
            "first": None,
            "match": {"method": "GET", "path": "/x"},
            "body": None,
            "headers": None,
            "retry_after": None,
        },
        "name": "http_error_2",
        "type": "http_error",
        "stream": "downstream",
        "toxicity": 1,
    }
    assert api.get("/proxies/api/toxics").json() == [shown]


def test_plain_toxics_act_as_the_network_in_front_of_the_server(
    api: httpx.Client, proxy: str
) -> None:
    add_toxic(api, "api", type="latency", name="slow_network", attributes={"latency": 200})
    toxic(api, "http_error", status=503, match="/fail")
    toxic(api, "http_abort", after_bytes=10, match="/bytes/*")
    with socket.create_connection(address(proxy), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(GET % b"/fail")
        assert read_answers(sock, 1)[0].startswith(b"503 ")
        # The injected answer crossed the network's latency, as the server's would.
        assert time.monotonic() - started >= 0.2
        sock.sendall(GET % b"/bytes/1000")
        head, _, body = read_until_reset(sock).partition(b"\r\n\r\n")
    # The reset waited for what the abort let through to cross the latency toxic.
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b"x" * 10
