"""What a user is told about a wrong marker, a wrong option or a wrong ini line: the exact
messages, naming the marker or option, the bad value and what is allowed."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import dedent, exact, make_ini
from tests.servers import free_port

LATENCY_SIGNATURE = (
    "latency(target, ms, *, jitter=0, stream='downstream', toxicity=1.0, when='call')"
)

BAD_MARKERS = """
import pytest


@pytest.mark.latency("echo", 200, jiter=3)
def test_misspelt_keyword():
    pass


@pytest.mark.latency("echo", "200")
def test_wrong_type():
    pass


@pytest.mark.latency("echo", True)
def test_bool_is_not_a_number():
    pass


@pytest.mark.latency("echo", -1)
def test_negative_latency():
    pass


@pytest.mark.bandwidth("echo", 10, toxicity=1.5)
def test_toxicity_above_one():
    pass


@pytest.mark.stall("echo", toxicity=-0.1)
def test_toxicity_below_zero():
    pass


@pytest.mark.latency("echo", 100, stream="sideways")
def test_bad_stream():
    pass


@pytest.mark.latency("echo")
def test_missing_required_argument():
    pass


@pytest.mark.limit_data()
def test_missing_target():
    pass


@pytest.mark.latency("echo", 1, 2)
def test_too_many_positional():
    pass


@pytest.mark.latency("echo", 1, ms=2)
def test_given_twice():
    pass


@pytest.mark.latency("echo", 1, target="echo")
def test_target_given_twice():
    pass


@pytest.mark.latency("echo", 100, when="teardown")
def test_bad_when():
    pass


@pytest.mark.dependency_down("echo", mode="sideways")
def test_bad_mode():
    pass


@pytest.mark.dependency_down("echo", stream="upstream")
def test_option_of_another_marker():
    pass


@pytest.mark.slicer("echo", 10, size_variation=11)
def test_slicer_variation():
    pass


@pytest.mark.slicer("echo", 0)
def test_slicer_size_zero():
    pass


@pytest.mark.toxic("echo", "latency", latency=1.5)
def test_raw_attribute_not_a_whole_number():
    pass


@pytest.mark.latency(100)
def test_number_where_the_target_goes():
    pass


@pytest.mark.reset_peer(42)
def test_target_not_a_name():
    pass


class TestOnAClass:
    pytestmark = pytest.mark.slow_close("echo", delay="soon")

    def test_in_class(self):
        pass
