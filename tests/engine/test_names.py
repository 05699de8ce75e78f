"""Proxy and toxic names: every name upstream can address works end to end when the client
percent-encodes it; names that could never be addressed again, or are not text, are refused."""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.engine.api_helpers import assert_error, echo_round_trip, events

ALLOWED = (
    'allowed: any text except "." and "..", without "/", control characters'
    " (U+0000-U+001F, U+007F-U+009F) or lone surrogates (U+D800-U+DFFF)"
)
REFUSED = [
    ("a/b", 'it contains "/", which separates URL path segments'),
    ("/", 'it contains "/", which separates URL path segments'),
    (".", "a URL path cannot hold it as a segment"),
    ("..", "a URL path cannot hold it as a segment"),
    ("nul\x00", "it contains the control character U+0000"),
    ("tab\there", "it contains the control character U+0009"),
    ("new\nline", "it contains the control character U+000A"),
    ("del\x7f", "it contains the control character U+007F"),
    ("c1\x85", "it contains the control character U+0085"),
    ("\ud800", "it contains the lone surrogate U+D800, which is not text"),
    ("low\udfff", "it contains the lone surrogate U+DFFF, which is not text"),
]
ADDRESSABLE = ["a?b", "a#b", "with space", "é", "日本語", "%", "a%2Fb", "+", "a;b", "...", ".x"]
# Upstream reads request heads up to 1 MiB, so names past aiohttp's 8 KiB line work there. These
# keep a toxic's path (two names, percent-encoded) under httpx's own limit of 64 KiB.
LONG = [
    pytest.param("n" * 30_000, id="30000 letters"),
    pytest.param(" " * 10_000, id="10000 spaces"),
    pytest.param("日" * 3_000, id="3000 ideographs"),
]


def path_segment(name: str) -> str:
    return quote(name, safe="")


def post_json(api: httpx.Client, path: str, payload: object) -> httpx.Response:
    # json.dumps escapes lone surrogates as `\ud800`, as a JSON client may send them.
    return api.post(path, content=json.dumps(payload).encode())


def message(what: str, name: str, problem: str, where: str = "") -> str:
    return (
        f"bad request body: {what} {json.dumps(name)} is not allowed{where}: {problem}; {ALLOWED}"
    )


@pytest.mark.parametrize(("name", "problem"), REFUSED)
def test_unaddressable_proxy_names_are_refused(
    api: httpx.Client, echo: str, name: str, problem: str
) -> None:
    response = post_json(api, "/proxies", {"name": name, "upstream": echo})

    assert_error(response, 400, message("proxy name", name, problem))
    assert api.get("/proxies").json() == {}
    assert api.get("/metrics").status_code == 200


@pytest.mark.parametrize(("name", "problem"), REFUSED)
def test_unaddressable_toxic_names_are_refused(
    api: httpx.Client, echo: str, name: str, problem: str
) -> None:
    assert post_json(api, "/proxies", {"name": "p", "upstream": echo}).status_code == 201

    response = post_json(api, "/proxies/p/toxics", {"name": name, "type": "noop"})

    assert_error(response, 400, message("toxic name", name, problem))
    assert api.get("/proxies/p/toxics").json() == []


def test_populate_refuses_a_bad_name_before_creating_anything(api: httpx.Client, echo: str) -> None:
    body = [{"name": "fine", "upstream": echo}, {"name": "a/b", "upstream": echo}]

    response = post_json(api, "/populate", body)

    problem = 'it contains "/", which separates URL path segments'
    where = " at proxy 2"
    assert_error(response, 400, message("proxy name", "a/b", problem, where), proxies=None)
    assert api.get("/proxies").json() == {}


@pytest.mark.parametrize("field", ["listen", "upstream"])
def test_addresses_must_be_text(api: httpx.Client, echo: str, field: str) -> None:
    body = {"name": "p", "upstream": echo, field: "127.0.0.1:\udc80"}

    response = post_json(api, "/proxies", body)

    assert_error(
        response,
        400,
        f'bad request body: {field} "127.0.0.1:\\udc80" is not allowed: it contains the lone'
        " surrogate U+DC80, which is not text; allowed: valid Unicode text",
    )
    assert api.get("/metrics").status_code == 200


@pytest.mark.parametrize("name", [*ADDRESSABLE, *LONG])
def test_names_work_end_to_end_when_percent_encoded(
    api: httpx.Client, echo: str, name: str
) -> None:
    proxy_path = f"/proxies/{path_segment(name)}"
    toxic_path = f"{proxy_path}/toxics/{path_segment(name)}"

    created = post_json(api, "/proxies", {"name": name, "upstream": echo})
    toxic = post_json(
        api, f"{proxy_path}/toxics", {"name": name, "type": "latency", "attributes": {}}
    )

    assert created.status_code == 201, created.text
    assert toxic.status_code == 200, toxic.text
    assert api.get(proxy_path).json()["name"] == name
    assert list(api.get("/proxies").json()) == [name]
    assert api.get(toxic_path).json()["name"] == name
    updated = api.patch(toxic_path, json={"attributes": {"latency": 1}})
    assert updated.json()["attributes"]["latency"] == 1
    assert echo_round_trip(created.json()["listen"]) == b"ping"
    assert {e["proxy"] for e in events(api, proxy=name)} == {name}
    scraped = text_string_to_metric_families(api.get("/metrics").text)
    labelled = {s.labels.get("proxy") for family in scraped for s in family.samples}
    assert name in labelled
    assert api.delete(toxic_path).status_code == 204
    assert api.patch(proxy_path, json={"enabled": False}).json()["enabled"] is False
    assert api.delete(proxy_path).status_code == 204
    assert_error(api.get(proxy_path), 404, "proxy not found")


def test_a_name_as_long_as_a_body_allows_is_addressable(api: httpx.Client, echo: str) -> None:
    # Sent with http.client: httpx refuses URLs over 64 KiB.
    name = "n" * 1_000_000
    assert post_json(api, "/proxies", {"name": name, "upstream": echo}).status_code == 201
    host, port = api.base_url.host, api.base_url.port
    assert port is not None
    for method, status in [("GET", 200), ("DELETE", 204), ("GET", 404)]:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request(method, f"/proxies/{name}")
        assert connection.getresponse().status == status
        connection.close()
