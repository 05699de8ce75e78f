"""Upstream's `api_test.go` (Toxiproxy 2.12.0), case by case, against the served engine.

Each test is named after the upstream test it ports and sends what upstream's Go client sends:
the same JSON bodies (`go_proxy`, `go_toxic`), methods and paths. The Go client turns an error
answer into `<Op>: HTTP <status>: <error>`, so upstream's expected texts are checked here as
the status and the JSON it decodes. Upstream's tests listen on fixed ports (3310, 7070, ...)
and point at `localhost:20001`, where nothing listens; these take free ports.

`AssertProxyUp` dials the proxy while its upstream refuses: the dial must never fail (a reset
sent at once can beat the dial's own check; `late_dials` polls late, as a busy client does).

`TestVersionEndpointReturnsVersion` expects `{"version": "git"}\\n`, the version of a server
built without a version, so it fails against any released server, upstream's own included;
its port checks the released answer instead.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.compat.clients import go_proxy, go_toxic
from tests.engine.api_helpers import assert_error, assert_refused, late_dials, listening_socket
from tests.servers import free_port


def create(api: httpx.Client, name: str, listen: str, upstream: str) -> dict[str, Any]:
    """`client.CreateProxy`: an enabled proxy."""
    response = api.post("/proxies", json=go_proxy(name, listen, upstream, enabled=True))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def add_toxic(api: httpx.Client, proxy: str, *toxic: Any) -> dict[str, Any]:
    """`Proxy.AddToxic(name, typeName, stream, toxicity, attrs)`: `toxic` are `go_toxic`'s
    arguments."""
    response = api.post(f"/proxies/{proxy}/toxics", json=go_toxic(*toxic))
    assert response.status_code == 200, response.text
    added: dict[str, Any] = response.json()
    return added


@pytest.fixture
def mysql_master(api: httpx.Client, dead: int) -> dict[str, Any]:
    """`client.CreateProxy("mysql_master", "localhost:3310", "localhost:20001")`, most tests'
    first line, on a free port; the proxy as created."""
    return create(api, "mysql_master", local(free_port()), local(dead))


def toxics_of(api: httpx.Client, proxy: str) -> dict[tuple[str, str], dict[str, Any]]:
    """`Proxy.Toxics`, keyed by (name, stream) as `AssertToxicExists` looks them up."""
    response = api.get(f"/proxies/{proxy}/toxics")
    assert response.status_code == 200, response.text
    return {(toxic["name"], toxic["stream"]): toxic for toxic in response.json()}


def assert_proxy_up(listen: str, *, up: bool) -> None:
    """Upstream's `AssertProxyUp`: a dial succeeds when the proxy is up, is refused when not."""
    if up:
        for sock in late_dials(listen, 1):
            sock.close()
    else:
        assert_refused(listen)


def local(port: int) -> str:
    return f"localhost:{port}"


def loopback(port: int) -> str:
    return f"127.0.0.1:{port}"


# -- the tests, in upstream's order
def test_request_id(api: httpx.Client) -> None:
    response = api.get("/version", headers={"User-Agent": "curl"})

    assert "X-Toxiproxy-Request-Id" in response.headers


def test_browser_gets_403(api: httpx.Client) -> None:
    browser = (
        "Mozilla/5.0 (Linux; Android 4.4.2); Nexus 5 Build/KOT49H) AppleWebKit/537.36"
        "(KHTML, like Gecko) Chrome/33.0.1750.117 Mobile Safari/537.36 OPR/20.0.1396.72047"
    )
    response = api.get("/proxies", headers={"User-Agent": browser})

    assert response.status_code == 403
    assert response.text == "User agent not allowed\n"


def test_non_browser_gets_200(api: httpx.Client) -> None:
    assert api.get("/proxies", headers={"User-Agent": "Wget/2.1"}).status_code == 200


def test_index_with_no_proxies(api: httpx.Client) -> None:
    response = api.get("/proxies")

    assert (response.status_code, response.json()) == (200, {})


def test_create_proxy_blank_name(api: httpx.Client) -> None:
    response = api.post("/proxies", json=go_proxy("", "", "", enabled=True))

    assert_error(response, 400, "missing required field: name")


def test_create_proxy_blank_upstream(api: httpx.Client) -> None:
    response = api.post("/proxies", json=go_proxy("test", "", "", enabled=True))

    assert_error(response, 400, "missing required field: upstream")