"""

BAD_MARKER_MESSAGES = {
    "test_misspelt_keyword": "@pytest.mark.latency: unknown keyword 'jiter';"
    " allowed: ms, jitter, stream, toxicity, when",
    "test_wrong_type": "@pytest.mark.latency: ms must be a whole number of milliseconds"
    " from 0 to 86400000, got '200'",
    "test_bool_is_not_a_number": "@pytest.mark.latency: ms must be a whole number of"
    " milliseconds from 0 to 86400000, got True",
    "test_negative_latency": "@pytest.mark.latency: ms must be a whole number of milliseconds"
    " from 0 to 86400000, got -1",
    "test_toxicity_above_one": "@pytest.mark.bandwidth: toxicity must be a probability"
    " from 0 to 1, got 1.5",
    "test_toxicity_below_zero": "@pytest.mark.stall: toxicity must be a probability"
    " from 0 to 1, got -0.1",
    "test_bad_stream": "@pytest.mark.latency: stream must be one of downstream, upstream,"
    " both, got 'sideways'",
    "test_missing_required_argument": "@pytest.mark.latency: missing required argument 'ms';"
    f" signature: {LATENCY_SIGNATURE}",
    "test_missing_target": "@pytest.mark.limit_data: the first argument must be the target, a"
    " proxy or service name (e.g. @pytest.mark.limit_data('redis', ...)); signature:"
    " limit_data(target, bytes, *, stream='downstream', toxicity=1.0, when='call')",
    "test_number_where_the_target_goes": "@pytest.mark.latency: the first argument must be the"
    f" target, a proxy or service name, got 100; signature: {LATENCY_SIGNATURE}",
    "test_too_many_positional": "@pytest.mark.latency: too many positional arguments"
    f" ('echo', 1, 2); signature: {LATENCY_SIGNATURE}",
    "test_given_twice": "@pytest.mark.latency: ms given twice (positionally and by keyword)",
    "test_target_given_twice": "@pytest.mark.latency: target given twice (positionally and"
    " by keyword)",
    "test_bad_when": "@pytest.mark.latency: when must be one of call, setup, got 'teardown'",
    "test_bad_mode": "@pytest.mark.dependency_down: mode must be one of refuse, blackhole,"
    " reset, kill, terminate, stop, pause, got 'sideways'",
    "test_option_of_another_marker": "@pytest.mark.dependency_down: unknown keyword 'stream';"
    " allowed: mode, when",
    "test_slicer_variation": "@pytest.mark.slicer: size_variation must be at most"
    " average_size (10), got 11",
    "test_slicer_size_zero": "@pytest.mark.slicer: average_size must be a whole number of"
    " bytes from 1 to 2147483648, got 0",
    "test_raw_attribute_not_a_whole_number": "@pytest.mark.toxic: attribute latency must be"
    " a whole number, got 1.5",
    "test_target_not_a_name": "@pytest.mark.reset_peer: the first argument must be the target,"
    " a proxy or service name, got 42; signature: reset_peer(target, *, timeout=0,"
    " stream='downstream', toxicity=1.0, when='call')",
    "test_in_class": "@pytest.mark.slow_close: delay must be a whole number of milliseconds"
    " from 0 to 86400000, got 'soon'",
}


def test_bad_marker_arguments_error_at_setup(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_bad=BAD_MARKERS)
    result = suite.runpytest_inprocess()
    for test, message in BAD_MARKER_MESSAGES.items():
        result.stdout.fnmatch_lines([f"*_ ERROR at setup of *{test} _*", exact(message)])
    # The message is all there is: no traceback into the plugin.
    result.stdout.no_fnmatch_line("*pytest_chaos*.py:*")
    result.stdout.fnmatch_lines(
        ["ERROR test_bad.py::test_misspelt_keyword - Failed: @pytest.mark.latency: *"]
    )
    result.assert_outcomes(errors=len(BAD_MARKER_MESSAGES))


UNKNOWN_TARGETS = """
import pytest


def test_make_a_proxy(chaos, toxiproxy):
    chaos.proxy("second", upstream=toxiproxy.proxies()["echo"].upstream)


@pytest.mark.latency("redis", 100)
def test_unknown_target():
    pass


@pytest.mark.dependency_down("postgres", when="setup")
def test_unknown_target_at_setup():
    pass


@pytest.mark.latency("echo", 100)
@pytest.mark.toxic("echo", "no_such_toxic", stream="both")
def test_toxic_type_the_server_refuses():
    pass


@pytest.mark.toxic("echo", "latency", latency=-5)
def test_toxic_attribute_the_server_refuses():
    pass


def test_context_manager_on_unknown_target(chaos):
    with chaos.latency("redis", 100):
        pass


@pytest.fixture
def third(chaos, toxiproxy):
    chaos.proxy("third", upstream=toxiproxy.proxies()["echo"].upstream)


@pytest.mark.latency("third", 100)
def test_target_made_by_a_fixture(third, toxiproxy):
    assert [t.type for t in toxiproxy.client.toxics("third")] == ["latency"]
