"""UDP proxies over real sockets: the `protocol` field of the API, sessions per client, the
datagram toxics on live traffic, and the events."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.engine.api_helpers import (
    add_toxic,
    assert_error,
    create_proxy,
    events,
    remove_toxic,
    wait_for_event,
    wait_until,
)
from tests.servers import udp_echo_server


@pytest.fixture
def udp_echo() -> Iterator[str]:
    with udp_echo_server() as (host, port):
        yield f"{host}:{port}"


@pytest.fixture
def proxied(api: httpx.Client, udp_echo: str) -> str:
    return str(create_proxy(api, "dns", udp_echo, protocol="udp")["listen"])


def client(listen: str, timeout: float = 2.0) -> socket.socket:
    """A UDP socket connected to `listen` (so an ICMP refusal shows as ConnectionRefusedError)."""
    host, _, port = listen.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    sock.connect((host, int(port)))
    return sock


def echoes(sock: socket.socket, count: int, wait: float = 0.05) -> list[int]:
    """Send `count` numbered datagrams, then read what comes back (numbers, in arrival order)."""
    for number in range(count):
        sock.send(number.to_bytes(4, "big"))
    sock.settimeout(wait)
    got = []
    while True:
        try:
            got.append(int.from_bytes(sock.recv(64), "big"))
        except TimeoutError:
            return got


def test_a_udp_proxy_shows_its_protocol_and_a_tcp_one_stays_upstream_s_json(
    api: httpx.Client, udp_echo: str
) -> None:
    udp = create_proxy(api, "dns", udp_echo, protocol="udp", idle_timeout=5000)
    tcp = create_proxy(api, "redis", "127.0.0.1:6379")

    assert (udp["protocol"], udp["idle_timeout"]) == ("udp", 5000)
    assert list(tcp) == ["name", "listen", "upstream", "enabled", "Logger", "toxics"]
    assert api.get("/proxies").json()["dns"]["protocol"] == "udp"
    assert create_proxy(api, "plain", "127.0.0.1:1", protocol="tcp").get("protocol") is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"protocol": "sctp"}, 'bad request body: protocol must be "tcp" or "udp", got \'sctp\''),
        ({"protocol": 17}, 'bad request body: protocol must be "tcp" or "udp", got 17'),
        (
            {"protocol": "udp", "idle_timeout": 0},
            "bad request body: idle_timeout must be a whole number of milliseconds from 1 to"
            " 86400000, got 0",
        ),
    ],
)
def test_bad_protocol_fields_are_refused(
    api: httpx.Client, fields: dict[str, object], message: str
) -> None:
    response = api.post("/proxies", json={"name": "x", "upstream": "127.0.0.1:53", **fields})
    assert_error(response, 400, message)
    assert api.get("/proxies").json() == {}


def test_the_protocol_cannot_change(api: httpx.Client, proxied: str) -> None:
    response = api.post("/proxies/dns", json={"protocol": "tcp"})
    assert_error(
        response,
        400,
        "bad request body: protocol of proxy dns is udp and cannot change to tcp; delete the"
        " proxy and create it again",
    )
    assert api.post("/proxies/dns", json={"protocol": "udp", "enabled": True}).status_code == 200


def test_populate_replaces_a_proxy_whose_protocol_differs(api: httpx.Client, udp_echo: str) -> None:
    body = [{"name": "dns", "listen": "127.0.0.1:0", "upstream": udp_echo}]
    tcp = api.post("/populate", json=body).json()["proxies"][0]
    udp = api.post("/populate", json=[{**body[0], "protocol": "udp"}]).json()["proxies"][0]
    same = [{**body[0], "listen": udp["listen"], "protocol": "udp"}]
    again = api.post("/populate", json=same).json()["proxies"][0]

    assert "protocol" not in tcp
    assert udp["protocol"] == "udp"
    assert again == udp


def test_datagrams_pass_and_each_client_gets_its_own_replies(
    api: httpx.Client, proxied: str
) -> None:
    with client(proxied) as first, client(proxied) as second:
        first.send(b"from first")
        second.send(b"from second")
        assert first.recv(64) == b"from first"
        assert second.recv(64) == b"from second"
        opened = [e for e in events(api) if e["kind"] == "session_opened"]
        assert [e["client"] for e in opened] == [
            f"127.0.0.1:{first.getsockname()[1]}",
            f"127.0.0.1:{second.getsockname()[1]}",
        ]
        assert len({e["session"] for e in opened}) == 2


def test_an_idle_session_ends_and_the_next_datagram_opens_another(
    api: httpx.Client, udp_echo: str
) -> None:
    listen = create_proxy(api, "dns", udp_echo, protocol="udp", idle_timeout=200)["listen"]
    with client(listen) as sock:
        sock.send(b"a")
        assert sock.recv(8) == b"a"
        closed = wait_for_event(api, "session_closed", timeout=3)
        sock.send(b"b")
        assert sock.recv(8) == b"b"
    assert closed["by"] == "idle"
    assert closed["datagrams"]["upstream"]["in"] == 1
    assert closed["datagrams"]["downstream"]["out"] == 1
    assert len([e for e in events(api) if e["kind"] == "session_opened"]) == 2


def test_a_disabled_udp_proxy_refuses_as_a_closed_port_does(
    api: httpx.Client, proxied: str
) -> None:
    with client(proxied) as sock:
        assert api.post("/proxies/dns", json={"enabled": False}).status_code == 200
        sock.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            sock.recv(8)
        assert api.post("/proxies/dns", json={"enabled": True}).status_code == 200
        sock.send(b"back")
        assert sock.recv(8) == b"back"


def test_loss_drops_datagrams_and_the_events_say_which(api: httpx.Client, proxied: str) -> None:
    api.post("/seed", json={"seed": 5}).raise_for_status()
    add_toxic(api, "dns", type="packet_loss", stream="upstream", attributes={"loss_rate": 0.5})
    with client(proxied) as sock:
        got = echoes(sock, 40)
    runs = [e for e in events(api) if e["kind"] == "datagrams" and e["direction"] == "upstream"]
    dropped = sorted(n for e in runs for n in e["dropped"])
    assert sum(e["received"] for e in runs) == 40
    assert sum(e["sent"] for e in runs) == 40 - len(dropped)
    assert sorted(got) == sorted(set(range(40)) - set(dropped))
    assert 8 <= len(dropped) <= 32


def test_duplicates_arrive_twice(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "dns", type="duplicate", attributes={"probability": 1.0})
    with client(proxied) as sock:
        assert echoes(sock, 3) == [0, 0, 1, 1, 2, 2]
    runs = [e for e in events(api) if e["kind"] == "datagrams" and e["direction"] == "downstream"]
    assert sorted(n for e in runs for n in e["duplicated"]) == [0, 1, 2]


def test_jitter_reorders_on_live_traffic(api: httpx.Client, proxied: str) -> None:
    api.post("/seed", json={"seed": 1}).raise_for_status()
    add_toxic(api, "dns", type="latency", attributes={"latency": 60, "jitter": 50})
    with client(proxied) as sock:
        got = echoes(sock, 50, wait=0.3)
    assert sorted(got) == list(range(50))
    assert got != list(range(50))


def test_removing_latency_delivers_what_it_held(api: httpx.Client, proxied: str) -> None:
    add_toxic(api, "dns", type="latency", attributes={"latency": 10_000})
    with client(proxied) as sock:
        sock.send(b"held")
        wait_until(lambda: any(e["kind"] == "datagrams" for e in events(api)))
        started = time.monotonic()
        remove_toxic(api, "dns", "latency_downstream")
        assert sock.recv(8) == b"held"
    assert time.monotonic() - started < 2


def test_a_refused_upstream_is_recorded_once(api: httpx.Client) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    nobody = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    listen = create_proxy(api, "dns", nobody, protocol="udp")["listen"]
    with client(listen, timeout=0.3) as sock:
        for _ in range(3):
            sock.send(b"hello?")
            with pytest.raises(TimeoutError):
                sock.recv(8)
    errors = [e for e in events(api) if e["kind"] == "session_error"]
    assert [e["error"] for e in errors] == ["Connection refused (errno 111)"]


@pytest.mark.parametrize(
    ("toxic", "why"),
    [
        ("slicer", "a datagram is never cut"),
        ("reset_peer", "datagrams have no connection to reset"),
    ],
)
def test_stream_toxics_are_refused_with_the_reason(
    api: httpx.Client, proxied: str, toxic: str, why: str
) -> None:
    response = api.post("/proxies/dns/toxics", json={"type": toxic})
    assert_error(
        response,
        400,
        f"bad request body: toxic type {toxic} does not apply to a UDP proxy ({why}); a UDP"
        " proxy takes bandwidth, corrupt, duplicate, latency, noop, packet_loss, reorder, timeout",
    )


def test_datagram_toxic_types_are_unknown_to_a_tcp_proxy(api: httpx.Client) -> None:
    create_proxy(api, "redis", "127.0.0.1:6379")
    response = api.post("/proxies/redis/toxics", json={"type": "duplicate"})
    assert_error(response, 400, "invalid toxic type")


def test_the_same_seed_drops_the_same_datagrams_of_a_session(
    api: httpx.Client, proxied: str
) -> None:
    add_toxic(api, "dns", type="packet_loss", stream="upstream", attributes={"loss_rate": 0.3})

    def dropped() -> list[int]:
        api.post("/seed", json={"seed": 42}).raise_for_status()
        since = events(api)[-1]["seq"]
        with client(proxied) as sock:
            echoes(sock, 30, wait=0.1)
        runs = [e for e in events(api, since=since) if e["kind"] == "datagrams"]
        return sorted(n for e in runs for n in e["dropped"])

    first = dropped()
    assert first
    assert dropped() == first


def test_deleting_the_proxy_ends_its_sessions(api: httpx.Client, proxied: str) -> None:
    with client(proxied) as sock:
        sock.send(b"x")
        assert sock.recv(8) == b"x"
        assert api.delete("/proxies/dns").status_code == 204
    closed = wait_for_event(api, "session_closed")
    assert closed["by"] == "proxy"


def test_a_datagram_a_toxic_holds_back_is_handed_on_when_it_is_removed(
    api: httpx.Client, proxied: str
) -> None:
    add_toxic(api, "dns", type="reorder", attributes={"probability": 1.0, "delay": 60_000})
    with client(proxied) as sock:
        sock.send(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(8)
        remove_toxic(api, "dns", "reorder_downstream")
        sock.settimeout(2)
        assert sock.recv(8) == b"held"


def test_once_disabled_is_answered_every_datagram_is_refused(
    api: httpx.Client, proxied: str
) -> None:
    with client(proxied) as sock:
        for _ in range(20):
            assert api.post("/proxies/dns", json={"enabled": False}).status_code == 200
            sock.send(b"x")
            with pytest.raises(ConnectionRefusedError):
                sock.recv(8)
            assert api.post("/proxies/dns", json={"enabled": True}).status_code == 200
            sock.send(b"y")
            assert sock.recv(8) == b"y"
