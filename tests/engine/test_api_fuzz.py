"""Hypothesis fuzzing of the API: any body gets a documented answer, never a crash.

Each endpoint must answer every JSON value (and every byte string) with either its documented
success or a Toxiproxy error `{"error": str, "status": int}` carrying the response's status;
a 5xx is only allowed for a listen address that cannot be bound. The engine keeps serving
traffic afterwards.

Listen addresses are drawn from a fixed list: the tests run as root in some places, and an
arbitrary `host:port` could bind a real interface or a privileged port.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pytest_chaos.engine.http_toxics import HttpToxic
from pytest_chaos.engine.toxics import TOXIC_TYPES
from tests.engine.api_helpers import (
    PROXY_KEYS,
    TOXIC_KEYS,
    add_toxic,
    create_proxy,
    echo_round_trip,
)

FUZZ_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
ATTRIBUTE_NAMES = sorted(
    {spec.name for toxic in TOXIC_TYPES.values() for spec in toxic.attribute_specs}
    | {name for toxic in TOXIC_TYPES.values() for name in getattr(toxic, "probability_names", ())}
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
# Names stay addressable in a URL path so that a created proxy or toxic can be deleted again.
safe_names = st.text(alphabet="abz019_-", min_size=1, max_size=6)
names = safe_names | st.just("") | json_values.filter(lambda value: not isinstance(value, str))
listens = (
    st.sampled_from(
        ["127.0.0.1:0", "localhost:0", "127.0.0.1:", "nocolon", "127.0.0.1:99999", "[::1]:0", ""]
    )
    | json_values
)
toxicities = st.floats(min_value=-0.5, max_value=1.5) | st.integers(-1, 2) | json_values
attribute_values = (
    st.integers(min_value=-10, max_value=10**6)
    | st.floats(min_value=-10, max_value=1e6, allow_nan=False)
    | st.integers()
    | json_values
)
attributes = (
    st.dictionaries(st.sampled_from([*ATTRIBUTE_NAMES, "x"]), attribute_values, max_size=4)
    | json_values
)
# Each body strategy mixes any JSON value, objects with the right keys and any values, and
# objects that are nearly right, so that successes are common enough to be checked too.
proxy_bodies = (
    json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "name": names,
            "upstream": st.text(max_size=12) | json_values,
            "listen": listens,
            "enabled": st.booleans() | json_values,
            "extra": json_values,
        },
    )
    | st.fixed_dictionaries(
        {"name": safe_names, "upstream": st.sampled_from(["127.0.0.1:1", "db:5432", ""])},
        optional={
            "listen": st.sampled_from(["127.0.0.1:0", "localhost:0", "127.0.0.1:99999"]),
            "enabled": st.none() | st.booleans(),
        },
    )
)
toxic_bodies = (
    json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "name": names,
            "type": st.sampled_from([*TOXIC_TYPES, "", "nope"]) | json_values,
            "stream": st.sampled_from(["upstream", "downstream", "", "Up"]) | json_values,
            "toxicity": toxicities,
            "attributes": attributes,
            "extra": json_values,
        },
    )
    | st.fixed_dictionaries(
        {"type": st.sampled_from(sorted(TOXIC_TYPES))},
        optional={
            "name": safe_names,
            "stream": st.sampled_from(["upstream", "downstream"]),
            "toxicity": st.none() | st.floats(min_value=0, max_value=1),
            "attributes": st.dictionaries(
                st.sampled_from(ATTRIBUTE_NAMES), st.integers(0, 10**6), max_size=3
            ),
        },
    )
)
toxic_updates = (
    json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "toxicity": toxicities,
            "attributes": attributes,
            "type": json_values,
            "stream": json_values,
            "name": json_values,
        },
    )
    | st.fixed_dictionaries(
        {},
        optional={
            "toxicity": st.none() | st.floats(min_value=0, max_value=1),
            "attributes": st.dictionaries(
                st.sampled_from(ATTRIBUTE_NAMES), st.integers(0, 10**6), max_size=3
            ),
        },
    )
)
# One toxic of each type, with valid attributes, to be updated by the fuzzer.
SEED_TOXICS: dict[str, dict[str, int]] = {
    "latency": {"latency": 10},
    "bandwidth": {"rate": 100},
    "slow_close": {"delay": 10},
    "timeout": {"timeout": 100},
    "reset_peer": {"timeout": 100},
    "slicer": {"average_size": 10, "size_variation": 3, "delay": 10},
    "limit_data": {"bytes": 100},
    "noop": {},
}


def post(api: httpx.Client, path: str, body: Any) -> httpx.Response:
    return api.post(path, content=json.dumps(body).encode())


def check_error(response: httpx.Response, allowed: set[int], *, populate: bool = False) -> None:
    """A Toxiproxy error whose status is one of `allowed`, or a bind error.

    Populate errors also carry the proxies done so far, none for a body that is not an array.
    """
    body = response.json()
    # `--hypothesis-show-statistics` then shows which errors the fuzzer reaches.
    event(f"{response.status_code} {str(body.get('error'))[:40]}")
    assert isinstance(body, dict), response.text
    if populate:
        assert body.pop("proxies") is None, body
    assert set(body) == {"error", "status"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert body["status"] == response.status_code
    if response.status_code == 500:
        # Go's words: `listen tcp ADDRESS: bind: ...`, or `listen tcp: ...` for a bad address.
        assert body["error"].startswith(("listen tcp ", "listen tcp: ")), body
    else:
        assert response.status_code in allowed, body


def check_proxy(proxy: Any) -> None:
    assert list(proxy) == PROXY_KEYS
    assert isinstance(proxy["name"], str)
    assert proxy["name"]
    assert isinstance(proxy["listen"], str)
    assert isinstance(proxy["upstream"], str)
    assert proxy["upstream"]
    assert isinstance(proxy["enabled"], bool)
    assert proxy["Logger"] == {}
    for toxic in proxy["toxics"]:
        check_toxic(toxic)


def check_toxic(toxic: Any) -> None:
    assert list(toxic) == TOXIC_KEYS
    assert toxic["type"] in TOXIC_TYPES
    assert toxic["stream"] in ("upstream", "downstream")
    assert isinstance(toxic["name"], str)
    assert toxic["name"]
    assert type(toxic["toxicity"]) in (int, float)
    assert 0 <= toxic["toxicity"] <= 1
    toxic_class = TOXIC_TYPES[toxic["type"]]
    if issubclass(toxic_class, HttpToxic):
        # An HTTP toxic's attributes are its fault's options, as the fault class checks them.
        fault = toxic_class.fault_class.from_options(toxic["attributes"])
        assert fault.options() == toxic["attributes"]
        return
    specs = toxic_class.attribute_specs
    # Probabilities (packet_loss's loss_rate and correlation) come first, as numbers 0..1.
    probabilities = getattr(toxic_class, "probability_names", ())
    assert list(toxic["attributes"]) == [*probabilities, *(spec.name for spec in specs)]
    for name in probabilities:
        assert type(toxic["attributes"][name]) in (int, float)
        assert 0 <= toxic["attributes"][name] <= 1
    for spec in specs:
        value = toxic["attributes"][spec.name]
        assert type(value) is int
        assert spec.minimum <= value <= spec.maximum


def assert_still_serving(api: httpx.Client, echo: str) -> None:
    assert api.get("/version").status_code == 200
    proxy = create_proxy(api, "after_fuzzing", echo)
    assert echo_round_trip(proxy["listen"], b"still alive") == b"still alive"


def test_create_proxy_answers_any_body(api: httpx.Client, echo: str) -> None:
    @FUZZ_SETTINGS
    @given(body=proxy_bodies)
    def create(body: Any) -> None:
        response = post(api, "/proxies", body)

        if response.status_code == 201:
            proxy = response.json()
            check_proxy(proxy)
            assert proxy["name"] == body["name"]
            assert proxy["upstream"] == body["upstream"]
            assert api.delete(f"/proxies/{proxy['name']}").status_code == 204
        else:
            check_error(response, {400, 409})
        assert api.get("/proxies").json() == {}

    create()
    assert_still_serving(api, echo)


def test_update_proxy_answers_any_body(api: httpx.Client, echo: str) -> None:
    @FUZZ_SETTINGS
    @given(body=proxy_bodies, method=st.sampled_from(["POST", "PATCH"]))
    def update(body: Any, method: str) -> None:
        # A fresh proxy per example keeps examples independent (and shrinking honest).
        api.delete("/proxies/target")
        create_proxy(api, "target", echo)

        response = api.request(method, "/proxies/target", content=json.dumps(body).encode())

        if response.status_code == 200:
            proxy = response.json()
            # As upstream, an update may set any string, even an empty one, as upstream.
            check_proxy({**proxy, "upstream": proxy["upstream"] or "empty"})
            assert proxy["name"] == "target"
            assert proxy == api.get("/proxies/target").json()
        else:
            check_error(response, {400})
        assert list(api.get("/proxies").json()) == ["target"]

    update()
    assert_still_serving(api, echo)


def test_create_toxic_answers_any_body(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "target", echo)

    @FUZZ_SETTINGS
    @given(body=toxic_bodies)
    def create(body: Any) -> None:
        response = post(api, "/proxies/target/toxics", body)

        if response.status_code == 200:
            toxic = response.json()
            check_toxic(toxic)
            listing = api.get("/proxies/target/toxics").json()
            assert listing == [toxic]
            assert api.delete(f"/proxies/target/toxics/{toxic['name']}").status_code == 204
        else:
            check_error(response, {400, 409})
        assert api.get("/proxies/target/toxics").json() == []

    create()
    assert_still_serving(api, echo)


def test_update_toxic_answers_any_body(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "target", echo)
    for type_name, values in SEED_TOXICS.items():
        add_toxic(api, "target", type=type_name, attributes=values)

    @FUZZ_SETTINGS
    @given(
        name=st.sampled_from([f"{type_name}_downstream" for type_name in SEED_TOXICS]),
        body=toxic_updates,
        method=st.sampled_from(["POST", "PATCH"]),
    )
    def update(name: str, body: Any, method: str) -> None:
        before = api.get(f"/proxies/target/toxics/{name}").json()

        response = api.request(
            method, f"/proxies/target/toxics/{name}", content=json.dumps(body).encode()
        )

        after = api.get(f"/proxies/target/toxics/{name}").json()
        if response.status_code == 200:
            check_toxic(response.json())
            assert response.json() == after
            assert (after["name"], after["type"], after["stream"]) == (
                before["name"],
                before["type"],
                before["stream"],
            )
        else:
            check_error(response, {400})
            assert after == before
        assert len(api.get("/proxies/target/toxics").json()) == len(SEED_TOXICS)

    update()
    assert_still_serving(api, echo)


@pytest.mark.parametrize(
    "path", ["/proxies", "/populate", "/proxies/target", "/proxies/target/toxics"]
)
def test_any_bytes_get_a_documented_answer(api: httpx.Client, echo: str, path: str) -> None:
    create_proxy(api, "target", echo)

    @settings(FUZZ_SETTINGS, max_examples=50)
    @given(body=st.binary(max_size=40))
    def send(body: bytes) -> None:
        response = api.post(path, content=body)

        if response.status_code < 300:
            # Only a few byte strings are valid JSON of the right shape; undo what they did.
            if path == "/proxies/target/toxics":
                api.delete(f"/proxies/target/toxics/{response.json()['name']}")
            elif path in ("/proxies", "/populate") and response.json().get("name") != "target":
                for name in set(api.get("/proxies").json()) - {"target"}:
                    api.delete(f"/proxies/{name}")
        else:
            check_error(response, {400, 409}, populate=path == "/populate")

    send()
    assert_still_serving(api, echo)
