"""What HTTP faults select and decide, the same at the engine and in-process: `HttpMatch`'s
forms and matching, `plan_request`'s order of decisions, and the fault objects' checks."""

from __future__ import annotations

import random

import pytest

from pytest_chaos.faults import (
    FaultError,
    HttpAbort,
    HttpDelay,
    HttpError,
    HttpMatch,
    build_fault,
    request_path,
)
from pytest_chaos.http_rules import HttpFaultState, plan_request


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("/search*", {"path": "/search*"}),
        ("GET /users/*", {"method": "GET", "path": "/users/*"}),
        ("GET,HEAD /users/*", {"method": ["GET", "HEAD"], "path": "/users/*"}),
        ("POST", {"method": "POST"}),
        (
            {"method": "post", "headers": {"X-Tenant": "a*"}},
            {"method": "POST", "headers": {"x-tenant": "a*"}},
        ),
        ({}, {}),
    ],
)
def test_the_forms_of_match(given: object, shown: dict[str, object]) -> None:
    match = HttpMatch.of(given, "http_error")
    assert match is not None
    assert match.to_json() == shown
    assert HttpMatch.of(match.to_json()) == match


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            "users/*",
            "http_error: match must be None, a path glob such as '/search*', 'METHOD"
            " /path-glob' (e.g. 'GET /users/*'), or a mapping with keys method, path, headers;"
            " got 'users/*'",
        ),
        (
            "get /x",
            "http_error: match must be None, a path glob such as '/search*', 'METHOD"
            " /path-glob' (e.g. 'GET /users/*'), or a mapping with keys method, path, headers;"
            " got 'get /x'",
        ),
        (
            42,
            "http_error: match must be None, a path glob such as '/search*', 'METHOD"
            " /path-glob' (e.g. 'GET /users/*'), or a mapping with keys method, path, headers;"
            " got 42",
        ),
        (
            {"paht": "/"},
            "http_error: match has an unknown key 'paht'; allowed: method, path, headers",
        ),
        (
            {"method": "GE T"},
            "http_error: match method must be an HTTP method such as 'GET',"
            " or a list of them, got 'GE T'",
        ),
        (
            {"path": "x"},
            "http_error: match path must be a glob starting with '/' or '*'"
            " (e.g. '/users/*'), got 'x'",
        ),
        (
            {"headers": ["x"]},
            "http_error: match headers must map header names to value globs"
            " (e.g. {'x-tenant': 'a*'}), got ['x']",
        ),
        ({"headers": {"x": 1}}, "http_error: match header 'x' must have a text value, got 1"),
    ],
)
def test_a_bad_match_says_what_is_allowed(given: object, message: str) -> None:
    with pytest.raises(FaultError) as error:
        HttpMatch.of(given, "http_error")
    assert str(error.value) == message


def test_matching() -> None:
    match = HttpMatch.of({"method": ["GET"], "path": "/users/*", "headers": {"x-t": "a*"}})
    assert match is not None
    assert match.matches("GET", "/users/1/orders?x=1", [("X-T", "abc")])
    assert match.matches("get", "http://host/users/1", [("x-t", "zzz"), ("x-t", "a")])
    assert not match.matches("POST", "/users/1", [("x-t", "a")])
    assert not match.matches("GET", "/Users/1", [("x-t", "a")])
    assert not match.matches("GET", "/users/1", [])
    assert [request_path(t) for t in ("/a?b", "http://h", "http://h/p?q", "*", "h:443")] == [
        "/a",
        "/",
        "/p",
        "*",
        "h:443",
    ]


def state(fault: object, name: str, seed: int = 1) -> HttpFaultState:
    assert isinstance(fault, HttpError | HttpDelay | HttpAbort)
    return HttpFaultState(name, fault, random.Random(seed))


def test_delays_add_up_and_the_first_error_that_fires_decides() -> None:
    states = [
        state(HttpDelay("api", 100, match="/slow*"), "d1"),
        state(HttpError("api", 503, first=1), "e1"),
        state(HttpAbort("api"), "a1"),
        state(HttpDelay("api", 50), "d2"),
        state(HttpError("api", 429), "e2"),
    ]
    first = plan_request(states, "GET", "/slow", [])
    assert (first.delay, first.answered_by, first.fault) == (
        pytest.approx(0.15),
        "e1",
        "http_error",
    )
    assert first.acted == ["d1", "e1", "d2"]
    second = plan_request(states, "GET", "/slow", [])
    # e1's first request is spent; the abort comes before e2.
    assert (second.answered_by, second.cut_by, second.fault) == (None, "a1", "http_abort")
    assert [s.matched for s in states] == [2, 2, 2, 2, 2]
    only_delayed = plan_request(states[3:4], "GET", "/", [])
    assert (only_delayed.fault, only_delayed.acted) == ("http_delay", ["d2"])


