"""The same requests to upstream's `toxiproxy-server` and to the engine, answers compared.

Optional: it needs an upstream binary (`$TOXIPROXY_SERVER`, or the one built from source at
/work/upstream/bin/toxiproxy-server as that folder's BUILD.md says) and is skipped without one.
The standing checks in this folder need no binary; this one shows where they drift from
upstream. The requests avoid the documented differences (README, "Where it deliberately differs
from upstream"): answers are compared as decoded JSON with ports and the `engine` field set
aside, and no request relies on a decoder's error text or a stream's case.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_chaos import _process
from tests.compat.clients import GO_CLIENT_HEADERS, delete_every_proxy
from tests.engine.api_helpers import connect, exchange, wait_until
from tests.engine.served import Served
from tests.servers import free_port

BUILT_FROM_SOURCE = Path("/work/upstream/bin/toxiproxy-server")
START_SECONDS = 10.0
Step = tuple[str, str, Any]

# {P1}.. are free ports, {DEAD} one nothing listens on, {ECHO} the echo server's port.
STEPS: list[Step] = [
    ("GET", "/version", None),
    ("GET", "/proxies", None),
    ("POST", "/proxies", {"name": "a", "listen": "localhost:{P1}", "upstream": "127.0.0.1:{DEAD}"}),
    ("POST", "/proxies", {"name": "a", "listen": "127.0.0.1:{P2}", "upstream": "x:1"}),
    ("POST", "/proxies", {"name": "b", "listen": "127.0.0.1:{P1}", "upstream": "x:1"}),
    ("POST", "/proxies", {"upstream": "x:1"}),
    ("POST", "/proxies", {"name": "c"}),
    ("POST", "/proxies", b""),
    ("POST", "/proxies", {"name": "d", "upstream": "x:1", "listen": "nonsense"}),
    ("POST", "/proxies", {"name": "d", "upstream": "x:1", "listen": "127.0.0.1:99999"}),
    ("POST", "/proxies", {"name": "d", "upstream": "x:1", "listen": "[::1"}),
    ("POST", "/proxies", {"name": "d", "upstream": "x:1", "listen": "127.0.0.1:nope"}),
    (
        "POST",
        "/proxies",
        {"name": "e", "listen": "localhost:{P3}", "upstream": "x:1", "enabled": False},
    ),
    ("GET", "/proxies/a", None),
    ("GET", "/proxies/missing", None),
    ("POST", "/proxies/a", {"enabled": False}),
    ("PATCH", "/proxies/a", {"enabled": True}),
    ("POST", "/proxies/a", {"upstream": "127.0.0.1:{ECHO}"}),
    ("POST", "/proxies/missing", {"enabled": True}),
    ("GET", "/proxies/a/toxics", None),
    (
        "POST",
        "/proxies/a/toxics",
        {"type": "latency", "attributes": {"latency": 100, "jitter": 10}},
    ),
    ("POST", "/proxies/a/toxics", {"type": "latency", "stream": "upstream"}),
    ("POST", "/proxies/a/toxics", {"type": "noop", "name": "latency_downstream"}),
    (
        "POST",
        "/proxies/a/toxics",
        {"type": "bandwidth", "attributes": {"rate": 5}, "toxicity": 0.5},
    ),
    ("POST", "/proxies/a/toxics", {"type": "slow_close"}),
    ("POST", "/proxies/a/toxics", {"type": "timeout", "stream": "upstream"}),
    ("POST", "/proxies/a/toxics", {"type": "reset_peer", "name": "rp", "toxicity": 0.25}),
    (
        "POST",
        "/proxies/a/toxics",
        {"type": "slicer", "attributes": {"average_size": 1000, "size_variation": 1000}},
    ),
    ("POST", "/proxies/a/toxics", {"type": "limit_data", "attributes": {"bytes": 10}}),
    ("POST", "/proxies/a/toxics", {"type": "noop", "name": "n", "toxicity": 0}),
    ("POST", "/proxies/a/toxics", {"type": "walrus"}),
    ("POST", "/proxies/a/toxics", {"type": "latency", "stream": "walrustream"}),
    ("POST", "/proxies/missing/toxics", {"type": "latency"}),
    ("GET", "/proxies/a/toxics", None),
    ("GET", "/proxies/a/toxics/latency_downstream", None),
    ("GET", "/proxies/a/toxics/missing", None),
    (
        "POST",
        "/proxies/a/toxics/latency_downstream",
        {"attributes": {"latency": 7}, "toxicity": 0.5},
    ),
    ("PATCH", "/proxies/a/toxics/latency_downstream", {"attributes": {"jitter": 3}}),
    ("POST", "/proxies/a/toxics/missing", {"toxicity": 0.5}),
    ("DELETE", "/proxies/a/toxics/latency_downstream", None),
    ("DELETE", "/proxies/a/toxics/latency_downstream", None),
    ("GET", "/proxies", None),
    ("POST", "/reset", None),
    ("GET", "/proxies", None),
    (
        "POST",
        "/populate",
        [
            {"name": "a", "listen": "127.0.0.1:{P1}", "upstream": "127.0.0.1:{ECHO}"},
            {"name": "f", "listen": "127.0.0.1:{P4}", "upstream": "x:1"},
            {"name": "e", "listen": "127.0.0.1:{P5}", "upstream": "x:1"},
        ],
    ),
    ("POST", "/populate", [{"name": "g", "upstream": "x:1"}, {"upstream": "x:1"}]),
    (
        "POST",
        "/populate",
        [
            {"name": "g", "listen": "127.0.0.1:{P6}", "upstream": "x:1"},
            {"name": "h", "listen": "127.0.0.1:{P1}", "upstream": "x:1"},
        ],
    ),
    ("POST", "/populate", []),
    ("GET", "/proxies", None),
    ("DELETE", "/proxies/f", None),
    ("DELETE", "/proxies/f", None),
    ("GET", "/nope", None),
    ("PUT", "/proxies", None),
    ("DELETE", "/reset", None),
    ("GET", "/proxies/a?x=1", None),
]


def upstream_binary() -> Path | None:
    configured = os.environ.get("TOXIPROXY_SERVER")
    path = Path(configured) if configured else BUILT_FROM_SOURCE
    return path if path.is_file() and os.access(path, os.X_OK) else None


@pytest.fixture(scope="module")
def upstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = upstream_binary()
    if binary is None:
        pytest.skip(
            f"no upstream toxiproxy-server (set TOXIPROXY_SERVER, or build {BUILT_FROM_SOURCE})"
        )
    port = free_port()
    log = tmp_path_factory.mktemp("upstream") / "toxiproxy-server.log"
    argv = [str(binary), "-host", "127.0.0.1", "-port", str(port), "-proxy-metrics"]
    process = _process.spawn(argv, log=log, tree=False)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                httpx.get(f"{url}/version", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{binary} did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield url
    finally:
        _process.stop(process, tree=False)


def fill(value: Any, ports: dict[str, int]) -> Any:
    """`value` with every `{SYMBOL}` replaced by its port."""
    text = json.dumps(value) if not isinstance(value, bytes) else value.decode()
    for symbol, port in ports.items():
        text = text.replace("{" + symbol + "}", str(port))
    return text.encode()


def with_symbols(text: str, ports: dict[str, int]) -> str:
    """`text` with each port number written as its `{SYMBOL}`."""
    for symbol, port in ports.items():
        text = re.sub(rf"(?<![0-9]){port}(?![0-9])", "{" + symbol + "}", text)
    return text


def normalized(response: httpx.Response, ports: dict[str, int]) -> tuple[int, Any]:
    """The status and the body, decoded when it is JSON, with ports back to their symbols."""
    text = with_symbols(response.text, ports)
    try:
        body = json.loads(text)
    except ValueError:
        return response.status_code, text
    if isinstance(body, dict):
        body.pop("engine", None)  # the engine names itself in /version
    return response.status_code, body


def run(url: str, echo_port: int) -> list[tuple[int, Any]]:
    ports = {f"P{n}": free_port() for n in range(1, 7)} | {"DEAD": free_port(), "ECHO": echo_port}
    answers = []
    with httpx.Client(base_url=url, timeout=10, headers=GO_CLIENT_HEADERS) as api:
        delete_every_proxy(api)
        for method, path, body in STEPS:
            content = None if body is None else fill(body, ports)
            answers.append(normalized(api.request(method, path, content=content), ports))
        # Traffic, then upstream's byte counters (it adds a connection's bytes at its end).
        listen = api.get("/proxies/a").json()["listen"]
        with connect(listen) as sock:
            assert exchange(sock, b"x" * 1000) == b"x" * 1000

        def counted() -> list[str]:
            return sorted(upstream_samples(api.get("/metrics").text, ports))

        # Two counters, two directions: all there once both of the connection's links ended.
        wait_until(lambda: len(counted()) == 4, failure="upstream's 4 counters not served")
        answers.append((200, counted()))
        delete_every_proxy(api)
    return answers


def upstream_samples(text: str, ports: dict[str, int]) -> list[str]:
    """Upstream's counters of this run's proxy `a` (a server keeps those of deleted proxies)."""
    from prometheus_client.parser import text_string_to_metric_families

    listener = f"127.0.0.1:{ports['P1']}"
    samples = []
    for family in text_string_to_metric_families(text):
        if family.name.startswith("toxiproxy_proxy_"):
            for sample in family.samples:
                if (sample.labels["proxy"], sample.labels["listener"]) != ("a", listener):
                    continue
                labels = json.loads(with_symbols(json.dumps(sample.labels), ports))
                samples.append(f"{sample.name} {labels} {sample.value:g}")
    return samples


def test_the_same_requests_get_the_same_answers(
    upstream_url: str, served: Served, echo: str
) -> None:
    echo_port = int(echo.rpartition(":")[2])

    theirs = run(upstream_url, echo_port)
    ours = run(served.url, echo_port)

    requests = [f"{method} {path}" for method, path, _ in STEPS] + ["GET /metrics"]
    differing = [
        f"{request}:\n  upstream {their}\n  engine   {our}"
        for request, their, our in zip(requests, theirs, ours, strict=True)
        if their != our
    ]
    assert differing == []
