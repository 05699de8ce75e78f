"""HTTP faults as a user meets them in a pytest run: the markers' messages for bad arguments
and unknown targets, a backend that cannot do it, the timeline and report of a failing test,
and in-process faults gone after their test."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.engine.served import serve as served
from tests.plugin.conftest import dedent, exact

BAD_ARGUMENTS = dedent(
    """
    import pytest


    @pytest.mark.http_error("echo", 42)
    def test_status(echo):
        pass


    @pytest.mark.http_error("echo", match="users/*")
    def test_match(echo):
        pass


    @pytest.mark.http_delay("echo")
    def test_missing_ms(echo):
        pass


    @pytest.mark.http_abort("nowhere")
    def test_unknown_target(echo):
        pass


    def test_method(echo, chaos):
        with chaos.http_error("echo", probability=2):
            pass
    """
)


def test_bad_arguments_are_reported_as_for_every_marker(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_bad=BAD_ARGUMENTS)
    result = suite.runpytest_inprocess()
    result.stdout.fnmatch_lines(
        [
            exact(
                "@pytest.mark.http_error: status must be an HTTP status code from 200 to 599,"
                " got 42"
            ),
            exact(
                "@pytest.mark.http_error: match must be None, a path glob such as '/search*',"
                " 'METHOD /path-glob' (e.g. 'GET /users/*'), or a mapping with keys method,"
                " path, headers; got 'users/*'"
            ),
            exact(
                "@pytest.mark.http_delay: missing required argument 'ms'; signature:"
                " http_delay(target, ms, *, jitter=0, match=None, when='call')"
            ),
            # (The apps of this process, where other tests may have wrapped some.)
            exact(
                "@pytest.mark.http_abort: target 'nowhere' names no known proxy or in-process"
                " app; known proxies: echo; in-process apps: "
            )
            + "*"
            + exact(
                " (an app is known while a ChaosASGIMiddleware or ChaosWSGIMiddleware of that"
                " name exists: chaos.http_app(name, app) makes one)"
            ),
            # A method's mistake is reported at the user's line.
            '>       with chaos.http_error("echo", probability=2):',
            "*",
            exact(
                "E       pytest_chaos.faults.FaultError: http_error: probability must be a"
                " probability from 0 to 1, got 2"
            ),
        ]
    )
    result.assert_outcomes(failed=1, errors=4)


@contextmanager
def plain_toxiproxy(engine_url: str) -> Iterator[str]:
    """A stand-in for upstream Toxiproxy: the engine's API, less its `engine` version field
    (how the plugin tells the two apart), on a loopback port of its own."""

    class Forward(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            answer = httpx.request(
                self.command, engine_url + self.path, content=body, trust_env=False, timeout=10
            )
            content = answer.content
            if self.path == "/version":
                content = b'{"version": "2.12.0"}\n'
            self.send_response(answer.status_code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_DELETE = do_PATCH = _forward

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


PLAIN = dedent(
    """
    import pytest


    @pytest.mark.http_error("echo", 503)
    def test_marker(echo):
        pass


    def test_in_process_still_works(chaos):
        app = chaos.http_app("inner", lambda environ, start_response: [b""])
        with chaos.http_error("inner"):
            pass
    """
)


def test_a_plain_toxiproxy_says_it_cannot(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_plain=PLAIN)
    with served() as engine, plain_toxiproxy(engine.url) as url:
        result = suite.runpytest_inprocess("--chaos-backend", "toxiproxy", "--toxiproxy-url", url)
    result.stdout.fnmatch_lines(
        [
            exact(
                "@pytest.mark.http_error: HTTP faults at a proxy need the pytest-chaos engine;"
                f" the toxiproxy backend at {url} is a plain Toxiproxy, which only proxies TCP"
                " (use --chaos-backend embedded, the default, or point --toxiproxy-url at"
                " `pytest-chaos serve`; an in-process app takes HTTP faults through"
                " ChaosASGIMiddleware or ChaosWSGIMiddleware)"
            )
        ]
    )
    result.assert_outcomes(passed=1, errors=1)


FAILING = dedent(
    """
    import json
    import socket

    import pytest
    from pytest_chaos.http import ChaosWSGIMiddleware
    from pytest_chaos.http.registry import APPS


    def app(environ, start_response):
        start_response("200 OK", [("content-length", "2")])
        return [b"ok"]


    wrapped = ChaosWSGIMiddleware(app, name="inner")


    @pytest.mark.http_error("echo", 503, match="/broken")
    @pytest.mark.http_error("inner", 502)
    def test_fails(echo):
        with socket.create_connection(echo, timeout=5) as sock:
            sock.sendall(b"GET /broken HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 503 ")
        wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/in"}, lambda *a: None)
        assert False, "look at the timeline"


    def test_nothing_left_behind(echo):
        assert APPS.faults("inner") == []
        answer = wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *a: None)
        assert list(answer) == [b"ok"]
    """
)


def test_the_timeline_and_the_report_show_each_request(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_failing=FAILING)
    result = suite.runpytest_inprocess("--chaos-report", "report.json", "-p", "no:randomly")
    result.stdout.fnmatch_lines(
        [
            "*chaos timeline*",
            "*applied  http_error('inner', status=502)",
            "*applied  http_error('echo', match={'path': '/broken'})",
            "*echo#* GET /broken -> 503 (by http_error, not sent upstream)",
            "*inner (wsgi) GET /in -> 502 (by http_error, not sent upstream)",
            "*reverted http_error('inner', status=502)",
        ]
    )
    result.assert_outcomes(passed=1, failed=1)
    import json

    report = json.loads((suite.path / "report.json").read_text())
    (failed,) = [t for t in report["tests"] if t["outcome"] == "failed"]
    engine = [e for e in failed["events"] if e["kind"] == "http_request"]
    assert [(e["path"], e["status"], e["reached_upstream"]) for e in engine] == [
        ("/broken", 503, False)
    ]
    assert [(e["path"], e["status"], e["layer"]) for e in failed["http"]] == [("/in", 502, "wsgi")]