def test_a_probability_is_drawn_from_the_seed_once_per_matching_request() -> None:
    def pattern(seed: int) -> list[bool]:
        fault = state(HttpError("api", 503, probability=0.5), "e", seed)
        return [plan_request([fault], "GET", "/", []).error is not None for _ in range(400)]

    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 150 < sum(pattern(7)) < 250


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 99}, "http_error: status must be an HTTP status code from 200 to 599, got 99"),
        (
            {"status": True},
            "http_error: status must be an HTTP status code from 200 to 599, got True",
        ),
        (
            {"first": -1},
            "http_error: first must be None (every matching request) or a whole"
            " number from 0 to 9007199254740992, got -1",
        ),
        (
            {"retry_after": 1.5},
            "http_error: retry_after must be None (no Retry-After) or a whole"
            " number from 0 to 86400, got 1.5",
        ),
        ({"body": b"x"}, "http_error: body must be None or text (str), got b'x'"),
        (
            {"headers": {"x": "a\r\nb"}},
            "http_error: header 'x' has a line break or NUL in its value 'a\\r\\nb'",
        ),
        (
            {"headers": {"Transfer-Encoding": "x"}},
            "http_error: header 'Transfer-Encoding' is set by the answer itself",
        ),
    ],
)
def test_http_error_checks_its_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(FaultError) as error:
        build_fault(HttpError, ("api",), kwargs)
    assert str(error.value) == message


def test_an_answer_is_made_of_the_fault_s_options() -> None:
    fault = HttpError("api", 503, retry_after=2, headers={"x-why": "test"})
    assert fault.answer_headers() == [
        ("content-type", "text/plain; charset=utf-8"),
        ("retry-after", "2"),
        ("x-why", "test"),
    ]
    assert fault.answer_body() == b"503 Service Unavailable (pytest-chaos http_error)\n"
    typed = HttpError("api", 500, body="{}", headers={"Content-Type": "application/json"})
    assert typed.answer_headers() == [("Content-Type", "application/json")]
    assert str(typed) == (
        "http_error('api', status=500, body='{}', headers={'Content-Type': 'application/json'})"
    )


def test_a_request_reads_as_what_became_of_it() -> None:
    from pytest_chaos.events import parse_event

    def line(**fields: object) -> str:
        raw = {"seq": 1, "time": 1.0, "kind": "http_request", "proxy": "api", "connection": 3}
        return str(parse_event({**raw, "method": "GET", "path": "/x", **fields}))

    assert line(status=200, reached_upstream=True) == "api#3 GET /x -> 200"
    assert line(status=503, fault="http_error") == (
        "api#3 GET /x -> 503 (by http_error, not sent upstream)"
    )
    assert line(status=200, reached_upstream=True, fault="http_delay", delay_ms=300.0) == (
        "api#3 GET /x -> 200 (by http_delay, held 300 ms)"
    )
    assert line(status=200, reached_upstream=True, fault="http_abort", outcome="aborted") == (
        "api#3 GET /x -> 200, cut (by http_abort)"
    )
    assert line(reached_upstream=True, fault="http_abort", outcome="aborted") == (
        "api#3 GET /x -> aborted (by http_abort)"
    )
    assert line(reached_upstream=True, outcome="unanswered") == "api#3 GET /x -> no answer"
    assert line(status=200, reached_upstream=True, layer="wsgi") == "api (wsgi) GET /x -> 200"
    passthrough = parse_event(
        {
            "seq": 2,
            "time": 1.0,
            "kind": "http_passthrough",
            "proxy": "api",
            "connection": 3,
            "side": "client",
            "reason": "a TLS handshake (HTTPS is out of scope)",
        }
    )
    assert str(passthrough) == (
        "api#3 passed through unparsed from here (client: a TLS handshake (HTTPS is out of scope))"
    )
