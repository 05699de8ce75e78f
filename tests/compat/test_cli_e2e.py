"""Upstream's end-to-end script (`scripts/test-e2e`, Toxiproxy 2.12.0) against the served engine.

The script drives a server with `toxiproxy-cli` in front of a web endpoint, benchmarks HTTP
requests through the proxy under each toxic, and greps `/metrics`. Here each CLI command is the
requests the CLI sends (it reads the proxy first, then acts; `--attribute k=v` values are sent
as JSON numbers), checked for the answer the CLI prints from; the benchmarks become one request
of the endpoint's 64 KiB page (where the toxic lets it through in moments); the metrics grep is
upstream's own regular expression.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.compat.clients import delete_every_proxy, go_proxy, go_toxic
from tests.servers import free_port, http_server

# Upstream's endpoint (test/e2e/endpoint.go): /test1 is 32 KiB of bytes 0..255, hex encoded.
PAGE = bytes(i % 256 for i in range(32 * 1024)).hex().encode()
ROUTES = {"/test1": PAGE, "/test2": b"hello world"}
PROXY = "shopify_http"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[int]:
    """The port of a real HTTP server serving upstream's endpoint pages."""
    with http_server(ROUTES) as (_, port):
        yield port


@pytest.fixture
def shopify_http(api: httpx.Client, endpoint: int) -> Iterator[tuple[int, int]]:
    """`toxiproxy-cli create -l localhost:P -u localhost:ENDPOINT shopify_http`: (P, ENDPOINT)."""
    port = free_port()
    body = go_proxy(PROXY, f"localhost:{port}", f"localhost:{endpoint}", enabled=True)
    response = api.post("/proxies", json=body)
    assert response.status_code == 201, response.text
    yield port, endpoint
    delete_every_proxy(api)


def cli_inspect(api: httpx.Client) -> dict[str, Any]:
    """`toxiproxy-cli inspect` (and the read every toxic command starts with)."""
    response = api.get(f"/proxies/{PROXY}")
    assert response.status_code == 200, response.text
    proxy: dict[str, Any] = response.json()
    return proxy


def cli_toggle(api: httpx.Client) -> dict[str, Any]:
    """`toxiproxy-cli toggle`: the proxy as the Go client decoded it, saved with `enabled`
    flipped (the client's struct has no `Logger`)."""
    proxy = cli_inspect(api)
    keys = ("name", "listen", "upstream", "enabled", "toxics")
    body = {key: proxy[key] for key in keys} | {"enabled": not proxy["enabled"]}
    response = api.post(f"/proxies/{PROXY}", json=body)
    assert response.status_code == 200, response.text
    toggled: dict[str, Any] = response.json()
    return toggled


def get_page(port: int, path: str = "/test1") -> bytes:
    """What a real HTTP client reads from the endpoint through the proxy."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


def test_proxy_commands(api: httpx.Client, shopify_http: tuple[int, int]) -> None:
    port, endpoint = shopify_http
    expected = {
        "name": PROXY,
        "listen": f"127.0.0.1:{port}",
        "upstream": f"localhost:{endpoint}",
        "enabled": True,
        "Logger": {},
        "toxics": [],
    }
    assert api.get("/proxies").json() == {PROXY: expected}  # list

    assert cli_toggle(api) == expected | {"enabled": False}
    assert cli_inspect(api)["enabled"] is False
    with pytest.raises(ConnectionRefusedError):
        get_page(port)

    assert cli_toggle(api) == expected
    assert get_page(port) == PAGE  # the benchmark without toxics
    assert get_page(port, "/test2") == b"hello world"


# Each toxic section of the script: `toxic add` with its flags, then `toxic update` if any.
# (add body, update body or None, the toxic as `inspect` lists it at the end)
TOXIC_STEPS = [
    pytest.param(
        go_toxic(
            "latency_downstream", "latency", "downstream", 0.99, {"latency": 1000.0, "jitter": 50.0}
        ),
        {"attributes": {"jitter": 20.0}, "toxicity": 0.7},
        {"latency": 1000, "jitter": 20},
        0.7,
        id="latency downstream",
    ),
    pytest.param(
        go_toxic("latency_upstream", "latency", "upstream", 1, {"latency": 1000.0, "jitter": 50.0}),
        {"attributes": {"jitter": 20.0}, "toxicity": 0.3},
        {"latency": 1000, "jitter": 20},
        0.3,
        id="latency upstream",
    ),
    pytest.param(
        go_toxic("bandwidth_kb_per_second", "bandwidth", "downstream", 0.5, {"rate": 1.0}),
        {"attributes": {"rate": 10.0}, "toxicity": 1.0},
        {"rate": 10},
        1,
        id="bandwidth",
    ),
    pytest.param(
        go_toxic("timeout_ms", "timeout", "downstream", 0.1, {"timeout": 10.0}),
        None,
        {"timeout": 10},
        0.1,
        id="timeout",
    ),
    pytest.param(
        go_toxic("reset_peer", "reset_peer", "downstream", 1.0, {"timeout": 2000.0}),
        None,
        {"timeout": 2000},
        1,
        id="reset_peer",
    ),
]


@pytest.mark.parametrize(("add", "update", "attributes", "toxicity"), TOXIC_STEPS)
def test_toxic_commands(
    api: httpx.Client,
    shopify_http: tuple[int, int],
    add: dict[str, Any],
    update: dict[str, Any] | None,
    attributes: dict[str, int],
    toxicity: float,
) -> None:
    name, stream = add["name"], add["stream"]
    toxics = f"/proxies/{PROXY}/toxics"

    added = api.post(toxics, json=add)
    assert added.status_code == 200, added.text
    assert (added.json()["name"], added.json()["stream"]) == (name, stream)
    if update is not None:
        updated = api.patch(f"{toxics}/{name}", json=update)
        assert updated.status_code == 200, updated.text
    expected = {
        "attributes": attributes,
        "name": name,
        "type": add["type"],
        "stream": stream,
        "toxicity": toxicity,
    }
    assert cli_inspect(api)["toxics"] == [expected]

    removed = api.delete(f"{toxics}/{name}")

    assert (removed.status_code, removed.content) == (204, b"")
    assert cli_inspect(api)["toxics"] == []


def test_slicer_section(api: httpx.Client, shopify_http: tuple[int, int]) -> None:
    port, _ = shopify_http
    slicer = go_toxic(
        "slicer_us",
        "slicer",
        "downstream",
        1.0,
        {"average_size": 64.0, "size_variation": 32.0, "delay": 10.0},
    )
    added = api.post(f"/proxies/{PROXY}/toxics", json=slicer)
    assert added.status_code == 200, added.text

    # The benchmark under the slicer: every page arrives whole.
    for _ in range(3):
        assert get_page(port) == PAGE

    assert api.delete(f"/proxies/{PROXY}/toxics/slicer_us").status_code == 204


def test_metrics_section(api: httpx.Client, shopify_http: tuple[int, int]) -> None:
    port, endpoint = shopify_http
    assert get_page(port) == PAGE

    response = api.get("/metrics")

    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    # The script's own check, with this test's ports in place of 20000 and 20002.
    line = re.search(
        r"^toxiproxy_proxy_sent_bytes_total\{direction=\"downstream\","
        rf"listener=\"127.0.0.1:{port}\",proxy=\"{PROXY}\",upstream=\"localhost:{endpoint}\"\}}"
        r" ([0-9.e+]+)$",
        response.text,
        re.MULTILINE,
    )
    assert line is not None, response.text
    assert float(line.group(1)) > len(PAGE)  # the page and its HTTP head
