"""The Toxiproxy HTTP API of the engine: endpoints, statuses, JSON shapes, defaults and errors.

Everything runs against a real engine over real sockets on 127.0.0.1; proxies forward to a real
TCP echo server so that enabling, disabling and re-pointing proxies is observed on the wire.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pytest_chaos import __version__
from tests.engine.api_helpers import (
    LOOPBACK_LISTEN,
    PROXY_KEYS,
    TOXIC_KEYS,
    add_toxic,
    assert_closed,
    assert_dropped,
    assert_error,
    assert_refused,
    connect,
    create_proxy,
    echo_round_trip,
    event_log,
    events,
    exchange,
    listen_of,
    listening_socket,
    read_until_closed,
    toxic_json,
    wait_for_event,
    wait_until,
)

UPDATE_METHODS = ["POST", "PATCH"]


# -- conventions shared by every endpoint
def test_version(api: httpx.Client) -> None:
    response = api.get("/version")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.text.endswith("}\n")
    assert response.json() == {"version": "2.12.0", "engine": f"pytest-chaos {__version__}"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/version", 200),
        ("GET", "/proxies", 200),
        ("GET", "/proxies/missing", 404),
        ("POST", "/proxies", 400),
        ("POST", "/reset", 204),
        ("PUT", "/proxies", 405),
        ("GET", "/no/such/path", 404),
        ("GET", "/events", 200),
        ("GET", "/metrics", 200),
    ],
)
def test_every_response_carries_a_request_id(
    api: httpx.Client, method: str, path: str, status: int
) -> None:
    first = api.request(method, path)
    second = api.request(method, path)

    assert first.status_code == status
    assert first.headers["X-Toxiproxy-Request-Id"]
    assert second.headers["X-Toxiproxy-Request-Id"]
    assert first.headers["X-Toxiproxy-Request-Id"] != second.headers["X-Toxiproxy-Request-Id"]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/version"), ("GET", "/proxies"), ("POST", "/proxies")]
)
def test_browser_user_agents_are_refused(
    api: httpx.Client, echo: str, method: str, path: str
) -> None:
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}
    body = {"name": "from_browser", "upstream": echo}

    response = api.request(method, path, json=body, headers=browser)

    assert response.status_code == 403
    assert response.text == "User agent not allowed\n"
    assert response.headers["X-Toxiproxy-Request-Id"]
    assert api.get("/proxies").json() == {}


def test_other_user_agents_are_allowed(api: httpx.Client) -> None:
    # Only the `Mozilla/` prefix is refused, not the word anywhere in the header.
    response = api.get("/version", headers={"User-Agent": "curl/8.5.0 (not Mozilla/5.0)"})

    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/", "/proxy", "/proxies/a/b", "/proxies/a/toxics/b/c"])
def test_unknown_path_is_a_plain_404(api: httpx.Client, path: str) -> None:
    response = api.get(path)

    assert response.status_code == 404
    assert response.text == "404 page not found\n"
    assert response.headers["X-Toxiproxy-Request-Id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/proxies"),
        ("DELETE", "/proxies"),
        ("POST", "/version"),
        ("GET", "/reset"),
        ("GET", "/populate"),
        ("PUT", "/proxies/name"),
        ("PUT", "/proxies/name/toxics"),
        ("DELETE", "/proxies/name/toxics"),
        ("PUT", "/proxies/name/toxics/toxic"),
    ],
)
def test_wrong_method_on_a_known_path_is_an_empty_405(
    api: httpx.Client, method: str, path: str
) -> None:
    response = api.request(method, path)

    assert response.status_code == 405
    assert response.content == b""
    assert response.headers["X-Toxiproxy-Request-Id"]


# -- proxies
def test_no_proxies(api: httpx.Client) -> None:
    response = api.get("/proxies")

    assert response.status_code == 200
    assert response.json() == {}


def test_create_proxy(api: httpx.Client, echo: str) -> None:
    response = api.post("/proxies", json={"name": "redis", "upstream": echo})

    assert response.status_code == 201
    body = response.json()
    assert list(body) == PROXY_KEYS
    assert LOOPBACK_LISTEN.fullmatch(body["listen"]), body["listen"]
    assert body == {
        "name": "redis",
        "listen": body["listen"],
        "upstream": echo,
        "enabled": True,
        "Logger": {},
        "toxics": [],
    }
    assert echo_round_trip(body["listen"], b"hello") == b"hello"


def test_show_and_list_proxies(api: httpx.Client, echo: str) -> None:
    first = create_proxy(api, "first", echo)
    second = create_proxy(api, "second", echo, enabled=False)

    shown = api.get("/proxies/first")
    listed = api.get("/proxies")

    assert shown.status_code == 200
    assert shown.json() == first
    assert list(shown.json()) == PROXY_KEYS
    assert listed.status_code == 200
    assert listed.json() == {"first": first, "second": second}


def test_explicit_listen_port_is_used(api: httpx.Client, echo: str) -> None:
    with listening_socket() as probe:
        free = listen_of(probe)
    proxy = create_proxy(api, "fixed", echo, listen=free)

    assert proxy["listen"] == free
    assert echo_round_trip(free) == b"ping"


def test_localhost_listen_is_reported_as_127_0_0_1(api: httpx.Client, echo: str) -> None:
    proxy = create_proxy(api, "local", echo, listen="localhost:0")

    assert LOOPBACK_LISTEN.fullmatch(proxy["listen"]), proxy["listen"]
    assert echo_round_trip(proxy["listen"]) == b"ping"


def test_proxy_created_disabled_keeps_listen_verbatim_and_binds_nothing(
    api: httpx.Client, echo: str
) -> None:
    with listening_socket() as holder:
        # The address is taken: creating a disabled proxy on it must not try to bind.
        taken = listen_of(holder)
        verbatim = create_proxy(api, "off", echo, listen="localhost:0", enabled=False)
        on_taken = create_proxy(api, "off_taken", echo, listen=taken, enabled=False)

    assert verbatim["listen"] == "localhost:0"
    assert verbatim["enabled"] is False
    assert on_taken["listen"] == taken
    assert on_taken["enabled"] is False
    assert_refused(taken)


@pytest.mark.parametrize(
    "extra",
    [
        {"enabled": None},
        {"listen": None},
        {"unknown": "ignored", "toxics": [{"type": "latency"}]},
    ],
    ids=["enabled-null", "listen-null", "unknown-keys"],
)
def test_create_defaults(api: httpx.Client, echo: str, extra: dict[str, Any]) -> None:
    proxy = create_proxy(api, "defaults", echo, **extra)

    assert proxy["enabled"] is True
    assert LOOPBACK_LISTEN.fullmatch(proxy["listen"]), proxy["listen"]
    assert proxy["toxics"] == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_body_is_json_whatever_the_content_type(
    api: httpx.Client, echo: str, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = json.dumps({"name": "typed", "upstream": echo}).encode()

    response = api.post("/proxies", content=body, headers=headers)

    assert response.status_code == 201
    assert response.json()["name"] == "typed"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "bad request body: EOF"),
        (b"  \n", "bad request body: EOF"),
        (
            b"{",
            "bad request body: invalid JSON: Expecting property name enclosed in double quotes:"
            " line 1 column 2 (char 1)",
        ),
        (
            b'{"name": "a", "upstream": "b"} trailing',
            "bad request body: invalid JSON: Extra data: line 1 column 32 (char 31)",
        ),
        (
            b"\xff",
            "bad request body: invalid JSON: 'utf-8' codec can't decode byte 0xff in position 0:"
            " invalid start byte",
        ),
        pytest.param(
            b"[" * 100_000, "bad request body: invalid JSON: nested too deeply", id="deep"
        ),
        pytest.param(
            b'{"name": "a", "upstream": "b", "n": ' + b"9" * 5000 + b"}",
            "bad request body: invalid JSON: number too long",
            id="long-number",
        ),
        (
            b'{"name": "a", "upstream": "b", "n": NaN}',
            "bad request body: invalid JSON: NaN is not valid JSON",
        ),
        (
            b'{"name": "a", "upstream": "b", "n": -Infinity}',
            "bad request body: invalid JSON: -Infinity is not valid JSON",
        ),
        pytest.param(
            '{"name": "a", "upstream": "b"}'.encode("utf-16"),
            "bad request body: invalid JSON: 'utf-8' codec can't decode byte 0xff in position 0:"
            " invalid start byte",
            id="utf-16",
        ),
        pytest.param(
            b'\xef\xbb\xbf{"name": "a", "upstream": "b"}',
            "bad request body: invalid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig):"
            " line 1 column 1 (char 0)",
            id="utf-8-bom",
        ),
        (b"[]", "bad request body: a proxy must be a JSON object"),
        (b"null", "bad request body: a proxy must be a JSON object"),
        (b'"name"', "bad request body: a proxy must be a JSON object"),
        (b'{"name": 1, "upstream": "x:1"}', "bad request body: name must be a string, got int"),
        (
            b'{"name": "a", "upstream": ["x:1"]}',
            "bad request body: upstream must be a string, got list",
        ),
        (
            b'{"name": "a", "upstream": "x:1", "listen": 8474}',
            "bad request body: listen must be a string, got int",
        ),
        (
            b'{"name": "a", "upstream": "x:1", "enabled": "yes"}',
            "bad request body: enabled must be true or false, got str",
        ),
        (
            b'{"name": "a", "upstream": "x:1", "enabled": 1}',
            "bad request body: enabled must be true or false, got int",
        ),
        (b"{}", "missing required field: name"),
        (b'{"upstream": "x:1"}', "missing required field: name"),
        (b'{"name": "", "upstream": "x:1"}', "missing required field: name"),
        (b'{"name": null, "upstream": "x:1"}', "missing required field: name"),
        (b'{"name": "a"}', "missing required field: upstream"),
        (b'{"name": "a", "upstream": ""}', "missing required field: upstream"),
    ],
)
def test_create_proxy_rejects_bad_bodies(api: httpx.Client, body: bytes, message: str) -> None:
    response = api.post("/proxies", content=body)

    assert_error(response, 400, message)
    assert api.get("/proxies").json() == {}


@pytest.mark.parametrize(("path", "extra"), [("/proxies", {}), ("/populate", {"proxies": None})])
def test_a_body_over_1_mib_is_refused_as_a_toxiproxy_error(
    api: httpx.Client, echo: str, path: str, extra: dict[str, Any]
) -> None:
    # A name that long could not be addressed at upstream either (it reads 1 MiB of head).
    proxy = {"name": "n" * (1 << 20), "upstream": echo}

    response = api.post(path, json=proxy if path == "/proxies" else [proxy])

    message = "bad request body: larger than 1048576 bytes, the most allowed"
    assert_error(response, 413, message, **extra)
    assert api.get("/proxies").json() == {}


def test_create_existing_proxy_is_a_409_checked_before_binding(
    api: httpx.Client, echo: str
) -> None:
    original = create_proxy(api, "dup", echo)

    # Same name and the very address the first one holds: the name clash wins over the bind.
    same_listen = api.post(
        "/proxies", json={"name": "dup", "upstream": "127.0.0.1:1", "listen": original["listen"]}
    )
    other_listen = api.post("/proxies", json={"name": "dup", "upstream": "127.0.0.1:1"})

    assert_error(same_listen, 409, "proxy already exists")
    assert_error(other_listen, 409, "proxy already exists")
    assert api.get("/proxies").json() == {"dup": original}
    assert echo_round_trip(original["listen"]) == b"ping"


def test_bind_failure_is_a_500_and_the_proxy_is_not_added(api: httpx.Client, echo: str) -> None:
    survivor = create_proxy(api, "survivor", echo)
    with listening_socket() as holder:
        taken = listen_of(holder)

        response = api.post("/proxies", json={"name": "clash", "upstream": echo, "listen": taken})

        assert response.status_code == 500
        body = response.json()
        assert list(body) == ["error", "status"]
        assert body["status"] == 500
        assert body["error"].startswith(f"listen tcp {taken}: ")
        assert "address already in use" in body["error"]
        assert api.get("/proxies").json() == {"survivor": survivor}
        assert_error(api.get("/proxies/clash"), 404, "proxy not found")
        assert echo_round_trip(survivor["listen"], b"still here") == b"still here"
    # Once the address is free, the same request succeeds.
    assert create_proxy(api, "clash", echo, listen=taken)["listen"] == taken


def test_bind_failure_message_is_gos(api: httpx.Client, echo: str) -> None:
    with listening_socket() as holder:
        taken = listen_of(holder)
        response = api.post("/proxies", json={"name": "clash", "upstream": echo, "listen": taken})

    assert_error(response, 500, f"listen tcp {taken}: bind: address already in use")


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        # Go's words, as upstream answers (measured against toxiproxy-server 2.12.0).
        ("nocolon", "listen tcp: address nocolon: missing port in address"),
        ("127.0.0.1:99999", "listen tcp: address 99999: invalid port"),
        ("127.0.0.1:-1", "listen tcp: address -1: invalid port"),
        ("1:2:3", "listen tcp: address 1:2:3: too many colons in address"),
        ("[::1", "listen tcp: address [::1: missing ']' in address"),
        ("[::1]x:0", "listen tcp: address [::1]x:0: missing port in address"),
        ("127.0.0.1:x", "listen tcp: lookup tcp/x: unknown port"),
        ("127.0.0.1:0 ", "listen tcp: lookup tcp/0 : unknown port"),
    ],
)
def test_unusable_listen_address_is_a_500(
    api: httpx.Client, echo: str, listen: str, message: str
) -> None:
    response = api.post("/proxies", json={"name": "bad", "upstream": echo, "listen": listen})

    assert_error(response, 500, message)
    assert api.get("/proxies").json() == {}


def test_upstream_is_not_checked_at_create_time(api: httpx.Client) -> None:
    with listening_socket() as probe:
        dead = listen_of(probe)
    proxy = create_proxy(api, "dead", dead)

    # The dial happens per client; its failure closes the client's connection.
    assert_dropped(proxy["listen"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/proxies/missing"),
        ("POST", "/proxies/missing"),
        ("PATCH", "/proxies/missing"),
        ("DELETE", "/proxies/missing"),
        ("GET", "/proxies/missing/toxics"),
        ("POST", "/proxies/missing/toxics"),
        ("GET", "/proxies/missing/toxics/latency_downstream"),
        ("POST", "/proxies/missing/toxics/latency_downstream"),
        ("PATCH", "/proxies/missing/toxics/latency_downstream"),
        ("DELETE", "/proxies/missing/toxics/latency_downstream"),
    ],
)
@pytest.mark.parametrize("body", [b'{"enabled": false}', b"{not json"], ids=["good", "bad"])
def test_proxy_not_found(api: httpx.Client, method: str, path: str, body: bytes) -> None:
    # As upstream: the unknown proxy is reported even when the body is bad too.
    response = api.request(method, path, content=body)

    assert_error(response, 404, "proxy not found")


def test_delete_proxy(api: httpx.Client, echo: str) -> None:
    proxy = create_proxy(api, "doomed", echo)
    with connect(proxy["listen"]) as live:
        assert exchange(live, b"before") == b"before"

        response = api.delete("/proxies/doomed")

        assert response.status_code == 204
        assert response.content == b""
        assert_closed(live)
    assert_refused(proxy["listen"])
    assert_error(api.get("/proxies/doomed"), 404, "proxy not found")
    assert_error(api.delete("/proxies/doomed"), 404, "proxy not found")
    assert api.get("/proxies").json() == {}


# -- proxy updates
@pytest.mark.parametrize("method", UPDATE_METHODS)
def test_disable_closes_the_port_and_reenable_binds_it_again(
    api: httpx.Client, echo: str, method: str
) -> None:
    proxy = create_proxy(api, "toggle", echo)
    add_toxic(api, "toggle", type="latency", attributes={"latency": 1})
    with connect(proxy["listen"]) as live:
        assert exchange(live, b"up") == b"up"

        disabled = api.request(method, "/proxies/toggle", json={"enabled": False})

        assert disabled.status_code == 200
        assert disabled.json()["enabled"] is False
        assert disabled.json()["listen"] == proxy["listen"]
        assert_closed(live)
    assert_refused(proxy["listen"])
    assert api.get("/proxies/toggle").json()["enabled"] is False

    enabled = api.request(method, "/proxies/toggle", json={"enabled": True})

    assert enabled.status_code == 200
    assert enabled.json()["enabled"] is True
    assert enabled.json()["listen"] == proxy["listen"]
    # Toxics survive disable and enable.
    assert [toxic["name"] for toxic in enabled.json()["toxics"]] == ["latency_downstream"]
    assert echo_round_trip(proxy["listen"], b"up again") == b"up again"


@pytest.mark.parametrize("method", UPDATE_METHODS)
def test_change_upstream(api: httpx.Client, echo: str, method: str) -> None:
    proxy = create_proxy(api, "moving", echo)
    with listening_socket() as new_upstream, connect(proxy["listen"]) as old_client:
        assert exchange(old_client, b"old") == b"old"

        response = api.request(
            method, "/proxies/moving", json={"upstream": listen_of(new_upstream)}
        )

        assert response.status_code == 200
        assert response.json()["upstream"] == listen_of(new_upstream)
        assert response.json()["listen"] == proxy["listen"]
        assert response.json()["enabled"] is True
        # Live connections to the old upstream are closed; new ones dial the new upstream.
        assert_closed(old_client)
        with connect(proxy["listen"]) as client:
            accepted, _ = new_upstream.accept()
            with accepted:
                accepted.settimeout(5)
                client.sendall(b"to the new upstream")
                assert accepted.recv(1024) == b"to the new upstream"


@pytest.mark.parametrize("method", UPDATE_METHODS)
def test_change_listen(api: httpx.Client, echo: str, method: str) -> None:
    proxy = create_proxy(api, "relisten", echo)

    response = api.request(method, "/proxies/relisten", json={"listen": "localhost:0"})

    assert response.status_code == 200
    new_listen = response.json()["listen"]
    assert LOOPBACK_LISTEN.fullmatch(new_listen), new_listen
    assert new_listen != proxy["listen"]
    assert_refused(proxy["listen"])
    assert echo_round_trip(new_listen) == b"ping"


@pytest.mark.parametrize("method", UPDATE_METHODS)
def test_update_is_partial_and_keeps_live_connections(
    api: httpx.Client, echo: str, method: str
) -> None:
    proxy = create_proxy(api, "steady", echo)
    with connect(proxy["listen"]) as live:
        assert exchange(live, b"one") == b"one"

        # Nothing changes: no field, the same values, a name (which cannot change).
        for body in (
            {},
            {"enabled": True, "upstream": echo, "listen": proxy["listen"]},
            {"name": "renamed"},
            {"enabled": None, "listen": None, "upstream": None, "extra": [1, 2]},
        ):
            response = api.request(method, "/proxies/steady", json=body)
            assert response.status_code == 200, body
            assert response.json() == proxy, body

        assert exchange(live, b"two") == b"two"
    assert_error(api.get("/proxies/renamed"), 404, "proxy not found")


@pytest.mark.parametrize("method", UPDATE_METHODS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "bad request body: EOF"),
        (
            b"{",
            "bad request body: invalid JSON: Expecting property name enclosed in double quotes:"
            " line 1 column 2 (char 1)",
        ),
        (b"[]", "bad request body: a proxy must be a JSON object"),
        (b'{"enabled": "false"}', "bad request body: enabled must be true or false, got str"),
        (b'{"upstream": 1}', "bad request body: upstream must be a string, got int"),
        (b'{"listen": {}}', "bad request body: listen must be a string, got dict"),
    ],
)
def test_update_proxy_rejects_bad_bodies(
    api: httpx.Client, echo: str, method: str, body: bytes, message: str
) -> None:
    proxy = create_proxy(api, "strict", echo)

    response = api.request(method, "/proxies/strict", content=body)

    assert_error(response, 400, message)
    assert api.get("/proxies/strict").json() == proxy
    assert echo_round_trip(proxy["listen"]) == b"ping"


def test_update_listen_to_a_taken_address_is_a_500(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "mover", echo)
    with listening_socket() as holder:
        response = api.patch("/proxies/mover", json={"listen": listen_of(holder)})

    assert response.status_code == 500
    assert response.json()["status"] == 500
    assert "address already in use" in response.json()["error"]
    assert "mover" in api.get("/proxies").json()


# -- toxics
def test_no_toxics(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "clean", echo)

    response = api.get("/proxies/clean/toxics")

    assert response.status_code == 200
    assert response.json() == []


def test_create_toxic_defaults(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)

    response = api.post("/proxies/p/toxics", json={"type": "latency"})

    # 200, not 201, as upstream.
    assert response.status_code == 200
    assert list(response.json()) == TOXIC_KEYS
    assert response.json() == toxic_json("latency_downstream", "latency", latency=0, jitter=0)
    # Go prints a float32 1.0 as `1`.
    assert re.search(r'"toxicity":\s*1[,}]', response.text), response.text
    assert api.get("/proxies/p/toxics/latency_downstream").json() == response.json()
    assert api.get("/proxies/p").json()["toxics"] == [response.json()]


@pytest.mark.parametrize(
    ("type_name", "given", "shown"),
    [
        ("latency", {"latency": 100}, {"latency": 100, "jitter": 0}),
        ("bandwidth", {}, {"rate": 0}),
        ("slow_close", {"delay": 5}, {"delay": 5}),
        ("timeout", {}, {"timeout": 0}),
        ("reset_peer", {"timeout": 10}, {"timeout": 10}),
        ("slicer", {"average_size": 64}, {"average_size": 64, "size_variation": 0, "delay": 0}),
        ("limit_data", {"bytes": 1024}, {"bytes": 1024}),
        ("noop", {"ignored": 1}, {}),
    ],
)
@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_every_toxic_type_lists_all_its_attributes(
    api: httpx.Client,
    echo: str,
    type_name: str,
    given: dict[str, int],
    shown: dict[str, int],
    stream: str,
) -> None:
    create_proxy(api, "p", echo)

    toxic = add_toxic(api, "p", type=type_name, stream=stream, attributes=given)

    assert toxic == toxic_json(f"{type_name}_{stream}", type_name, stream, **shown)


@pytest.mark.parametrize(
    ("given", "shown"),
    [(0, 0), (0.0, 0), (0.25, 0.25), (1, 1), (1.0, 1), (None, 1)],
)
def test_toxicity(api: httpx.Client, echo: str, given: float | None, shown: float) -> None:
    create_proxy(api, "p", echo)

    toxic = add_toxic(api, "p", type="noop", toxicity=given)

    assert toxic["toxicity"] == shown
    assert type(toxic["toxicity"]) is type(shown)


@pytest.mark.parametrize(
    ("stream", "shown", "name"),
    [
        (None, "downstream", "noop_downstream"),
        ("UPSTREAM", "upstream", "noop_UPSTREAM"),
        ("Downstream", "downstream", "noop_Downstream"),
    ],
)
def test_stream_is_case_insensitive(
    api: httpx.Client, echo: str, stream: str | None, shown: str, name: str
) -> None:
    # As upstream, whose default name keeps the stream as it was given.
    create_proxy(api, "p", echo)

    toxic = add_toxic(api, "p", type="noop", stream=stream)

    assert (toxic["stream"], toxic["name"]) == (shown, name)
    assert api.get(f"/proxies/p/toxics/{name}").json() == toxic


def test_attribute_values_are_accepted_as_integral_floats_and_nulls(
    api: httpx.Client, echo: str
) -> None:
    create_proxy(api, "p", echo)

    toxic = add_toxic(api, "p", type="latency", attributes={"latency": 250.0, "jitter": None})

    assert toxic["attributes"] == {"latency": 250, "jitter": 0}


def test_toxic_listing_shows_upstream_toxics_first(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)
    for name, stream in [
        ("d1", "downstream"),
        ("u1", "upstream"),
        ("d2", None),
        ("u2", "upstream"),
    ]:
        add_toxic(api, "p", name=name, type="noop", stream=stream)

    listing = api.get("/proxies/p/toxics").json()

    assert [toxic["name"] for toxic in listing] == ["u1", "u2", "d1", "d2"]
    assert api.get("/proxies/p").json()["toxics"] == listing


STREAM_ERROR = "stream was invalid, can be either upstream or downstream"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"type": "latency", "stream": "sideways"}, 400, STREAM_ERROR),
        ({"type": "latency", "stream": "Up"}, 400, STREAM_ERROR),
        ({"type": "latency", "stream": ""}, 400, STREAM_ERROR),
        ({"type": "nope"}, 400, "invalid toxic type"),
        ({"type": ""}, 400, "invalid toxic type"),
        ({}, 400, "invalid toxic type"),
        ({"type": None, "attributes": {"latency": 1}}, 400, "invalid toxic type"),
        # The stream is checked before the type, as upstream does.
        ({"type": "nope", "stream": "sideways"}, 400, STREAM_ERROR),
    ],
)
def test_create_toxic_rejects_bad_streams_and_types(
    api: httpx.Client, echo: str, body: dict[str, Any], status: int, message: str
) -> None:
    create_proxy(api, "p", echo)

    assert_error(api.post("/proxies/p/toxics", json=body), status, message)
    assert api.get("/proxies/p/toxics").json() == []


LATENCY_RANGE = "must be between 0 and 86400000 (ms)"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "bad request body: EOF"),
        (
            b"{",
            "bad request body: invalid JSON: Expecting property name enclosed in double quotes:"
            " line 1 column 2 (char 1)",
        ),
        (b"[]", "bad request body: expected a JSON object, got list"),
        (b"null", "bad request body: expected a JSON object, got NoneType"),
        (b'{"type": 1}', "bad request body: type must be a string, got int"),
        (b'{"type": "latency", "stream": 1}', "bad request body: stream must be a string, got int"),
        (b'{"type": "latency", "name": []}', "bad request body: name must be a string, got list"),
        (
            b'{"type": "latency", "toxicity": "1"}',
            "bad request body: toxicity must be a number between 0 and 1, got '1'",
        ),
        (
            b'{"type": "latency", "toxicity": true}',
            "bad request body: toxicity must be a number between 0 and 1, got True",
        ),
        (
            b'{"type": "latency", "toxicity": 1.5}',
            "bad request body: toxicity must be between 0 and 1, got 1.5",
        ),
        (
            b'{"type": "latency", "toxicity": -0.1}',
            "bad request body: toxicity must be between 0 and 1, got -0.1",
        ),
        (
            b'{"type": "latency", "attributes": [1]}',
            "bad request body: attributes must be a JSON object",
        ),
        (
            b'{"type": "latency", "attributes": {"latency": "100"}}',
            "bad request body: attribute latency of latency must be an integer (ms)",
        ),
        (
            b'{"type": "latency", "attributes": {"jitter": false}}',
            "bad request body: attribute jitter of latency must be an integer (ms)",
        ),
        (
            b'{"type": "latency", "attributes": {"latency": 1.5}}',
            "bad request body: attribute latency of latency must be an integer (ms), got 1.5",
        ),
        (
            b'{"type": "latency", "attributes": {"latency": -1}}',
            f"bad request body: attribute latency of latency {LATENCY_RANGE}, got -1",
        ),
        (
            b'{"type": "latency", "attributes": {"latency": 86400001}}',
            f"bad request body: attribute latency of latency {LATENCY_RANGE}, got 86400001",
        ),
        (
            b'{"type": "latency", "attributes": {"jitter": 1e300}}',
            "bad request body: attribute jitter of latency must be between 0 and 86400000 (ms),"
            f" got {int(1e300)}",
        ),
        (
            b'{"type": "latency", "attributes": {"latency": 1e400}}',
            "bad request body: attribute latency of latency must be an integer (ms), got inf",
        ),
        (
            b'{"type": "latency", "toxicity": 1e400}',
            "bad request body: toxicity must be between 0 and 1, got inf",
        ),
        (
            b'{"type": "latency", "toxicity": NaN}',
            "bad request body: invalid JSON: NaN is not valid JSON",
        ),
        (
            b'{"type": "bandwidth", "attributes": {"rate": -5}}',
            "bad request body: attribute rate of bandwidth must be between 0 and 1000000000000"
            " (KB/s), got -5",
        ),
        (
            b'{"type": "slicer", "attributes": {"delay": -1, "average_size": 1}}',
            "bad request body: attribute delay of slicer must be between 0 and 86400000000"
            " (microseconds), got -1",
        ),
        (
            b'{"type": "limit_data", "attributes": {"bytes": 9007199254740993}}',
            "bad request body: attribute bytes of limit_data must be between 0 and"
            " 9007199254740992 (bytes), got 9007199254740993",
        ),
        pytest.param(
            b'{"type": "slicer"}',
            "bad request body: attribute average_size of slicer must be at least 1 (bytes)",
            id="slicer-without-attributes",
        ),
        (
            b'{"type": "slicer", "attributes": {"average_size": 0, "size_variation": 0}}',
            "bad request body: attribute average_size of slicer must be at least 1 (bytes)",
        ),
        (
            b'{"type": "slicer", "attributes": {"average_size": 10, "size_variation": 11}}',
            "bad request body: attribute size_variation of slicer must be at most"
            " average_size (10) (bytes), got 11",
        ),
    ],
)
def test_create_toxic_rejects_bad_bodies(
    api: httpx.Client, echo: str, body: bytes, message: str
) -> None:
    create_proxy(api, "p", echo)

    assert_error(api.post("/proxies/p/toxics", content=body), 400, message)
    assert api.get("/proxies/p/toxics").json() == []


def test_toxic_names_are_unique_across_streams(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)
    first = add_toxic(api, "p", name="shared", type="latency", stream="downstream")
    add_toxic(api, "p", type="latency", stream="upstream")

    same_stream = api.post("/proxies/p/toxics", json={"name": "shared", "type": "latency"})
    other_stream = api.post(
        "/proxies/p/toxics", json={"name": "shared", "type": "noop", "stream": "upstream"}
    )
    # The default name `latency_upstream` is taken too.
    default_name = api.post("/proxies/p/toxics", json={"type": "latency", "stream": "upstream"})

    for response in (same_stream, other_stream, default_name):
        assert_error(response, 409, "toxic already exists")
    assert api.get("/proxies/p/toxics/shared").json() == first
    assert len(api.get("/proxies/p/toxics").json()) == 2


def test_existing_name_is_reported_before_bad_attributes(api: httpx.Client, echo: str) -> None:
    # Upstream decodes attributes only after the name check.
    create_proxy(api, "p", echo)
    add_toxic(api, "p", type="latency")

    response = api.post("/proxies/p/toxics", json={"type": "latency", "attributes": {"jitter": -1}})

    assert_error(response, 409, "toxic already exists")


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("GET", None),
        ("POST", b'{"toxicity": 0.5}'),
        ("PATCH", b'{"toxicity": 0.5}'),
        ("POST", b"{bad json"),
        ("PATCH", b'{"toxicity": 7}'),
        ("DELETE", None),
    ],
)
def test_toxic_not_found(api: httpx.Client, echo: str, method: str, body: bytes | None) -> None:
    create_proxy(api, "p", echo)
    add_toxic(api, "p", type="latency", stream="upstream")

    # The same name on the other stream does not count.
    response = api.request(method, "/proxies/p/toxics/latency_downstream", content=body)

    assert_error(response, 404, "toxic not found")


@pytest.mark.parametrize("method", UPDATE_METHODS)
def test_update_toxic_merges_attributes_and_keeps_toxicity(
    api: httpx.Client, echo: str, method: str
) -> None:
    create_proxy(api, "p", echo)
    add_toxic(
        api, "p", name="lag", type="latency", toxicity=0.5, attributes={"latency": 100, "jitter": 7}
    )

    merged = api.request(method, "/proxies/p/toxics/lag", json={"attributes": {"latency": 20}})

    assert merged.status_code == 200
    assert merged.json() == toxic_json("lag", "latency", toxicity=0.5, latency=20, jitter=7)
    assert api.get("/proxies/p/toxics/lag").json() == merged.json()

    zeroed = api.request(method, "/proxies/p/toxics/lag", json={"toxicity": 0})

    assert zeroed.status_code == 200
    assert zeroed.json() == toxic_json("lag", "latency", toxicity=0, latency=20, jitter=7)

    full = api.request(method, "/proxies/p/toxics/lag", json={"toxicity": 1.0})

    assert full.json()["toxicity"] == 1
    assert type(full.json()["toxicity"]) is int


@pytest.mark.parametrize("method", UPDATE_METHODS)
def test_update_toxic_ignores_type_stream_and_name(
    api: httpx.Client, echo: str, method: str
) -> None:
    create_proxy(api, "p", echo)
    original = add_toxic(api, "p", type="bandwidth", attributes={"rate": 100})

    response = api.request(
        method,
        "/proxies/p/toxics/bandwidth_downstream",
        json={"type": "latency", "stream": "upstream", "name": "renamed", "attributes": {}},
    )

    assert response.status_code == 200
    assert response.json() == original
    assert api.get("/proxies/p/toxics").json() == [original]


@pytest.mark.parametrize("method", UPDATE_METHODS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "bad request body: EOF"),
        (b"[]", "bad request body: expected a JSON object, got list"),
        (b'{"toxicity": 2}', "bad request body: toxicity must be between 0 and 1, got 2"),
        (b'{"attributes": "fast"}', "bad request body: attributes must be a JSON object"),
        (
            b'{"attributes": {"rate": -1}}',
            "bad request body: attribute rate of bandwidth must be between 0 and 1000000000000"
            " (KB/s), got -1",
        ),
        (
            b'{"attributes": {"rate": 0.5}}',
            "bad request body: attribute rate of bandwidth must be an integer (KB/s), got 0.5",
        ),
    ],
)
def test_update_toxic_rejects_bad_bodies_and_keeps_the_toxic(
    api: httpx.Client, echo: str, method: str, body: bytes, message: str
) -> None:
    create_proxy(api, "p", echo)
    original = add_toxic(api, "p", type="bandwidth", toxicity=0.5, attributes={"rate": 100})

    response = api.request(method, "/proxies/p/toxics/bandwidth_downstream", content=body)

    assert_error(response, 400, message)
    assert api.get("/proxies/p/toxics/bandwidth_downstream").json() == original


def test_update_slicer_checks_the_merged_attributes(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)
    add_toxic(api, "p", type="slicer", attributes={"average_size": 10, "size_variation": 5})

    response = api.patch("/proxies/p/toxics/slicer_downstream", json={"attributes": {"x": 1}})
    as_varied = api.patch(
        "/proxies/p/toxics/slicer_downstream", json={"attributes": {"average_size": 5}}
    )
    too_varied = api.patch(
        "/proxies/p/toxics/slicer_downstream", json={"attributes": {"average_size": 4}}
    )

    assert response.json()["attributes"] == {"average_size": 10, "size_variation": 5, "delay": 0}
    assert as_varied.json()["attributes"] == {"average_size": 5, "size_variation": 5, "delay": 0}
    assert_error(
        too_varied,
        400,
        "bad request body: attribute size_variation of slicer must be at most average_size (4)"
        " (bytes), got 5",
    )


def test_delete_toxic(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)
    add_toxic(api, "p", type="latency")
    kept = add_toxic(api, "p", type="noop", stream="upstream")

    response = api.delete("/proxies/p/toxics/latency_downstream")

    assert response.status_code == 204
    assert response.content == b""
    assert api.get("/proxies/p/toxics").json() == [kept]
    assert_error(api.get("/proxies/p/toxics/latency_downstream"), 404, "toxic not found")


def test_toxics_act_on_traffic_and_updates_apply_to_new_connections(
    api: httpx.Client, echo: str
) -> None:
    proxy = create_proxy(api, "p", echo)
    add_toxic(api, "p", type="limit_data", attributes={"bytes": 4})

    with connect(proxy["listen"]) as limited:
        limited.sendall(b"hello world")
        assert read_until_closed(limited) == b"hell"

    api.patch("/proxies/p/toxics/limit_data_downstream", json={"toxicity": 0})
    assert echo_round_trip(proxy["listen"], b"hello world") == b"hello world"

    api.delete("/proxies/p/toxics/limit_data_downstream")
    assert echo_round_trip(proxy["listen"], b"hello world") == b"hello world"


# -- reset
def test_reset_reenables_proxies_and_removes_toxics(api: httpx.Client, echo: str) -> None:
    toxic_one = create_proxy(api, "toxic_one", echo)
    add_toxic(api, "toxic_one", type="latency", stream="upstream")
    add_toxic(api, "toxic_one", type="limit_data", attributes={"bytes": 1})
    api.patch("/proxies/toxic_one", json={"enabled": False})
    created_off = create_proxy(api, "created_off", echo, listen="localhost:0", enabled=False)
    assert_refused(toxic_one["listen"])

    response = api.post("/reset")

    assert response.status_code == 204
    assert response.content == b""
    after = api.get("/proxies").json()
    assert after["toxic_one"] == {**toxic_one, "enabled": True, "toxics": []}
    assert after["created_off"]["enabled"] is True
    assert LOOPBACK_LISTEN.fullmatch(after["created_off"]["listen"])
    assert after["created_off"]["listen"] != created_off["listen"]
    assert echo_round_trip(toxic_one["listen"], b"healed") == b"healed"
    assert echo_round_trip(after["created_off"]["listen"]) == b"ping"


def test_reset_keeps_live_connections_except_under_timeout(api: httpx.Client, echo: str) -> None:
    calm = create_proxy(api, "calm", echo)
    stalled = create_proxy(api, "stalled", echo)
    add_toxic(api, "calm", type="latency", attributes={"latency": 0})
    with connect(calm["listen"]) as calm_client, connect(stalled["listen"]) as stalled_client:
        assert exchange(calm_client, b"a") == b"a"
        assert exchange(stalled_client, b"b") == b"b"
        add_toxic(api, "stalled", type="timeout", attributes={"timeout": 0})

        assert api.post("/reset").status_code == 204

        # Removing a timeout toxic closes its connections; other connections carry on.
        assert_closed(stalled_client)
        assert exchange(calm_client, b"still open") == b"still open"


def test_reset_with_no_proxies(api: httpx.Client) -> None:
    response = api.post("/reset")

    assert response.status_code == 204
    assert api.get("/proxies").json() == {}


# -- extension: events
def test_events_record_api_changes(api: httpx.Client, echo: str) -> None:
    alpha = create_proxy(api, "alpha", echo)
    create_proxy(api, "beta", echo, enabled=False)
    toxic = add_toxic(api, "alpha", type="latency", attributes={"latency": 5})

    log = event_log(api)

    assert list(log) == ["events", "last_seq", "oldest_seq"]
    assert log["oldest_seq"] == 1
    assert log["last_seq"] == 3
    assert [event["seq"] for event in log["events"]] == [1, 2, 3]
    assert all(isinstance(event["time"], float) for event in log["events"])
    stripped = [
        {k: v for k, v in event.items() if k not in ("seq", "time")} for event in log["events"]
    ]
    assert stripped == [
        {
            "kind": "proxy_created",
            "proxy": "alpha",
            "listen": alpha["listen"],
            "upstream": echo,
            "enabled": True,
        },
        {
            "kind": "proxy_created",
            "proxy": "beta",
            "listen": "127.0.0.1:0",
            "upstream": echo,
            "enabled": False,
        },
        {"kind": "toxic_added", "proxy": "alpha", "toxic": toxic},
    ]


def test_events_since_proxy_and_limit(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "alpha", echo)
    seen = event_log(api)["last_seq"]
    create_proxy(api, "beta", echo)
    add_toxic(api, "alpha", type="noop")
    api.delete("/proxies/beta")

    newer = event_log(api, since=seen)
    only_beta = event_log(api, since=seen, proxy="beta")
    first = event_log(api, since=seen, limit=1)
    rest = event_log(api, since=first["last_seq"])
    nothing = event_log(api, since=newer["last_seq"])

    assert [(e["kind"], e["proxy"]) for e in newer["events"]] == [
        ("proxy_created", "beta"),
        ("toxic_added", "alpha"),
        ("proxy_deleted", "beta"),
    ]
    assert newer["last_seq"] == seen + 3
    assert [e["kind"] for e in only_beta["events"]] == ["proxy_created", "proxy_deleted"]
    assert first["events"] == newer["events"][:1]
    assert first["last_seq"] == seen + 1
    assert rest["events"] == newer["events"][1:]
    assert nothing == {"events": [], "last_seq": newer["last_seq"], "oldest_seq": 1}


def test_events_record_traffic(api: httpx.Client, echo: str) -> None:
    proxy = create_proxy(api, "alpha", echo)
    seen = event_log(api)["last_seq"]

    assert echo_round_trip(proxy["listen"], b"12345") == b"12345"

    wait_for_event(api, "closed", proxy="alpha")
    recorded = events(api, since=seen)
    assert {"accepted", "upstream_connected", "data", "closed"} <= {e["kind"] for e in recorded}
    assert len({event["connection"] for event in recorded}) == 1
    data = [(e["direction"], e["bytes"]) for e in recorded if e["kind"] == "data"]
    assert sum(size for direction, size in data if direction == "upstream") == 5
    assert sum(size for direction, size in data if direction == "downstream") == 5


SINCE_MEANING = "a whole number, 0 or more (the last_seq of the previous answer; 0: all)"
LIMIT_MEANING = "a whole number, 1 or more (the most events to answer with)"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "x"}, f"query parameter since must be {SINCE_MEANING}, got 'x'"),
        ({"since": "1.5"}, f"query parameter since must be {SINCE_MEANING}, got '1.5'"),
        ({"since": "-1"}, f"query parameter since must be {SINCE_MEANING}, got '-1'"),
        (
            {"since": "-" + "9" * 50},
            f"query parameter since must be {SINCE_MEANING}, got '-{'9' * 50}'",
        ),
        ({"since": "1_000"}, f"query parameter since must be {SINCE_MEANING}, got '1_000'"),
        ({"since": " 1"}, f"query parameter since must be {SINCE_MEANING}, got ' 1'"),
        ({"since": "+1"}, f"query parameter since must be {SINCE_MEANING}, got '+1'"),
        ({"since": ""}, f"query parameter since must be {SINCE_MEANING}, got ''"),
        ({"limit": "many"}, f"query parameter limit must be {LIMIT_MEANING}, got 'many'"),
        ({"limit": "0"}, f"query parameter limit must be {LIMIT_MEANING}, got '0'"),
        ({"limit": "-1"}, f"query parameter limit must be {LIMIT_MEANING}, got '-1'"),
    ],
)
def test_events_bad_query(api: httpx.Client, params: dict[str, str], message: str) -> None:
    assert_error(api.get("/events", params=params), 400, message)


@pytest.mark.parametrize("since", [str(2**63), str(2**64 + 1), "9" * 5000, "0" * 60 + "5"])
def test_events_since_a_huge_number_is_an_empty_answer(
    api: httpx.Client, echo: str, since: str
) -> None:
    create_proxy(api, "alpha", echo)
    seen = event_log(api)["last_seq"]

    answer = event_log(api, since=since)

    if since.lstrip("0") == "5":
        assert answer["events"] == []  # 5 is past the only event: nothing new either
    assert answer == {"events": [], "last_seq": seen, "oldest_seq": 1}


def test_events_limit_may_be_huge(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "alpha", echo)

    answer = event_log(api, limit=str(2**70))

    assert [event["kind"] for event in answer["events"]] == ["proxy_created"]
    assert answer["last_seq"] == 1


# -- extension: metrics
def _scrape(api: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _metric(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples[(f"toxiproxy_chaos_{name}", tuple(sorted(labels.items())))]


def test_metrics_count_traffic_per_proxy(api: httpx.Client, echo: str) -> None:
    busy = create_proxy(api, "busy", echo)
    create_proxy(api, "idle", echo)
    add_toxic(api, "busy", type="noop")

    before = _scrape(api)

    for proxy in ("busy", "idle"):
        assert _metric(before, "connections_total", proxy=proxy) == 0
        assert _metric(before, "active_connections", proxy=proxy) == 0
        for direction in ("upstream", "downstream"):
            assert _metric(before, "received_bytes_total", proxy=proxy, direction=direction) == 0
        assert _metric(before, "enabled", proxy=proxy) == 1
    assert _metric(before, "toxics", proxy="busy") == 1
    assert _metric(before, "toxics", proxy="idle") == 0

    with connect(busy["listen"]) as live:
        assert exchange(live, b"x" * 1000) == b"x" * 1000

        def counted_live() -> bool:
            during = _scrape(api)
            return (
                _metric(during, "connections_total", proxy="busy") == 1
                and _metric(during, "active_connections", proxy="busy") == 1
                and _metric(during, "received_bytes_total", proxy="busy", direction="upstream")
                == 1000
                and _metric(during, "received_bytes_total", proxy="busy", direction="downstream")
                == 1000
            )

        wait_until(counted_live)
    assert echo_round_trip(busy["listen"], b"y" * 24) == b"y" * 24
    wait_until(lambda: _metric(_scrape(api), "active_connections", proxy="busy") == 0)
    api.patch("/proxies/idle", json={"enabled": False})

    after = _scrape(api)

    assert _metric(after, "connections_total", proxy="busy") == 2
    assert _metric(after, "received_bytes_total", proxy="busy", direction="upstream") == 1024
    assert _metric(after, "received_bytes_total", proxy="busy", direction="downstream") == 1024
    assert _metric(after, "connections_total", proxy="idle") == 0
    assert _metric(after, "enabled", proxy="idle") == 0


def test_metrics_count_upstream_failures(api: httpx.Client) -> None:
    with listening_socket() as probe:
        dead = listen_of(probe)
    proxy = create_proxy(api, "dead", dead)

    assert_dropped(proxy["listen"])

    wait_until(lambda: _metric(_scrape(api), "upstream_failures_total", proxy="dead") == 1)
    assert _metric(_scrape(api), "connections_total", proxy="dead") == 1
