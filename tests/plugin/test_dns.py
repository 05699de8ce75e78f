"""DNS through the plugin: the `dns_failure` marker and `chaos.dns_failure`, `chaos.resolve`,
`chaos_hosts`, what a failing test shows and reports, bad input, and clean-up (in the same
process and under xdist) even when the test fails."""

from __future__ import annotations

import json
import socket

import pytest

from tests.plugin.conftest import exact, make_ini

CLEAN_UP = """
import socket
import threading
import time

import pytest

ORIGINAL = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex
HUNG = {}


@pytest.mark.dns_failure("*.internal")
def test_fails_while_names_fail(chaos):
    chaos.resolve("db.internal", to="127.0.0.1")
    with pytest.raises(socket.gaierror) as raised:
        socket.getaddrinfo("db.internal", 80)
    assert raised.value.errno == socket.EAI_NONAME
    assert False, "the test fails with the fault on"


def test_a_lookup_left_hanging_by_a_failing_test(chaos):
    chaos.resolve("db.internal", to="127.0.0.1")
    chaos.dns_failure("db.internal", error="timeout", timeout=60_000).__enter__()

    def lookup():
        try:
            socket.getaddrinfo("db.internal", 80)
        except socket.gaierror as error:
            HUNG["error"] = error.errno
        HUNG["ended"] = time.monotonic()

    HUNG["thread"] = threading.Thread(target=lookup)
    HUNG["thread"].start()
    time.sleep(0.2)
    assert False, "the test fails while a lookup hangs"


def test_afterwards_names_resolve_and_nothing_is_left(chaos):
    # The hanging lookup was released when its fault was reverted (as the timeout it was).
    HUNG["thread"].join(timeout=5)
    assert not HUNG["thread"].is_alive()
    assert HUNG["error"] == socket.EAI_AGAIN
    assert (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex) == ORIGINAL
    assert socket.gethostbyname("localhost") == "127.0.0.1"
    chaos.resolve("db.internal", to="127.0.0.1")
    assert socket.gethostbyname("db.internal") == "127.0.0.1"
    assert chaos.lookups("db.internal")[-1].answer == ("127.0.0.1",)


def test_the_socket_module_is_ours_again_without_chaos():
    assert (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex) == ORIGINAL
"""


def test_after_a_failing_test_resolution_works_again_in_the_same_process(
    suite: pytest.Pytester,
) -> None:
    original = socket.getaddrinfo
    suite.makepyfile(test_clean=CLEAN_UP)
    result = suite.runpytest_inprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=2)
    assert socket.getaddrinfo is original


def test_after_a_failing_test_resolution_works_again_under_xdist(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_clean=CLEAN_UP)
    # One worker runs the file in order; the other runs a copy at the same time.
    suite.makepyfile(test_clean_copy=CLEAN_UP)
    result = suite.runpytest_subprocess("-n", "2", "--dist", "loadfile")
    result.assert_outcomes(passed=4, failed=4)


def test_the_marker_and_its_twin_fail_lookups_and_show_them(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_timeline="""
        import asyncio
        import socket

        import pytest


        @pytest.mark.dns_failure("*.internal", error="servfail")
        def test_marker(chaos, echo):
            chaos.resolve("db.internal", to="echo")
            with pytest.raises(socket.gaierror) as raised:
                socket.create_connection(("db.internal", echo[1]))
            assert raised.value.args == (socket.EAI_AGAIN, "Temporary failure in name resolution")
            assert False


        async def lookup():
            return await asyncio.get_running_loop().getaddrinfo("db.internal", 80)


        def test_twin(chaos):
            chaos.resolve("db.internal", to="127.0.0.1")
            with chaos.dns_failure("db.internal", error="empty"):
                with pytest.raises(socket.gaierror) as raised:
                    asyncio.run(lookup())
            assert raised.value.errno == socket.EAI_NODATA
            assert socket.gethostbyname("db.internal") == "127.0.0.1"
        """
    )
    result = suite.runpytest_inprocess("--chaos-report", "report.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- chaos timeline -*",
            "*+0.*s  applied  dns_failure('*.internal', error='servfail')",
            "*+0.*s  dns db.internal resolves to 127.0.0.1 (proxy 'echo')",
            "*"
            + exact("dns getaddrinfo db.internal -> servfail (EAI_AGAIN)")
            + "*"
            + exact("by dns_failure('*.internal', error='servfail')"),
            "*reverted dns_failure('*.internal', error='servfail')",
        ]
    )
    report = json.loads((suite.path / "report.json").read_text())
    twin = next(test for test in report["tests"] if test["nodeid"].endswith("test_twin"))
    assert [f["fault"] for f in twin["faults"]] == ["dns_failure('db.internal', error='empty')"]
    lookups = [e for e in twin["dns"] if e["kind"] == "dns_lookup"]
    assert [(e["layer"], e["name"], e["error"], e["answer"]) for e in lookups] == [
        ("getaddrinfo", "db.internal", "empty (EAI_NODATA)", []),
        ("gethostbyname", "db.internal", None, ["127.0.0.1"]),
    ]


