"""Concurrent clients of the API see exactly upstream's outcomes, and leave no hidden listener.

Every change (proxy create, update, delete, populate, reset; toxic add, update, remove) is hit by
20 clients at once, each on its own connection. Afterwards the listening sockets of this process
(the engine runs in one of its threads) must be exactly the API's and the enabled proxies'.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from pytest_chaos.engine import EngineThread
from pytest_chaos.engine import proxy as proxy_module
from tests.engine import listeners
from tests.engine.api_helpers import (
    Request,
    add_toxic,
    assert_error,
    assert_refused,
    concurrently,
    create_proxy,
    echo_round_trip,
    events,
    statuses,
)
from tests.servers import free_port

pytestmark = pytest.mark.skipif(not listeners.available(), reason="needs Linux's /proc")

CLIENTS = 20


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def distinct_free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(autouse=True)
def slow_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Binding a listener takes a few milliseconds, as when its host name must be resolved.

    Otherwise a change may run without yielding to the loop at all, and a race the engine
    does not guard against would go unseen.
    """
    resolve = proxy_module.resolve_listen_host

    async def slowly(host: str) -> str:
        await asyncio.sleep(0.005)
        return await resolve(host)

    monkeypatch.setattr(proxy_module, "resolve_listen_host", slowly)


@pytest.fixture(params=["uvloop", "asyncio"])
def engine(request: pytest.FixtureRequest) -> Iterator[EngineThread]:
    """An engine on each loop: where an await falls inside a change differs between them."""
    running = EngineThread(seed=1234, loop=request.param)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def engine_ports(engine: EngineThread) -> set[int]:
    """The ports this process listens on besides the proxies: the engine's API, servers."""
    return listeners.listening_ports()


def assert_listeners(engine_ports: set[int], api: httpx.Client) -> None:
    """This process listens exactly where the API says enabled proxies listen."""
    proxies = api.get("/proxies").json()
    expected = {port_of(p["listen"]) for p in proxies.values() if p["enabled"]}
    assert listeners.listening_ports() - engine_ports == expected, proxies


# -- proxies
def test_concurrent_creates_of_one_name_give_one_201_and_one_listener(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    ports = distinct_free_ports(CLIENTS)
    body = {"name": "race", "upstream": echo}
    requests = [("POST", "/proxies", {**body, "listen": f"127.0.0.1:{p}"}) for p in ports]

    responses = concurrently(str(api.base_url), requests)

    assert statuses(responses) == {201: 1, 409: CLIENTS - 1}
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "proxy already exists")
    winner = next(r.json() for r in responses if r.status_code == 201)
    assert api.get("/proxies").json() == {"race": winner}
    assert_listeners(engine_ports, api)
    for port in ports:
        if port != port_of(winner["listen"]):
            assert_refused(f"127.0.0.1:{port}")
    assert echo_round_trip(winner["listen"]) == b"ping"
    assert [e["kind"] for e in events(api, proxy="race")].count("proxy_created") == 1

    assert api.delete("/proxies/race").status_code == 204

    assert_listeners(engine_ports, api)
    for port in ports:
        assert_refused(f"127.0.0.1:{port}")


