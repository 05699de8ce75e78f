"""The Node client's Jest suite (toxiproxy-node-client 4.0.0) against the served engine.

The client creates proxies with `{listen: "localhost:0", name, upstream}`, toxics with
`{attributes, type}` only, and updates both with POST. Its suite checks what the answers read
back; its slicer case (average 1000, variation 1000, delay 1000) is the one a first version of
the engine refused with 400.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.engine.api_helpers import assert_error

NODE_HEADERS = {"User-Agent": "axios/1.7.7", "Content-Type": "application/json"}


def create_proxy(api: httpx.Client, name: str, upstream: str) -> dict[str, Any]:
    """`Toxiproxy.createProxy` through the suite's `TestHelper.createProxy`."""
    body = {"listen": "localhost:0", "name": name, "upstream": upstream}
    response = api.post("/proxies", json=body, headers=NODE_HEADERS)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def create_toxic(
    api: httpx.Client, proxy: str, type_name: str, attributes: dict[str, int]
) -> httpx.Response:
    """`Proxy.addToxic` through the suite's `TestHelper.createToxic`."""
    body = {"attributes": attributes, "type": type_name}
    return api.post(f"/proxies/{proxy}/toxics", json=body, headers=NODE_HEADERS)


# ToxicTypes.spec.ts: every toxic type, its attributes read back as given.
TOXIC_TYPES = [
    ("latency", {"latency": 1000, "jitter": 100}),
    ("bandwidth", {"rate": 1000}),
    ("slow_close", {"delay": 1000}),
    ("timeout", {"timeout": 5 * 1000}),
    ("slicer", {"average_size": 1000, "delay": 1000, "size_variation": 1000}),
    ("reset_peer", {"timeout": 1000}),
    ("limit_data", {"bytes": 42}),
]


@pytest.mark.parametrize(("type_name", "attributes"), TOXIC_TYPES)
def test_proxy_should_add_a_toxic(
    api: httpx.Client, dead: int, type_name: str, attributes: dict[str, int]
) -> None:
    proxy = create_proxy(api, f"add-{type_name}-toxic-test", f"localhost:{dead}")

    response = create_toxic(api, proxy["name"], type_name, attributes)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "attributes": attributes,
        "name": f"{type_name}_downstream",
        "type": type_name,
        "stream": "downstream",
        "toxicity": 1,
    }
    assert api.delete(f"/proxies/{proxy['name']}").status_code == 204


def test_crud_for_toxics(api: httpx.Client, dead: int) -> None:
    create_proxy(api, "remove-toxic-test", f"localhost:{dead}")
    created = create_toxic(api, "remove-toxic-test", "latency", {"latency": 1000, "jitter": 100})
    toxic = created.json()
    assert (toxic["name"], toxic["toxicity"]) == ("latency_downstream", 1)
    path = "/proxies/remove-toxic-test/toxics/latency_downstream"

    assert api.get(path).json() == toxic
    updated = api.post(
        path, json={"attributes": {"latency": 12345, "jitter": 42}}, headers=NODE_HEADERS
    )
    assert updated.json()["attributes"] == {"latency": 12345, "jitter": 42}
    assert api.delete(path).status_code == 204
    assert_error(api.get("/proxies/remove-toxic-test/toxics/latency"), 404, "toxic not found")


def test_creating_the_same_proxy_or_toxic_twice_is_a_409(api: httpx.Client, dead: int) -> None:
    create_proxy(api, "duplicate", f"localhost:{dead}")
    again = api.post(
        "/proxies",
        json={"listen": "localhost:0", "name": "duplicate", "upstream": f"localhost:{dead}"},
        headers=NODE_HEADERS,
    )
    assert again.status_code == 409

    attributes = {"latency": 1000, "jitter": 100}
    assert create_toxic(api, "duplicate", "latency", attributes).status_code == 200
    assert create_toxic(api, "duplicate", "latency", attributes).status_code == 409


def test_proxy_should_update_a_proxy(api: httpx.Client, dead: int) -> None:
    proxy = create_proxy(api, "update-proxy-test", f"localhost:{dead}")
    path = "/proxies/update-proxy-test"

    disable = {"enabled": False, "listen": proxy["listen"], "upstream": proxy["upstream"]}
    disabled = api.post(path, json=disable, headers=NODE_HEADERS)
    move = {"enabled": True, "listen": proxy["listen"], "upstream": "somehost:12345"}
    moved = api.post(path, json=move, headers=NODE_HEADERS)

    assert disabled.json()["enabled"] is False
    assert (moved.json()["enabled"], moved.json()["upstream"]) == (True, "somehost:12345")


def test_toxiproxy_should_populate_and_get_all_proxies(api: httpx.Client, dead: int) -> None:
    bodies = [
        {"listen": "127.0.0.1:0", "name": "get-all-test1", "upstream": f"localhost:{dead}"},
        {"listen": "localhost:0", "name": "get-all-test2", "upstream": "localhost:12345"},
    ]

    populated = api.post("/populate", json=bodies, headers=NODE_HEADERS)

    assert populated.status_code == 201, populated.text
    proxies = api.get("/proxies").json()
    assert sorted(proxies) == ["get-all-test1", "get-all-test2"]
    assert [proxies[body["name"]]["upstream"] for body in bodies] == [
        body["upstream"] for body in bodies
    ]
    assert api.post("/reset").status_code == 204
    assert api.get("/version").status_code == 200
