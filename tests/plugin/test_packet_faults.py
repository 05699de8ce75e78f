"""Packet faults through the plugin: the markers on TCP and UDP proxies, what a failing test
shows and reports, bad input, the wrong protocol, seeds, and a backend that cannot do it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.plugin.conftest import exact, make_ini
from tests.servers import udp_echo_server

UDP_CONFTEST = """
import socket

import pytest

from netcheck import address_of


@pytest.fixture
def echo(toxiproxy):
    return address_of(toxiproxy, "echo")


@pytest.fixture
def udp(chaos):
    \"\"\"A client socket connected to the UDP proxy `udp` (in front of a UDP echo server).\"\"\"
    proxy = chaos.proxy("udp", upstream="{upstream}", protocol="udp")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((proxy.host, proxy.port))
    sock.settimeout(0.3)
    yield sock
    sock.close()


def echoes(sock, count):
    for number in range(count):
        sock.send(bytes([number]))
    got = []
    while True:
        try:
            got.append(sock.recv(8)[0])
        except TimeoutError:
            return got
"""


@pytest.fixture
def udp_suite(suite: pytest.Pytester) -> Iterator[pytest.Pytester]:
    with udp_echo_server() as (host, port):
        suite.makeconftest(UDP_CONFTEST.replace("{upstream}", f"{host}:{port}"))
        yield suite


def test_markers_act_on_tcp_and_udp_proxies_and_are_reverted(udp_suite: pytest.Pytester) -> None:
    udp_suite.makepyfile(
        test_markers="""
        import pytest

        from conftest import echoes
        from netcheck import talk


        @pytest.mark.packet_loss("echo", 1.0, syn_retries=0)
        def test_tcp_loss_holds_a_new_connection_then_resets(echo):
            seen = talk(echo, b"ping")
            assert (seen.outcome, seen.data) == ("reset", b"")
            assert seen.seconds >= 1.0 - 0.002  # the lost SYN's 1 s, then no retry allowed


        @pytest.mark.duplicate("udp", 1.0)
        def test_udp_duplicates(udp):
            assert echoes(udp, 3) == [0, 0, 1, 1, 2, 2]


        @pytest.mark.packet_loss("udp", 1.0, stream="upstream")
        def test_udp_loss(udp):
            assert echoes(udp, 3) == []


        def test_nothing_is_left(echo, udp, toxiproxy):
            assert echoes(udp, 3) == [0, 1, 2]
            assert talk(echo, b"ping").outcome == "ok"
            assert [p.toxics for p in toxiproxy.proxies().values()] == [(), ()]
        """
    )
    result = udp_suite.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=4)


def test_a_failing_test_shows_the_losses_in_its_timeline_and_report(
    udp_suite: pytest.Pytester,
) -> None:
    udp_suite.makepyfile(
        test_failing="""
        import socket

        import pytest

        from conftest import echoes
        from netcheck import talk


        def test_tcp(chaos, echo):
            with socket.create_connection(echo, timeout=5) as sock:
                with chaos.packet_loss("echo", 1.0, retries=0):
                    sock.sendall(b"ping")
                    assert sock.recv(4) == b"ping"


        @pytest.mark.packet_loss("udp", 1.0, stream="upstream")
        def test_udp(udp):
            assert echoes(udp, 2) == [0, 1]
        """
    )
    result = udp_suite.runpytest_inprocess("-p", "no:randomly", "--chaos-report", "report.json")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*- chaos timeline -*",
            "*applied  packet_loss('echo', rate=1.0, retries=0)",
            "*echo#* downstream 4 B lost 1x, gave up (reset)",
            "*echo#* reset by toxic chaos_packet_loss_downstream_1 (gave up after 1 losses of a"
            " segment)*",
            "*reverted packet_loss('echo', rate=1.0, retries=0)",
            "*- chaos timeline -*",
            "*applied  packet_loss('udp', rate=1.0, stream='upstream')",
            "*udp#* UDP session from 127.0.0.1:*",
            "*udp#* upstream 2 datagrams in, 0 out, dropped #0 #1",
        ]
    )
    report = json.loads((udp_suite.path / "report.json").read_text())
    udp = next(test for test in report["tests"] if test["nodeid"].endswith("test_udp"))
    runs = [e for e in udp["events"] if e["kind"] == "datagrams"]
    assert [(e["direction"], e["received"], e["dropped"]) for e in runs] == [
        ("upstream", 2, [0, 1])
    ]


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            'packet_loss("echo", 1.5)',
            "@pytest.mark.packet_loss: rate must be a probability from 0 to 1, got 1.5",
        ),
        (
            'packet_loss("echo", 0.1, retries=-1)',
            "@pytest.mark.packet_loss: retries must be a whole number of retransmissions from 0"
            " to 255, got -1",
        ),
        (
            'reorder("udp", 0.1, distance=0)',
            "@pytest.mark.reorder: distance must be a whole number of datagrams from 1 to 10000,"
            " got 0",
        ),
        (
            'bandwidth("udp", 10, unit="packets")',
            "@pytest.mark.bandwidth: unit must be one of KB/s, datagrams/s, got 'packets'",
        ),
    ],
)
def test_bad_arguments_fail_with_the_usual_message(
    udp_suite: pytest.Pytester, marker: str, message: str
) -> None:
    udp_suite.makepyfile(
        test_bad=f"""
        import pytest

        @pytest.mark.{marker}
        def test_it():
            pass
        """
    )
    result = udp_suite.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([exact(message)])


def test_a_fault_on_the_wrong_protocol_says_why(udp_suite: pytest.Pytester) -> None:
    udp_suite.makepyfile(
        test_protocol="""
        import pytest

        from pytest_chaos.faults import FaultError


        @pytest.mark.parametrize(
            ("apply", "message"),
            [
                (
                    lambda chaos: chaos.duplicate("echo", 0.5),
                    "duplicate: 'echo' is a TCP proxy, and TCP never delivers a byte twice:"
                    " duplicate acts on UDP proxies (chaos.proxy(name, upstream=...,"
                    " protocol='udp')); on TCP, packet_loss gives what a lossy network does"
                    " to it",
                ),
                (
                    lambda chaos: chaos.corrupt("echo", 0.5),
                    "corrupt: 'echo' is a TCP proxy, and TCP's checksum turns a corrupted"
                    " segment into a lost one: corrupt acts on UDP proxies (chaos.proxy(name,"
                    " upstream=..., protocol='udp')); on TCP, packet_loss gives what a lossy"
                    " network does to it",
                ),
                (
                    lambda chaos: chaos.packet_loss("udp", 0.5, retries=3),
                    "packet_loss: retries count TCP's retransmissions, and 'udp' is a UDP"
                    " proxy, where a lost datagram is gone: leave them out",
                ),
                (
                    lambda chaos: chaos.bandwidth("echo", 5, unit="datagrams/s"),
                    "bandwidth: unit 'datagrams/s' counts datagrams, and 'echo' is a TCP proxy:"
                    " use 'KB/s'",
                ),
                (
                    lambda chaos: chaos.dependency_down("udp", mode="reset"),
                    "dependency_down: the server refused dependency_down('udp', mode='reset'):"
                    " bad request body: toxic type reset_peer does not apply to a UDP proxy"
                    " (datagrams have no connection to reset); a UDP proxy takes bandwidth,"
                    " corrupt, duplicate, latency, noop, packet_loss, reorder, timeout",
                ),
                (
                    lambda chaos: chaos.proxy("echo", protocol="udp"),
                    "chaos.proxy('echo', protocol='udp'): the proxy exists as a TCP proxy, and a"
                    " proxy keeps its protocol; name the other one differently",
                ),
                (
                    lambda chaos: chaos.proxy("x", upstream="127.0.0.1:53", protocol="sctp"),
                    "chaos.proxy('x'): protocol must be 'tcp' or 'udp', got 'sctp'",
                ),
            ],
        )
        def test_refused(chaos, udp, toxiproxy, apply, message):
            with pytest.raises(FaultError) as raised:
                with apply(chaos):
                    pass
            assert str(raised.value) == message
            assert [p.toxics for p in toxiproxy.proxies().values()] == [(), ()]
        """
    )
    result = udp_suite.runpytest_inprocess()
    result.assert_outcomes(passed=7)


def test_the_same_seed_loses_the_same_datagrams(udp_suite: pytest.Pytester) -> None:
    udp_suite.makepyfile(
        test_seeded="""
        import pytest

        from conftest import echoes


        @pytest.mark.packet_loss("udp", 0.5, stream="upstream")
        def test_lossy(udp):
            print("received", echoes(udp, 30))
        """
    )

    def received(seed: str) -> str:
        result = udp_suite.runpytest_inprocess("--chaos-seed", seed, "-s")
        result.assert_outcomes(passed=1)
        return next(line for line in result.outlines if "received [" in line)

    assert received("7") == received("7")
    assert received("7") != received("8")


# -- a backend that is a plain Toxiproxy
class _PlainToxiproxy(BaseHTTPRequestHandler):
    """Upstream Toxiproxy 2.12's answers (see shared toxiproxy-api.md) to what a session asks:
    `/version` without the engine's `engine` field, no proxies; anything else is recorded."""

    posted: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        body = {"/version": {"version": "2.12.0"}, "/proxies": {}}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        self.posted.append(self.path)
        self.send_error(400)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def plain_toxiproxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PlainToxiproxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_plain_toxiproxy_backend_names_itself_and_suggests_the_engine(
    bare: pytest.Pytester,
) -> None:
    make_ini(bare)
    bare.makepyfile(
        test_plain="""
        import pytest

        from pytest_chaos.faults import FaultError


        @pytest.mark.packet_loss("db", 0.05)
        def test_marker():
            pass


        def test_udp_proxy(chaos):
            with pytest.raises(FaultError) as raised:
                chaos.proxy("dns", upstream="127.0.0.1:53", protocol="udp")
            print("udp:", raised.value)
        """
    )
    _PlainToxiproxy.posted.clear()
    with plain_toxiproxy() as url:
        result = bare.runpytest_inprocess(
            "--chaos-backend", "toxiproxy", "--toxiproxy-url", url, "-s"
        )
    result.assert_outcomes(passed=1, errors=1)
    # The twin's line is printed during the run, the marker's error after it.
    result.stdout.fnmatch_lines(
        [
            "*"
            + exact(
                f"udp: chaos.proxy('dns'): UDP proxies need the pytest-chaos engine; the"
                f" toxiproxy backend at {url} is a plain Toxiproxy, which proxies TCP only. Use"
                " the embedded engine (--chaos-backend embedded, the default), or run"
                " `pytest-chaos serve` and point --toxiproxy-url at it"
            ),
            "*"
            + exact(
                f"@pytest.mark.packet_loss: packet_loss needs the pytest-chaos engine; the"
                f" toxiproxy backend at {url} is a plain Toxiproxy, which has no packet_loss"
                " toxic that stalls as TCP does. Use the embedded engine (--chaos-backend"
                " embedded, the default), or run `pytest-chaos serve` and point --toxiproxy-url"
                " at it"
            ),
        ]
    )
    assert _PlainToxiproxy.posted == []  # refused before anything was asked of the server