@pytest.mark.parametrize(
    "one_enabled",
    [
        True,  # TestPopulateProxy
        False,  # TestPopulateDisabledProxy
    ],
)
def test_populate_proxy(api: httpx.Client, dead: int, one_enabled: bool) -> None:
    one, two = free_port(), free_port()
    response = api.post(
        "/populate",
        json=[
            go_proxy("one", local(one), local(dead), enabled=one_enabled),
            go_proxy("two", local(two), local(dead), enabled=True),
        ],
    )

    assert response.status_code == 201, response.text
    proxies = response.json()["proxies"]
    assert [p["name"] for p in proxies] == ["one", "two"]
    # A disabled proxy keeps `listen` as given.
    listens = [loopback(one) if one_enabled else local(one), loopback(two)]
    assert [p["listen"] for p in proxies] == listens
    assert_proxy_up(loopback(one), up=one_enabled)
    assert_proxy_up(loopback(two), up=True)


def test_populate_default_enabled(api: httpx.Client, dead: int) -> None:
    port = free_port()
    request = f'[{{"name": "test", "listen": "localhost:{port}", "upstream": "localhost:{dead}"}}]'

    response = api.post("/populate", content=request)

    assert response.status_code == 201, response.text
    proxies = api.get("/proxies").json()
    assert list(proxies) == ["test"]
    assert proxies["test"]["enabled"] is True
    assert_proxy_up(proxies["test"]["listen"], up=True)


def test_populate_existing_proxy(api: httpx.Client, dead: int) -> None:
    one, two, moved = free_port(), free_port(), free_port()
    create(api, "one", local(one), local(dead))
    create(api, "two", local(two), local(dead))
    # A toxic, to see that `one` is kept rather than replaced.
    add_toxic(api, "one", "", "latency", "downstream", 1)

    response = api.post(
        "/populate",
        json=[
            # `localhost` is resolved to 127.0.0.1: the same listen address as before.
            go_proxy("one", local(one), local(dead), enabled=True),
            go_proxy("two", loopback(moved), local(free_port()), enabled=True),
        ],
    )

    assert response.status_code == 201, response.text
    proxies = response.json()["proxies"]
    assert [(p["name"], p["listen"]) for p in proxies] == [
        ("one", loopback(one)),
        ("two", loopback(moved)),
    ]
    assert [toxic["type"] for toxic in toxics_of(api, "one").values()] == ["latency"]
    for proxy in proxies:
        assert_proxy_up(proxy["listen"], up=True)


def test_populate_with_bad_name(api: httpx.Client, dead: int) -> None:
    response = api.post(
        "/populate",
        json=[
            go_proxy("one", local(free_port()), local(dead), enabled=True),
            go_proxy("", "", "", enabled=True),
        ],
    )

    assert_error(response, 400, "missing required field: name at proxy 2", proxies=None)
    assert api.get("/proxies").json() == {}


def test_populate_proxy_with_bad_data_should_return_error(api: httpx.Client, dead: int) -> None:
    one = free_port()
    response = api.post(
        "/populate",
        json=[
            go_proxy("one", local(one), local(dead), enabled=True),
            go_proxy("two", "local373", local(dead), enabled=True),
            go_proxy("three", local(free_port()), local(dead), enabled=True),
        ],
    )

    # Processing stops at the first failure; what was done before it is reported and kept.
    created = go_proxy("one", loopback(one), local(dead), enabled=True) | {"Logger": {}}
    created["toxics"] = []
    assert_error(
        response,
        500,
        "listen tcp: address local373: missing port in address",
        proxies=[created],
    )
    assert list(api.get("/proxies").json()) == ["one"]


def test_populate_add_toxic(api: httpx.Client, dead: int) -> None:
    response = api.post(
        "/populate", json=[go_proxy("one", local(free_port()), local(dead), enabled=True)]
    )
    assert response.status_code == 201, response.text
    assert [p["name"] for p in response.json()["proxies"]] == ["one"]

    add_toxic(api, "one", "", "latency", "downstream", 1)


def test_listing_proxies(api: httpx.Client, dead: int) -> None:
    port = free_port()
    create(api, "mysql_master", local(port), local(dead))

    proxies = api.get("/proxies").json()

    assert list(proxies) == ["mysql_master"]
    proxy = proxies["mysql_master"]
    assert (proxy["name"], proxy["listen"], proxy["upstream"]) == (
        "mysql_master",
        loopback(port),
        local(dead),
    )
    assert proxy["toxics"] == []


@pytest.mark.parametrize("how", ["CreateProxy", "Save"])
def test_create_and_get_proxy(api: httpx.Client, dead: int, how: str) -> None:
    # TestCreateAndGetProxy and TestCreateProxyWithSave: both send the same body.
    port = free_port()
    create(api, "mysql_master", local(port), local(dead))

    proxy = api.get("/proxies/mysql_master").json()

    assert proxy == {
        "name": "mysql_master",
        "listen": loopback(port),
        "upstream": local(dead),
        "enabled": True,
        "Logger": {},
        "toxics": [],
    }
    assert_proxy_up(proxy["listen"], up=True)


