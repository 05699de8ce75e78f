"""`POST /populate`: validate every entry first, then keep, replace or create proxies in order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.engine.api_helpers import (
    LOOPBACK_LISTEN,
    add_toxic,
    assert_closed,
    assert_error,
    assert_refused,
    connect,
    create_proxy,
    echo_round_trip,
    exchange,
    listen_of,
    listening_socket,
)


def populate(api: httpx.Client, proxies: Any) -> httpx.Response:
    return api.post("/populate", json=proxies)


def test_populate_nothing(api: httpx.Client) -> None:
    response = populate(api, [])

    assert response.status_code == 201
    assert response.json() == {"proxies": None}
    assert api.get("/proxies").json() == {}


def test_populate_creates_new_proxies_in_order(api: httpx.Client, echo: str) -> None:
    response = populate(
        api,
        [
            {"name": "one", "upstream": echo},
            {"name": "two", "upstream": echo, "listen": "localhost:0", "enabled": None},
            {"name": "three", "upstream": echo, "listen": "localhost:0", "enabled": False},
        ],
    )

    assert response.status_code == 201
    assert list(response.json()) == ["proxies"]
    one, two, three = response.json()["proxies"]
    assert [one["name"], two["name"], three["name"]] == ["one", "two", "three"]
    assert LOOPBACK_LISTEN.fullmatch(one["listen"])
    assert LOOPBACK_LISTEN.fullmatch(two["listen"])
    assert (one["enabled"], two["enabled"]) == (True, True)
    assert three == {
        "name": "three",
        "listen": "localhost:0",
        "upstream": echo,
        "enabled": False,
        "Logger": {},
        "toxics": [],
    }
    assert api.get("/proxies").json() == {"one": one, "two": two, "three": three}
    assert echo_round_trip(one["listen"], b"one") == b"one"
    assert echo_round_trip(two["listen"], b"two") == b"two"


def test_populate_ignores_toxics_in_entries(api: httpx.Client, echo: str) -> None:
    entry = {"name": "plain", "upstream": echo, "toxics": [{"type": "latency"}], "extra": 1}

    response = populate(api, [entry])

    assert response.status_code == 201
    assert response.json()["proxies"][0]["toxics"] == []
    assert api.get("/proxies/plain/toxics").json() == []


@pytest.mark.parametrize(
    ("bad_entries", "message"),
    [
        ([{"upstream": "127.0.0.1:1"}], "missing required field: name at proxy 2"),
        ([{"name": "", "upstream": "127.0.0.1:1"}], "missing required field: name at proxy 2"),
        ([{"name": None, "upstream": "127.0.0.1:1"}], "missing required field: name at proxy 2"),
        ([{}], "missing required field: name at proxy 2"),
        ([{"name": "x"}], "missing required field: upstream at proxy 2"),
        (
            [{"name": "x", "upstream": "127.0.0.1:1"}, {"name": "y", "upstream": ""}],
            "missing required field: upstream at proxy 3",
        ),
        ([{"name": 1, "upstream": "x:1"}], "bad request body: name must be a string, got int"),
        (
            [{"name": "x", "upstream": "x:1", "enabled": "no"}],
            "bad request body: enabled must be true or false, got str",
        ),
        (["not a proxy"], "bad request body: a proxy must be a JSON object"),
        ([None], "bad request body: a proxy must be a JSON object"),
    ],
)
def test_every_entry_is_validated_before_any_change(
    api: httpx.Client, echo: str, bad_entries: list[Any], message: str
) -> None:
    kept = create_proxy(api, "kept", echo)
    add_toxic(api, "kept", type="latency")
    kept = api.get("/proxies/kept").json()
    # This first entry alone would replace `kept` (other upstream) and create `fresh`.
    with listening_socket() as other:
        first = {"name": "kept", "upstream": listen_of(other)}
        response = populate(api, [first, *bad_entries, {"name": "fresh", "upstream": echo}])

    assert_error(response, 400, message, proxies=None)
    assert api.get("/proxies").json() == {"kept": kept}
    assert echo_round_trip(kept["listen"]) == b"ping"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "bad request body: EOF"),
        (
            b"[{",
            "bad request body: invalid JSON: Expecting property name enclosed in double quotes:"
            " line 1 column 3 (char 2)",
        ),
        (b'{"name": "x", "upstream": "x:1"}', "bad request body: populate expects a JSON array"),
        (b"null", "bad request body: populate expects a JSON array"),
    ],
)
def test_populate_rejects_bodies_that_are_not_arrays(
    api: httpx.Client, body: bytes, message: str
) -> None:
    response = api.post("/populate", content=body)

    if message.endswith("JSON array"):
        message += " of proxies"
    assert_error(response, 400, message, proxies=None)
    assert api.get("/proxies").json() == {}


@pytest.mark.parametrize("spelling", ["as shown", "localhost"])
def test_unchanged_proxy_is_returned_as_is(api: httpx.Client, echo: str, spelling: str) -> None:
    create_proxy(api, "same", echo)
    add_toxic(api, "same", type="latency", stream="upstream", attributes={"latency": 1})
    add_toxic(api, "same", type="noop")
    before = api.get("/proxies/same").json()
    listen = before["listen"]
    if spelling == "localhost":
        listen = listen.replace("127.0.0.1:", "localhost:")

    with connect(before["listen"]) as live:
        assert exchange(live, b"before") == b"before"

        response = populate(api, [{"name": "same", "upstream": echo, "listen": listen}])

        assert response.status_code == 201
        assert response.json() == {"proxies": [before]}
        assert len(before["toxics"]) == 2
        assert api.get("/proxies/same").json() == before
        # Unchanged means untouched: the live connection carries on.
        assert exchange(live, b"after") == b"after"


def test_unchanged_disabled_proxy_stays_disabled(api: httpx.Client, echo: str) -> None:
    created = create_proxy(api, "resting", echo)
    add_toxic(api, "resting", type="noop")
    api.patch("/proxies/resting", json={"enabled": False})
    before = api.get("/proxies/resting").json()

    response = populate(api, [{"name": "resting", "upstream": echo, "listen": created["listen"]}])

    assert response.status_code == 201
    assert response.json() == {"proxies": [before]}
    assert before["enabled"] is False
    assert before["toxics"] != []
    assert_refused(created["listen"])


def test_proxy_with_another_upstream_is_replaced(api: httpx.Client, echo: str) -> None:
    old = create_proxy(api, "moved", echo)
    add_toxic(api, "moved", type="latency")
    with listening_socket() as new_upstream, connect(old["listen"]) as live:
        assert exchange(live, b"old") == b"old"
        entry = {"name": "moved", "upstream": listen_of(new_upstream), "listen": old["listen"]}

        response = populate(api, [entry])

        assert response.status_code == 201
        assert response.json() == {
            "proxies": [{**old, "upstream": listen_of(new_upstream), "toxics": []}]
        }
        assert_closed(live)
        with connect(old["listen"]) as client:
            accepted, _ = new_upstream.accept()
            accepted.close()
            assert_closed(client)
    assert api.get("/proxies/moved/toxics").json() == []


def test_proxy_with_another_listen_is_replaced(api: httpx.Client, echo: str) -> None:
    old = create_proxy(api, "moved", echo)
    add_toxic(api, "moved", type="latency")

    response = populate(api, [{"name": "moved", "upstream": echo, "listen": "127.0.0.1:0"}])

    assert response.status_code == 201
    (new,) = response.json()["proxies"]
    assert new["listen"] != old["listen"]
    assert LOOPBACK_LISTEN.fullmatch(new["listen"])
    assert new["toxics"] == []
    assert_refused(old["listen"])
    assert echo_round_trip(new["listen"]) == b"ping"


def test_keep_replace_and_create_in_one_call(api: httpx.Client, echo: str) -> None:
    same = create_proxy(api, "same", echo)
    add_toxic(api, "same", type="noop")
    same = api.get("/proxies/same").json()
    create_proxy(api, "moved", echo)
    add_toxic(api, "moved", type="noop")

    response = populate(
        api,
        [
            {"name": "fresh", "upstream": echo},
            {"name": "moved", "upstream": echo, "listen": "localhost:0"},
            {"name": "same", "upstream": echo, "listen": same["listen"]},
        ],
    )

    assert response.status_code == 201
    fresh, moved, kept = response.json()["proxies"]
    assert kept == same
    assert (fresh["name"], fresh["toxics"]) == ("fresh", [])
    assert (moved["name"], moved["toxics"]) == ("moved", [])
    assert api.get("/proxies").json() == {"same": same, "moved": moved, "fresh": fresh}


def test_first_failure_stops_and_reports_what_was_done(api: httpx.Client, echo: str) -> None:
    existing = create_proxy(api, "existing", echo)
    with listening_socket() as holder:
        taken = listen_of(holder)

        response = populate(
            api,
            [
                {"name": "existing", "upstream": echo, "listen": existing["listen"]},
                {"name": "created", "upstream": echo},
                {"name": "clash", "upstream": echo, "listen": taken},
                {"name": "never", "upstream": echo},
            ],
        )

    assert response.status_code == 500
    body = response.json()
    assert list(body) == ["error", "status", "proxies"]
    assert body["status"] == 500
    assert body["error"].startswith(f"listen tcp {taken}: ")
    assert "address already in use" in body["error"]
    created = api.get("/proxies/created").json()
    assert body["proxies"] == [existing, created]
    assert set(api.get("/proxies").json()) == {"existing", "created"}
    assert echo_round_trip(created["listen"]) == b"ping"


def test_failure_on_the_first_entry_reports_null(api: httpx.Client, echo: str) -> None:
    with listening_socket() as holder:
        taken = listen_of(holder)

        response = populate(
            api,
            [{"name": "clash", "upstream": echo, "listen": taken}, {"name": "b", "upstream": echo}],
        )

    assert response.status_code == 500
    body = response.json()
    assert body["status"] == 500
    assert body["proxies"] is None
    assert api.get("/proxies").json() == {}