"""


def test_unknown_targets_list_the_known_proxies(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_targets=UNKNOWN_TARGETS)
    result = suite.runpytest_inprocess()
    known = (
        "known proxies: echo, second (declare them with chaos_proxies in the ini file,"
        " or chaos.proxy(name, upstream=...))"
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_toxic_type_the_server_refuses _*",
            exact(
                "@pytest.mark.toxic: the server refused toxic('echo', type='no_such_toxic',"
                " stream='both'): invalid toxic type"
            ),
            "*_ test_toxic_attribute_the_server_refuses _*",
            exact(
                "@pytest.mark.toxic: the server refused toxic('echo', type='latency',"
                " toxic_attributes={'latency': -5}): bad request body: attribute latency of"
                " latency must be between 0 and 86400000 (ms), got -5"
            ),
            "*_ test_context_manager_on_unknown_target _*",
            '*with chaos.latency("redis", 100):',
            exact(
                "E       pytest_chaos.faults.FaultError: latency: target 'redis' names no"
                f" known proxy; {known}"
            ),
            "test_targets.py:30: FaultError",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_unknown_target _*",
            exact(f"@pytest.mark.latency: target 'redis' names no known proxy; {known}"),
            "*_ ERROR at setup of test_unknown_target_at_setup _*",
            exact("@pytest.mark.dependency_down: target 'postgres' names no known proxy; " + known),
        ]
    )
    result.assert_outcomes(passed=2, failed=3, errors=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--chaos-seed", "abc"],
            "--chaos-seed must be a whole number, got 'abc'",
        ),
        (
            ["--chaos-backend", "toxiproxy"],
            "--chaos-backend toxiproxy needs the API address: --toxiproxy-url http://HOST:PORT"
            " (or chaos_toxiproxy_url in the ini file)",
        ),
        (
            ["--toxiproxy-url", "127.0.0.1:8474"],
            "--toxiproxy-url must be an http:// URL, got '127.0.0.1:8474'",
        ),
    ],
    ids=["seed", "toxiproxy-without-url", "url-without-scheme"],
)
def test_bad_option_values(bare: pytest.Pytester, args: list[str], message: str) -> None:
    bare.makepyfile("def test_never_collected(): pass")
    result = bare.runpytest_inprocess(*args)
    result.stderr.fnmatch_lines([exact(f"ERROR: {message}")])
    result.stdout.no_fnmatch_line("*test_never_collected*")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_unknown_backend_lists_the_backends(bare: pytest.Pytester) -> None:
    result = bare.runpytest_inprocess("--chaos-backend", "nope")
    result.stderr.fnmatch_lines(
        [
            # ("pytest" is "pytest.main()" in process)
            "pytest*: error: "
            + exact(
                "argument --chaos-backend: invalid choice: 'nope'"
                " (choose from 'embedded', 'toxiproxy', 'container')"
            )
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        (
            "chaos_backend = nope",
            "chaos_backend: 'nope' is not a backend; choose from embedded, toxiproxy, container",
        ),
        ("chaos_seed = 1.5", "--chaos-seed must be a whole number, got '1.5'"),
        (
            "chaos_proxies =\n    redis 127.0.0.1:6379",
            "chaos_proxies: cannot read 'redis 127.0.0.1:6379'; write one `name = host:port`"
            " per line, e.g. `redis = 127.0.0.1:6379`",
        ),
        (
            "chaos_proxies =\n    redis = 127.0.0.1",
            "chaos_proxies: cannot read 'redis = 127.0.0.1'; write one `name = host:port`"
            " per line, e.g. `redis = 127.0.0.1:6379`",
        ),
        (
            "chaos_proxies =\n    = 127.0.0.1:6379",
            "chaos_proxies: cannot read '= 127.0.0.1:6379'; write one `name = host:port`"
            " per line, e.g. `redis = 127.0.0.1:6379`",
        ),
        (
            "chaos_proxies =\n    redis = 127.0.0.1:99999",
            "chaos_proxies: 'redis = 127.0.0.1:99999': the port must be from 1 to 65535, got 99999",
        ),
        (
            "chaos_proxies =\n    redis = 127.0.0.1:6379\n    redis = 127.0.0.1:6380",
            "chaos_proxies: 'redis' is declared twice",
        ),
    ],
    ids=["backend", "seed", "no-equals", "no-port", "no-name", "port-range", "twice"],
)
def test_bad_ini_values(pytester: pytest.Pytester, ini: str, message: str) -> None:
    make_ini(pytester, ini)
    pytester.makepyfile("def test_never_collected(): pass")
    result = pytester.runpytest_inprocess()
    result.stderr.fnmatch_lines([exact(f"ERROR: {message}")])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_unreachable_toxiproxy(bare: pytest.Pytester) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    bare.makepyfile(
        dedent(
            """
            import pytest

            def test_uses_chaos(chaos):
                pass

            @pytest.mark.latency("echo", 100)
            def test_uses_a_marker():
                pass

            def test_without_chaos():
                pass
            """
        )
    )
    result = bare.runpytest_inprocess("--chaos-backend", "toxiproxy", "--toxiproxy-url", url)
    result.stdout.fnmatch_lines(
        [
            exact(f"chaos: backend=toxiproxy url={url} seed=") + "*",
            "*_ ERROR at setup of test_uses_chaos _*",
            exact(f"pytest-chaos: --chaos-backend toxiproxy: no Toxiproxy API answers at {url}")
            + " (cannot reach *)",
        ]
    )
    result.assert_outcomes(passed=1, errors=2)


def test_markers_are_listed_with_their_signatures(bare: pytest.Pytester) -> None:
    result = bare.runpytest_inprocess("--markers")
    expected = [
        "@pytest.mark.latency(target, ms, *, jitter=0, stream='downstream', toxicity=1.0,"
        " when='call'): delay data through the proxy by ms milliseconds, +/- jitter ms.",
        "@pytest.mark.bandwidth(target, rate, *, unit='KB/s', stream='downstream',"
        " toxicity=1.0, when='call'): limit throughput to rate KB/s (1 KB = 1000 bytes); 0"
        " stops data. On a UDP proxy, unit='datagrams/s' counts datagrams.",
        "@pytest.mark.stall(target, *, timeout=0, stream='downstream', toxicity=1.0,"
        " when='call'): swallow all data; close after timeout ms without data (0: never)."
        " Toxiproxy's timeout toxic.",
        "@pytest.mark.reset_peer(target, *, timeout=0, stream='downstream', toxicity=1.0,"
        " when='call'): reset connections (TCP RST) timeout ms after their first data.",
        "@pytest.mark.slow_close(target, delay, *, stream='downstream', toxicity=1.0,"
        " when='call'): hold each connection's close back by delay ms.",
        "@pytest.mark.slicer(target, average_size, *, size_variation=0, delay=0,"
        " stream='downstream', toxicity=1.0, when='call'): cut data into writes of"
        " average_size +/- size_variation bytes, delay MICROseconds apart.",
        "@pytest.mark.limit_data(target, bytes, *, stream='downstream', toxicity=1.0,"
        " when='call'): close connections after bytes bytes in the stream.",
        "@pytest.mark.dependency_down(target, *, mode='refuse', when='call'): make the"
        " dependency unreachable: mode 'refuse' (connection refused), 'blackhole' (nothing"
        " answers, nothing closes) or 'reset' (TCP resets) at its proxy; or, on a service the"
        " plugin started, 'kill' (SIGKILL), 'terminate' (SIGTERM), 'stop' (graceful) or 'pause'"
        " (frozen), undone after the test.",
        "@pytest.mark.toxic(target, type, *, stream='downstream', toxicity=1.0, when='call',"
        " **attributes): add any Toxiproxy toxic type with raw integer attributes.",
        "@pytest.mark.packet_loss(target, rate, *, correlation=0.0, retries=15, syn_retries=6,"
        " stream='downstream', toxicity=1.0, when='call'): lose each packet with probability"
        " rate 0..1 (correlation 0..1: burstiness, the mean kept). TCP: stalls of a"
        " retransmission timeout from 200 ms doubling, a reset after retries (15, Linux's"
        " tcp_retries2), lost SYNs hold new connections 1 s, 2 s... (syn_retries 6); never lost"
        " bytes. UDP: datagrams lost.",
        "@pytest.mark.duplicate(target, probability, *, stream='downstream', toxicity=1.0,"
        " when='call'): send each datagram twice with probability 0..1 (UDP proxies).",
        "@pytest.mark.reorder(target, probability, *, distance=1, delay=20,"
        " stream='downstream', toxicity=1.0, when='call'): hold each datagram back with"
        " probability 0..1 until distance later datagrams overtook it, or at most delay ms"
        " (UDP proxies).",
        "@pytest.mark.corrupt(target, probability, *, stream='downstream', toxicity=1.0,"
        " when='call'): flip one random bit of each datagram with probability 0..1 (UDP"
        " proxies).",
    ]
    for line in expected:
        result.stdout.fnmatch_lines([exact(line)])
    assert result.ret == pytest.ExitCode.OK