def test_create_disabled_proxy(api: httpx.Client, dead: int) -> None:
    port = free_port()
    # `client.NewProxy()` leaves Enabled false.
    response = api.post(
        "/proxies", json=go_proxy("mysql_master", local(port), local(dead), enabled=False)
    )
    assert response.status_code == 201, response.text

    proxy = api.get("/proxies/mysql_master").json()

    # A disabled proxy binds nothing and keeps `listen` as given.
    assert (proxy["listen"], proxy["upstream"], proxy["enabled"]) == (
        local(port),
        local(dead),
        False,
    )
    assert_proxy_up(local(port), up=False)


def test_create_disabled_proxy_and_enable(api: httpx.Client, dead: int) -> None:
    port = free_port()
    body = go_proxy("mysql_master", local(port), local(dead), enabled=False)
    assert api.post("/proxies", json=body).status_code == 201

    # `Proxy.Save` on a created proxy posts the whole proxy to its own path.
    proxy = api.get("/proxies/mysql_master").json()
    enabled = api.post("/proxies/mysql_master", json=proxy | {"enabled": True})

    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["enabled"] is True
    assert_proxy_up(enabled.json()["listen"], up=True)

    disabled = api.post("/proxies/mysql_master", json=enabled.json() | {"enabled": False})

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    assert_proxy_up(enabled.json()["listen"], up=False)


def test_delete_proxy(api: httpx.Client, dead: int) -> None:
    proxy = create(api, "mysql_master", local(free_port()), local(dead))
    assert list(api.get("/proxies").json()) == ["mysql_master"]
    assert_proxy_up(proxy["listen"], up=True)

    response = api.delete("/proxies/mysql_master")

    assert (response.status_code, response.content) == (204, b"")
    assert_proxy_up(proxy["listen"], up=False)
    assert api.get("/proxies").json() == {}
    assert_error(api.delete("/proxies/mysql_master"), 404, "proxy not found")


def test_create_proxy_port_conflict(api: httpx.Client, dead: int) -> None:
    with listening_socket() as probe:
        port = probe.getsockname()[1]
    create(api, "mysql_master", local(port), local(dead))

    response = api.post("/proxies", json=go_proxy("test", local(port), local(dead), enabled=True))

    assert_error(response, 500, f"listen tcp 127.0.0.1:{port}: bind: address already in use")
    assert api.delete("/proxies/mysql_master").status_code == 204
    create(api, "test", local(port), local(dead))


def test_create_proxy_name_conflict(api: httpx.Client, dead: int) -> None:
    create(api, "mysql_master", local(free_port()), local(dead))
    other = free_port()

    response = api.post(
        "/proxies", json=go_proxy("mysql_master", local(other), local(dead), enabled=True)
    )

    assert_error(response, 409, "proxy already exists")
    assert api.delete("/proxies/mysql_master").status_code == 204
    create(api, "mysql_master", local(other), local(dead))


def test_reset_state(api: httpx.Client, mysql_master: dict[str, Any]) -> None:
    latency = add_toxic(
        api, "mysql_master", "", "latency", "downstream", 1, {"latency": 100, "jitter": 10}
    )
    assert latency["attributes"] == {"latency": 100, "jitter": 10}

    response = api.post("/reset", content=b"")

    assert (response.status_code, response.content) == (204, b"")
    proxy = api.get("/proxies").json()["mysql_master"]
    assert proxy["enabled"] is True
    assert toxics_of(api, "mysql_master") == {}
    assert_proxy_up(proxy["listen"], up=True)


def test_listing_toxics(api: httpx.Client, mysql_master: dict[str, Any]) -> None:
    assert toxics_of(api, "mysql_master") == {}


def latency_toxic(
    name: str, stream: str, toxicity: float, latency: int, jitter: int
) -> dict[str, Any]:
    return {
        "attributes": {"latency": latency, "jitter": jitter},
        "name": name,
        "type": "latency",
        "stream": stream,
        "toxicity": toxicity,
    }


@pytest.mark.parametrize(
    ("name", "toxicity", "shown_name"),
    [
        ("foobar", 1, "foobar"),  # TestAddToxic
        ("", 0.2, "latency_downstream"),  # TestAddToxicWithToxicity
    ],
)
def test_add_toxic(
    api: httpx.Client, mysql_master: dict[str, Any], name: str, toxicity: float, shown_name: str
) -> None:
    latency = add_toxic(
        api, "mysql_master", name, "latency", "downstream", toxicity, {"latency": 100, "jitter": 10}
    )

    expected = latency_toxic(shown_name, "downstream", toxicity, 100, 10)
    assert latency == expected
    assert toxics_of(api, "mysql_master") == {(shown_name, "downstream"): expected}


