"""The `toxiproxy-python` client from PyPI drives the engine unmodified.

The client keeps its server address on the class `toxiproxy.api.APIConsumer`; the fixture
points it at the test's engine and restores it afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from pytest_chaos.engine import EngineThread
from tests.engine.api_helpers import (
    assert_closed,
    assert_refused,
    connect,
    echo_round_trip,
    exchange,
    read_until_closed,
)
from tests.servers import recv_exactly


@pytest.fixture
def server(engine: EngineThread) -> Iterator[Toxiproxy]:
    saved = (APIConsumer.host, APIConsumer.port)
    client = Toxiproxy()
    client.update_api_consumer(engine.engine.host, engine.engine.port)
    try:
        yield client
    finally:
        APIConsumer.host, APIConsumer.port = saved


def test_running_and_version(server: Toxiproxy) -> None:
    assert server.running() is True
    assert json.loads(server.version())["version"] == "2.12.0"


def test_create_and_list_proxies(server: Toxiproxy, echo: str) -> None:
    proxy = server.create(upstream=echo, name="echo_proxy")

    assert proxy.name == "echo_proxy"
    assert proxy.upstream == echo
    assert proxy.enabled is True
    assert proxy.listen.startswith("127.0.0.1:")
    assert proxy.listen != "127.0.0.1:0"
    assert echo_round_trip(proxy.listen, b"via toxiproxy-python") == b"via toxiproxy-python"
    listed = server.proxies()
    assert list(listed) == ["echo_proxy"]
    assert listed["echo_proxy"].listen == proxy.listen
    assert server.get_proxy("echo_proxy") is not None
    assert server.get_proxy("missing") is None


def test_server_errors_become_client_exceptions(server: Toxiproxy, echo: str) -> None:
    proxy = server.create(upstream=echo, name="p")

    # The client checks for duplicates itself; the server's 409 maps to the same exception.
    with pytest.raises(ProxyExists):
        server.create(upstream=echo, name="p")
    with pytest.raises(ProxyExists, match="proxy already exists"):
        APIConsumer.post("/proxies", json={"name": "p", "upstream": echo})
    with pytest.raises(NotFound, match="proxy not found"):
        APIConsumer.get("/proxies/missing")
    with pytest.raises(InvalidToxic, match="invalid toxic type"):
        proxy.add_toxic(type="nope")
    with pytest.raises(InvalidToxic, match="missing required field: upstream"):
        APIConsumer.post("/proxies", json={"name": "no_upstream"})


def test_toxics_are_added_listed_and_removed(server: Toxiproxy, echo: str) -> None:
    proxy = server.create(upstream=echo, name="p")

    proxy.add_toxic(type="latency", attributes={"latency": 300})
    proxy.add_toxic(type="limit_data", stream="upstream", toxicity=0.5, attributes={"bytes": 9})
    proxy.add_toxic(name="quiet", type="noop")

    toxics = proxy.toxics()
    assert list(toxics) == ["limit_data_upstream", "latency_downstream", "quiet"]
    latency = toxics["latency_downstream"]
    assert (latency.type, latency.stream, latency.toxicity) == ("latency", "downstream", 1)
    assert latency.attributes == {"latency": 300, "jitter": 0}
    limit = proxy.get_toxic("limit_data_upstream")
    assert limit is not None
    assert (limit.stream, limit.toxicity, limit.attributes) == ("upstream", 0.5, {"bytes": 9})
    assert proxy.get_toxic("missing") is None

    assert proxy.destroy_toxic("quiet") is True
    assert proxy.destroy_toxic("limit_data_upstream") is True
    assert list(proxy.toxics()) == ["latency_downstream"]
    with pytest.raises(NotFound, match="toxic not found"):
        proxy.destroy_toxic("quiet")


def test_toxics_act_on_traffic(server: Toxiproxy, echo: str) -> None:
    proxy = server.create(upstream=echo, name="p")
    proxy.add_toxic(type="latency", attributes={"latency": 300})

    started = time.monotonic()
    assert echo_round_trip(proxy.listen, b"slow") == b"slow"
    # A lower bound only: the delay cannot be shorter than asked, however busy the machine.
    assert time.monotonic() - started >= 0.29

    proxy.destroy_toxic("latency_downstream")
    proxy.add_toxic(type="limit_data", attributes={"bytes": 5})
    with connect(proxy.listen) as sock:
        sock.sendall(b"hello world")
        assert read_until_closed(sock) == b"hello"


def test_disable_and_enable(server: Toxiproxy, echo: str) -> None:
    proxy = server.create(upstream=echo, name="p")
    proxy.add_toxic(type="noop")

    with connect(proxy.listen) as live:
        assert exchange(live, b"before") == b"before"
        proxy.disable()
        assert_closed(live)
    assert proxy.enabled is False
    assert server.proxies()["p"].enabled is False
    assert_refused(proxy.listen)

    proxy.enable()

    assert proxy.enabled is True
    assert server.proxies()["p"].enabled is True
    assert echo_round_trip(proxy.listen, b"after") == b"after"
    assert list(proxy.toxics()) == ["noop_downstream"]


def test_down_context_manager(server: Toxiproxy, echo: str) -> None:
    proxy = server.create(upstream=echo, name="p")

    with connect(proxy.listen) as live:
        assert exchange(live, b"up") == b"up"
        with proxy.down():
            assert_closed(live)
            assert_refused(proxy.listen)
            assert server.get_proxy("p").enabled is False

    assert server.get_proxy("p").enabled is True
    assert echo_round_trip(proxy.listen, b"back up") == b"back up"


def test_reset(server: Toxiproxy, echo: str) -> None:
    first = server.create(upstream=echo, name="first")
    second = server.create(upstream=echo, name="second", listen="localhost:0")
    first.add_toxic(type="limit_data", attributes={"bytes": 0})
    second.add_toxic(type="latency", stream="upstream")
    second.disable()

    assert server.reset() is True

    proxies = server.proxies()
    assert {name: proxy.enabled for name, proxy in proxies.items()} == {
        "first": True,
        "second": True,
    }
    assert first.toxics() == {}
    assert second.toxics() == {}
    assert echo_round_trip(first.listen, b"clean") == b"clean"
    assert echo_round_trip(second.listen, b"clean") == b"clean"


def test_destroy(server: Toxiproxy, echo: str) -> None:
    doomed = server.create(upstream=echo, name="doomed")
    server.create(upstream=echo, name="other")

    assert server.destroy(doomed) is True

    assert list(server.proxies()) == ["other"]
    assert_refused(doomed.listen)
    with pytest.raises(NotFound, match="proxy not found"):
        doomed.destroy()

    server.destroy_all()

    assert server.proxies() == {}


def test_populate(server: Toxiproxy, echo: str) -> None:
    created = server.populate(
        [
            {"name": "one", "upstream": echo, "listen": "127.0.0.1:0"},
            {"name": "two", "upstream": echo, "listen": "127.0.0.1:0"},
        ]
    )

    assert [proxy.name for proxy in created] == ["one", "two"]
    assert sorted(server.proxies()) == ["one", "two"]
    for proxy in created:
        assert echo_round_trip(proxy.listen) == b"ping"


@pytest.mark.parametrize(
    ("type_name", "attributes"),
    [
        ("latency", {"latency": 1000, "jitter": 100}),
        ("bandwidth", {"rate": 1000}),
        ("slow_close", {"delay": 1000}),
        ("timeout", {"timeout": 5000}),
        # Upstream takes a variation as large as the average; the engine once refused it.
        ("slicer", {"average_size": 1000, "size_variation": 1000, "delay": 1000}),
        ("reset_peer", {"timeout": 1000}),
        ("limit_data", {"bytes": 42}),
    ],
)
def test_every_toxic_type_reads_back_as_added(
    server: Toxiproxy, echo: str, type_name: str, attributes: dict[str, int]
) -> None:
    proxy = server.create(upstream=echo, name="p")

    proxy.add_toxic(type=type_name, attributes=attributes)

    toxic = proxy.get_toxic(f"{type_name}_downstream")
    assert toxic is not None
    assert (toxic.type, toxic.stream, toxic.toxicity) == (type_name, "downstream", 1)
    assert toxic.attributes == attributes


def test_a_slicer_as_wide_as_its_average_passes_data_intact(server: Toxiproxy, echo: str) -> None:
    proxy = server.create(upstream=echo, name="p")
    proxy.add_toxic(type="slicer", attributes={"average_size": 100, "size_variation": 100})
    payload = bytes(range(256)) * 64

    assert echo_round_trip(proxy.listen, payload) == payload


def test_packet_loss_with_upstream_attributes_stalls_instead_of_dropping(
    server: Toxiproxy, echo: str
) -> None:
    """Upstream's unreleased `packet_loss` toxic takes `loss_rate` and `correlation` (numbers
    0..1) and drops chunks; here the same request is accepted and a loss is a stall: the reply
    is held, then delivered whole once the loss stops."""
    proxy = server.create(upstream=echo, name="lossy")
    with connect(proxy.listen) as sock:
        assert exchange(sock, b"before") == b"before"
        proxy.add_toxic(
            type="packet_loss", name="loss", attributes={"loss_rate": 1.0, "correlation": 0.0}
        )
        toxic = proxy.toxics()["loss"]
        assert (toxic.type, toxic.attributes["loss_rate"]) == ("packet_loss", 1.0)
        sock.sendall(b"held, not lost")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(64)
        proxy.destroy_toxic("loss")
        sock.settimeout(5)
        assert recv_exactly(sock, 14) == b"held, not lost"