def test_concurrent_creates_on_free_ports_leave_one_listener(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    body = {"name": "race", "upstream": echo, "listen": "127.0.0.1:0"}

    responses = concurrently(str(api.base_url), [("POST", "/proxies", body)] * CLIENTS)

    assert statuses(responses) == {201: 1, 409: CLIENTS - 1}
    assert_listeners(engine_ports, api)
    assert api.delete("/proxies/race").status_code == 204
    assert listeners.listening_ports() == engine_ports


def test_concurrent_deletes_give_one_204(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    proxy = create_proxy(api, "doomed", echo)

    responses = concurrently(str(api.base_url), [("DELETE", "/proxies/doomed", None)] * CLIENTS)

    assert statuses(responses) == {204: 1, 404: CLIENTS - 1}
    assert listeners.listening_ports() == engine_ports
    assert_refused(proxy["listen"])


def test_concurrent_updates_leave_the_last_listen_only(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    create_proxy(api, "moving", echo)
    ports = distinct_free_ports(CLIENTS)
    requests = [("PATCH", "/proxies/moving", {"listen": f"127.0.0.1:{p}"}) for p in ports]

    responses = concurrently(str(api.base_url), requests)

    assert statuses(responses) == {200: CLIENTS}
    final = api.get("/proxies/moving").json()
    assert port_of(final["listen"]) in ports
    assert final == responses[-1].json() or final in [r.json() for r in responses]
    assert_listeners(engine_ports, api)
    assert echo_round_trip(final["listen"]) == b"ping"
    for port in ports:
        if port != port_of(final["listen"]):
            assert_refused(f"127.0.0.1:{port}")


def test_concurrent_enables_and_disables_agree_with_the_listeners(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    create_proxy(api, "toggled", echo)
    requests = [("POST", "/proxies/toggled", {"enabled": i % 2 == 0}) for i in range(CLIENTS)]

    responses = concurrently(str(api.base_url), requests)

    assert statuses(responses) == {200: CLIENTS}
    assert_listeners(engine_ports, api)


def test_concurrent_populates_leave_one_proxy_and_one_listener(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    ports = distinct_free_ports(CLIENTS)
    requests = [
        ("POST", "/populate", [{"name": "pop", "upstream": echo, "listen": f"127.0.0.1:{p}"}])
        for p in ports
    ]

    responses = concurrently(str(api.base_url), requests)

    assert statuses(responses) == {201: CLIENTS}
    assert list(api.get("/proxies").json()) == ["pop"]
    assert_listeners(engine_ports, api)
    kinds = Counter(e["kind"] for e in events(api, proxy="pop"))
    # Each populate with another listen replaces the proxy: delete, then create.
    assert kinds["proxy_created"] == kinds["proxy_deleted"] + 1


def test_concurrent_resets_and_changes_never_fail(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    for i in range(10):
        create_proxy(api, f"p{i}", echo, enabled=i % 2 == 0)
        add_toxic(api, f"p{i}", type="latency", attributes={"latency": 1})
    for round_number in range(3):
        requests: list[Request] = []
        for i in range(CLIENTS // 2):
            requests.append(("POST", "/reset", None))
            if i % 2:
                body = {"name": f"new{round_number}_{i}", "upstream": echo}
                requests.append(("POST", "/proxies", body))
            else:
                requests.append(("DELETE", f"/proxies/p{i}", None))
        random.Random(round_number).shuffle(requests)

        responses = concurrently(str(api.base_url), requests)

        assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    proxies = api.get("/proxies").json()
    assert all(proxy["enabled"] and proxy["toxics"] == [] for proxy in proxies.values())
    assert_listeners(engine_ports, api)


# -- toxics
def test_concurrent_toxic_adds_of_one_name_give_one_200(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)
    requests = [
        (
            "POST",
            "/proxies/p/toxics",
            {"name": "t", "type": "latency", "attributes": {"latency": i}},
        )
        for i in range(CLIENTS)
    ]

    responses = concurrently(str(api.base_url), requests)

    assert statuses(responses) == {200: 1, 409: CLIENTS - 1}
    winner = next(r.json() for r in responses if r.status_code == 200)
    assert api.get("/proxies/p/toxics").json() == [winner]


def test_concurrent_toxic_updates_all_apply_in_some_order(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)
    add_toxic(api, "p", name="t", type="latency", attributes={"latency": 0})
    requests = [
        ("PATCH", "/proxies/p/toxics/t", {"attributes": {"latency": i}}) for i in range(CLIENTS)
    ]

    responses = concurrently(str(api.base_url), requests)

    assert statuses(responses) == {200: CLIENTS}
    final = api.get("/proxies/p/toxics/t").json()
    assert final in [r.json() for r in responses]
    assert [e["kind"] for e in events(api, proxy="p")].count("toxic_updated") == CLIENTS


def test_concurrent_toxic_removes_give_one_204(api: httpx.Client, echo: str) -> None:
    create_proxy(api, "p", echo)
    add_toxic(api, "p", name="t", type="latency", attributes={"latency": 1})

    responses = concurrently(str(api.base_url), [("DELETE", "/proxies/p/toxics/t", None)] * CLIENTS)

    assert statuses(responses) == {204: 1, 404: CLIENTS - 1}
    assert api.get("/proxies/p/toxics").json() == []


def test_toxic_changes_racing_a_proxy_delete_leave_nothing_behind(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    create_proxy(api, "p", echo)
    requests: list[Request] = [("DELETE", "/proxies/p", None)]
    requests += [
        ("POST", "/proxies/p/toxics", {"name": f"t{i}", "type": "noop"}) for i in range(CLIENTS)
    ]
    random.Random(5).shuffle(requests)

    responses = concurrently(str(api.base_url), requests)

    assert set(statuses(responses)) <= {200, 204, 404}
    assert api.get("/proxies").json() == {}
    assert listeners.listening_ports() == engine_ports


# -- everything at once
OPERATIONS = (
    "create",
    "delete",
    "enable",
    "disable",
    "move",
    "reset",
    "populate",
    "add_toxic",
    "update_toxic",
    "remove_toxic",
    "list",
)
ALLOWED = {
    "create": {201, 409},
    "delete": {204, 404},
    "enable": {200, 404},
    "disable": {200, 404},
    "move": {200, 404},
    "reset": {204},
    "populate": {201},
    "add_toxic": {200, 404, 409},
    "update_toxic": {200, 404},
    "remove_toxic": {204, 404},
    "list": {200},
}


def _random_request(rng: random.Random, echo: str) -> tuple[str, Request]:
    operation = rng.choice(OPERATIONS)
    name = f"p{rng.randrange(4)}"
    toxic = f"t{rng.randrange(3)}"
    proxy_body = {"name": name, "upstream": echo, "listen": "127.0.0.1:0"}
    request: Request
    if operation == "create":
        request = ("POST", "/proxies", proxy_body)
    elif operation == "delete":
        request = ("DELETE", f"/proxies/{name}", None)
    elif operation in ("enable", "disable"):
        request = ("PATCH", f"/proxies/{name}", {"enabled": operation == "enable"})
    elif operation == "move":
        request = ("POST", f"/proxies/{name}", {"listen": "127.0.0.1:0"})
    elif operation == "reset":
        request = ("POST", "/reset", None)
    elif operation == "populate":
        request = ("POST", "/populate", [proxy_body])
    elif operation == "add_toxic":
        body = {"name": toxic, "type": "latency", "attributes": {"latency": 1}}
        request = ("POST", f"/proxies/{name}/toxics", body)
    elif operation == "update_toxic":
        body = {"attributes": {"latency": rng.randrange(5)}}
        request = ("PATCH", f"/proxies/{name}/toxics/{toxic}", body)
    elif operation == "remove_toxic":
        request = ("DELETE", f"/proxies/{name}/toxics/{toxic}", None)
    else:
        request = ("GET", "/proxies", None)
    return operation, request


@pytest.mark.parametrize("seed", range(3))
def test_mixed_concurrent_changes_end_in_a_consistent_state(
    api: httpx.Client, echo: str, engine_ports: set[int], seed: int
) -> None:
    rng = random.Random(seed)
    for _ in range(6):
        batch = [_random_request(rng, echo) for _ in range(CLIENTS)]

        responses = concurrently(str(api.base_url), [request for _, request in batch])

        for (operation, request), response in zip(batch, responses, strict=True):
            assert response.status_code in ALLOWED[operation], (request, response.text)

    proxies = api.get("/proxies").json()
    assert_listeners(engine_ports, api)
    for name, proxy in proxies.items():
        assert api.get(f"/proxies/{name}/toxics").json() == proxy["toxics"]
        if proxy["enabled"]:
            assert echo_round_trip(proxy["listen"]) == b"ping"
    # The record agrees: every proxy that exists was created once more than it was deleted.
    kinds = Counter((e["kind"], e["proxy"]) for e in events(api))
    for name in (f"p{i}" for i in range(4)):
        alive = kinds[("proxy_created", name)] - kinds[("proxy_deleted", name)]
        assert alive == (1 if name in proxies else 0), name


def test_every_read_path_answers_while_changes_race(
    api: httpx.Client, echo: str, engine_ports: set[int]
) -> None:
    """Reads see a change whole or not at all: a proxy is there (fully formed) or a 404."""
    for round_number in range(2):
        requests: list[Request] = []
        for i in range(CLIENTS // 4):
            name = f"r{i}"
            body = {"name": name, "upstream": echo}
            toxic = {"name": "t", "type": "latency", "attributes": {"latency": 1}}
            requests += [
                ("POST", "/proxies", body),
                ("POST", f"/proxies/{name}/toxics", toxic),
                ("POST", f"/proxies/{name}/toxics/t", {"toxicity": 0.5}),
                ("DELETE", f"/proxies/{name}", None) if round_number % 2 else ("GET", "/", None),
            ]
            requests += [
                ("GET", "/proxies", None),
                ("GET", f"/proxies/{name}", None),
                ("GET", f"/proxies/{name}/toxics", None),
                ("GET", f"/proxies/{name}/toxics/t", None),
                ("GET", "/events", None),
                ("GET", "/metrics", None),
                ("GET", "/version", None),
            ]
        random.Random(round_number).shuffle(requests)

        responses = concurrently(str(api.base_url), requests)

        for (method, path, _), response in zip(requests, responses, strict=True):
            assert response.status_code < 500, (method, path, response.text)
            if method == "GET" and path.startswith("/proxies/") and response.status_code == 200:
                shown = response.json()
                if path.count("/") == 2:
                    assert set(shown) == {
                        "name",
                        "listen",
                        "upstream",
                        "enabled",
                        "Logger",
                        "toxics",
                    }
                    assert shown["enabled"] is True
                    assert not shown["listen"].endswith(":0")
    assert_listeners(engine_ports, api)