def test_add_multiple_toxics(api: httpx.Client, mysql_master: dict[str, Any]) -> None:
    for name in ("latency1", "latency2"):
        add_toxic(api, "mysql_master", name, "latency", "downstream", 1)

    assert toxics_of(api, "mysql_master") == {
        ("latency1", "downstream"): latency_toxic("latency1", "downstream", 1, 0, 0),
        ("latency2", "downstream"): latency_toxic("latency2", "downstream", 1, 0, 0),
    }


@pytest.mark.parametrize(
    ("stream", "other_type", "other_stream"),
    [
        ("downstream", "slow_close", "downstream"),  # TestAddConflictingToxic
        ("upstream", "latency", "downstream"),  # TestAddConflictingToxicsMultistream
    ],
)
def test_add_conflicting_toxic(
    api: httpx.Client, mysql_master: dict[str, Any], stream: str, other_type: str, other_stream: str
) -> None:
    add_toxic(api, "mysql_master", "foobar", "latency", stream, 1)

    response = api.post(
        "/proxies/mysql_master/toxics",
        json=go_toxic("foobar", other_type, other_stream, 1),
    )

    assert_error(response, 409, "toxic already exists")
    assert toxics_of(api, "mysql_master") == {
        ("foobar", stream): latency_toxic("foobar", stream, 1, 0, 0)
    }


def test_add_conflicting_toxics_multistream_defaults(
    api: httpx.Client, mysql_master: dict[str, Any]
) -> None:
    for stream in ("upstream", "downstream"):
        add_toxic(api, "mysql_master", "", "latency", stream, 1)

    assert toxics_of(api, "mysql_master") == {
        ("latency_upstream", "upstream"): latency_toxic("latency_upstream", "upstream", 1, 0, 0),
        ("latency_downstream", "downstream"): latency_toxic(
            "latency_downstream", "downstream", 1, 0, 0
        ),
    }


def test_add_noop(api: httpx.Client, mysql_master: dict[str, Any]) -> None:
    # No stream given: downstream.
    noop = add_toxic(api, "mysql_master", "foobar", "noop", "", 1)

    expected = {
        "attributes": {},
        "name": "foobar",
        "type": "noop",
        "stream": "downstream",
        "toxicity": 1,
    }
    assert noop == expected
    assert toxics_of(api, "mysql_master") == {("foobar", "downstream"): expected}


def test_update_toxics(api: httpx.Client, mysql_master: dict[str, Any]) -> None:
    latency = add_toxic(
        api, "mysql_master", "", "latency", "downstream", -1, {"latency": 100, "jitter": 10}
    )
    assert latency == latency_toxic("latency_downstream", "downstream", 1, 100, 10)
    path = "/proxies/mysql_master/toxics/latency_downstream"

    # `Proxy.UpdateToxic` patches the attributes, and the toxicity unless it is -1.
    first = api.patch(path, json={"attributes": {"latency": 1000}, "toxicity": 0.5})
    second = api.patch(path, json={"attributes": {"latency": 500}})

    assert first.json() == latency_toxic("latency_downstream", "downstream", 0.5, 1000, 10)
    expected = latency_toxic("latency_downstream", "downstream", 0.5, 500, 10)
    assert second.json() == expected
    assert toxics_of(api, "mysql_master") == {("latency_downstream", "downstream"): expected}


def test_remove_toxic(api: httpx.Client, mysql_master: dict[str, Any]) -> None:
    add_toxic(api, "mysql_master", "", "latency", "downstream", 1)
    assert list(toxics_of(api, "mysql_master")) == [("latency_downstream", "downstream")]

    response = api.delete("/proxies/mysql_master/toxics/latency_downstream")

    assert (response.status_code, response.content) == (204, b"")
    assert toxics_of(api, "mysql_master") == {}


def test_version_endpoint_returns_version(api: httpx.Client) -> None:
    response = api.get("/version")

    assert response.status_code == 200
    assert response.text.endswith("}\n")
    # Upstream answers {"version": "2.12.0"}; the engine names itself beside it.
    assert response.json()["version"] == "2.12.0"


def test_invalid_stream(api: httpx.Client, mysql_master: dict[str, Any]) -> None:
    response = api.post(
        "/proxies/mysql_master/toxics", json=go_toxic("", "latency", "walrustream", 1)
    )

    assert_error(response, 400, "stream was invalid, can be either upstream or downstream")