def test_the_marker_is_listed_with_its_signature(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.dns_failure(host, *, error='nxdomain', probability=1.0, delay=0,"
            " timeout=10000, when='call'): DNS lookups of host*"
        ]
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            '"db.*.internal"',
            "@pytest.mark.dns_failure: host must be a host name or a pattern such as"
            " '*.internal', got 'db.*.internal': '*' stands only for the whole leftmost label"
            " (e.g. '*.internal')",
        ),
        (
            '"10.0.0.1"',
            "@pytest.mark.dns_failure: host must be a host name or a pattern such as"
            " '*.internal', got '10.0.0.1': an IP address is never looked up in DNS; name the"
            " host the client resolves",
        ),
        (
            '"db.internal", error="nodata"',
            "@pytest.mark.dns_failure: error must be one of nxdomain, servfail, refused,"
            " timeout, empty, got 'nodata'",
        ),
        (
            '"db.internal", probability=1.5',
            "@pytest.mark.dns_failure: probability must be a probability from 0 to 1, got 1.5",
        ),
        (
            '"db.internal", probability=-0.1',
            "@pytest.mark.dns_failure: probability must be a probability from 0 to 1, got -0.1",
        ),
        (
            '"db.internal", delay=-1',
            "@pytest.mark.dns_failure: delay must be a whole number of milliseconds from 0 to"
            " 86400000, got -1",
        ),
        (
            'error="servfail"',
            "@pytest.mark.dns_failure: the first argument must be the host, a host name or a"
            " pattern such as '*.internal' (e.g. @pytest.mark.dns_failure('db.internal', ...));"
            " signature: dns_failure(host, *, error='nxdomain', probability=1.0, delay=0,"
            " timeout=10000, when='call')",
        ),
        (
            '"db.internal", eror="servfail"',
            "@pytest.mark.dns_failure: unknown keyword 'eror'; allowed: error, probability,"
            " delay, timeout, when",
        ),
    ],
)
def test_bad_marker_arguments_fail_with_the_usual_message(
    suite: pytest.Pytester, arguments: str, message: str
) -> None:
    suite.makepyfile(
        test_bad=f"""
        import pytest

        @pytest.mark.dns_failure({arguments})
        def test_it():
            pass
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([exact(message)])


def test_bad_chaos_arguments_fail_at_the_user_s_line(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_bad="""
        import pytest

        from pytest_chaos.faults import FaultError


        def test_twin(chaos):
            with pytest.raises(FaultError) as raised:
                chaos.dns_failure("*.internal", error="slow")
            assert str(raised.value) == (
                "dns_failure: error must be one of nxdomain, servfail, refused, timeout,"
                " empty, got 'slow'"
            )


        @pytest.mark.parametrize(
            ("name", "to", "message"),
            [
                (
                    "db internal",
                    "127.0.0.1",
                    "chaos.resolve('db internal'): name must be a host name (e.g."
                    " 'db.internal'), got 'db internal': ' ' is not allowed in a host name"
                    " (letters, digits, '-', '_', '.')",
                ),
                (
                    "*.internal",
                    "127.0.0.1",
                    "chaos.resolve('*.internal'): name must be a host name (e.g."
                    " 'db.internal'), got '*.internal': a name to resolve has no wildcard",
                ),
                (
                    "db.internal",
                    "ehco",
                    "chaos.resolve('db.internal'): to='ehco' is neither an IP address nor a"
                    " known proxy; known proxies: echo",
                ),
                (
                    "db.internal",
                    "127.0.0.1:5432",
                    "chaos.resolve('db.internal'): to='127.0.0.1:5432' has a port; a name"
                    " resolves to an address only (the client brings the port: give"
                    " to='127.0.0.1')",
                ),
                (
                    "db.internal",
                    5432,
                    "chaos.resolve('db.internal'): to must be a proxy (its name,"
                    " chaos.proxy()'s result or a service) or an IP address, got 5432",
                ),
            ],
        )
        def test_resolve(chaos, name, to, message):
            with pytest.raises(FaultError) as raised:
                chaos.resolve(name, to=to)
            assert str(raised.value) == message


        def test_reported_at_my_line(chaos):
            chaos.resolve("db.internal", to="ehco")
        """
    )
    result = suite.runpytest_inprocess()
    result.stdout.fnmatch_lines(
        [
            '>       chaos.resolve("db.internal", to="ehco")',
            "E       pytest_chaos.faults.FaultError: chaos.resolve('db.internal'): to='ehco' is*",
            "test_bad.py:*: FaultError",
        ]
    )
    result.stdout.no_fnmatch_line("*pytest_chaos*.py:*")
    result.assert_outcomes(passed=6, failed=1)


def test_chaos_hosts_name_proxies_and_addresses_for_the_session(suite: pytest.Pytester) -> None:
    ini = suite.path / "tox.ini"  # the suite's, with the `echo` proxy
    ini.write_text(
        ini.read_text()
        + "\nchaos_hosts =\n    db.internal = echo\n    cache.internal = 127.0.0.9\n"
    )
    suite.makepyfile(
        test_hosts="""
        import socket

        import pytest

        from netcheck import talk


        def test_by_name(echo):
            assert socket.gethostbyname("cache.internal") == "127.0.0.9"
            assert talk(("db.internal", echo[1])).outcome == "ok"


        @pytest.mark.dns_failure("db.internal", error="refused")
        def test_failing(echo):
            with pytest.raises(socket.gaierror) as raised:
                talk(("db.internal", echo[1]))
            assert raised.value.errno == socket.EAI_AGAIN


        def test_a_test_may_hide_a_session_name(chaos):
            with chaos.resolve("cache.internal", to="127.0.0.10"):
                assert socket.gethostbyname("cache.internal") == "127.0.0.10"
            assert socket.gethostbyname("cache.internal") == "127.0.0.9"
        """
    )
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "db.internal 127.0.0.1",
            "chaos_hosts: cannot read 'db.internal 127.0.0.1'; write one `name = proxy-or-address`"
            " per line, e.g. `db.internal = postgres` or `db.internal = 127.0.0.1`",
        ),
        (
            "db:5432 = echo",
            "chaos_hosts: 'db:5432 = echo': 'db:5432' is not a host name: a host name has no port",
        ),
        (
            "db.internal = echo\n    DB.internal = 127.0.0.1",
            "chaos_hosts: 'DB.internal' is declared twice",
        ),
    ],
)
def test_bad_chaos_hosts_are_usage_errors(bare: pytest.Pytester, lines: str, message: str) -> None:
    make_ini(bare, f"chaos_hosts =\n    {lines}")
    bare.makepyfile(test_nothing="def test_nothing(): pass")
    result = bare.runpytest_inprocess()
    result.stderr.fnmatch_lines([exact(f"ERROR: {message}")])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_bad_dns_forward_is_a_usage_error(bare: pytest.Pytester) -> None:
    make_ini(bare, "chaos_dns_forward = dns.example:53")
    bare.makepyfile(test_nothing="def test_nothing(): pass")
    result = bare.runpytest_inprocess()
    result.stderr.fnmatch_lines(
        [
            exact(
                "ERROR: chaos_dns_forward: 'dns.example:53' is not an address; write `ip:port`,"
                " e.g. `127.0.0.1:5353` (an IPv6 address in brackets: `[::1]:53`)"
            )
        ]
    )


def test_flaky_resolution_is_drawn_from_the_test_s_seed(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_flaky="""
        import socket

        import pytest


        @pytest.mark.dns_failure("db.internal", probability=0.5)
        def test_flaky(chaos):
            chaos.resolve("db.internal", to="127.0.0.1")
            pattern = ""
            for _ in range(64):
                try:
                    socket.gethostbyname("db.internal")
                    pattern += "."
                except socket.gaierror:
                    pattern += "x"
            print("PATTERN", pattern)
        """
    )

    def pattern(seed: int) -> str:
        result = suite.runpytest_inprocess("-s", "--chaos-seed", str(seed))
        result.assert_outcomes(passed=1)
        line = next(line for line in result.outlines if "PATTERN " in line)
        return line.partition("PATTERN ")[2].split()[0]

    first = pattern(7)
    assert 10 < first.count("x") < 54
    assert pattern(7) == first
    assert pattern(8) != first


def test_a_run_without_dns_starts_and_imports_nothing_of_it(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_plain="""
        import sys

        import pytest


        @pytest.mark.latency("echo", 10)
        def test_latency(chaos):
            chaos.timeline()
            assert "pytest_chaos.dns.session" not in sys.modules
            assert "pytest_chaos.dns.server" not in sys.modules
            assert "dns.message" not in sys.modules  # dnspython
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=1)
