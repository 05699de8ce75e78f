"""The same chaos test file against the embedded engine and against an external server
(`--chaos-backend toxiproxy --toxiproxy-url URL`), which must be left as it was found."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pytest_chaos.backends.embedded import EngineProcess
from tests.plugin.conftest import exact, make_ini
from tests.servers import free_port

SAME_FILE = """
import pytest

from netcheck import leftovers, talk, wait_for_close


@pytest.fixture
def made(chaos, toxiproxy):
    proxy = chaos.proxy("made", upstream=toxiproxy.proxies()["echo"].upstream)
    return (proxy.host, proxy.port)


@pytest.fixture(scope="session")
def session_proxy(toxiproxy):
    proxy = toxiproxy.create_proxy(
        "made_for_the_session", toxiproxy.proxies()["echo"].upstream
    )
    return (proxy.host, proxy.port)


def test_which_server(toxiproxy):
    print("server:", toxiproxy.backend, toxiproxy.url)


@pytest.mark.latency("echo", 150)
@pytest.mark.limit_data("echo", 3)
def test_markers(echo):
    seen = talk(echo)
    assert (seen.outcome, seen.data) == ("eof", b"pin")
    assert seen.seconds >= 0.14


@pytest.mark.dependency_down("echo")
def test_down(echo, toxiproxy):
    assert toxiproxy.proxies()["echo"].enabled is False
    assert talk(echo).outcome == "refused"


@pytest.mark.dependency_down("made", mode="blackhole")
def test_marker_on_a_made_proxy(made):
    assert talk(made, timeout=0.5).outcome == "timeout"


def test_context_managers(chaos, echo, made, session_proxy):
    with chaos.latency("made", 150), chaos.reset_peer("made_for_the_session"):
        assert talk(made).seconds >= 0.14
        assert talk(session_proxy).outcome == "reset"
        assert talk(echo).outcome == "ok"
    assert talk(session_proxy).outcome == "ok"


def test_events(chaos, echo):
    assert talk(echo).outcome == "ok"
    kinds = [e.kind for e in wait_for_close(chaos) if e.kind not in ("data", "toxic_added")]
    assert kinds[0] == "accepted" and kinds[-1] == "closed"


@pytest.mark.parametrize("name", ["found", "elsewhere"])
def test_declared_proxies(toxiproxy, name):
    proxy = toxiproxy.proxies()[name]
    assert proxy.upstream == toxiproxy.proxies()["echo"].upstream
    assert talk((proxy.host, proxy.port)).outcome == "ok"


def test_left_behind_by_nobody(toxiproxy):
    assert leftovers(toxiproxy) == {
        "kept": (["kept_latency", "chaos_latency_downstream_1"], True)
    }
    assert sorted(toxiproxy.proxies()) == [
        "echo", "elsewhere", "found", "kept", "made", "made_for_the_session"
    ]
"""


@contextmanager
def served() -> Iterator[str]:
    """`python -m pytest_chaos serve --port 0` in its own process; yields its API URL."""
    process = EngineProcess(seed=1)
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_same_file_on_embedded_and_external_backends(suite: pytest.Pytester, echo: str) -> None:
    suite.makepyfile(test_same=SAME_FILE)
    with served() as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as api:
        # Something the session did not make, which must survive it untouched.
        api.post("/proxies", json={"name": "kept", "upstream": echo}).raise_for_status()
        # Toxics of someone else, one named like the plugin's own (another session's).
        for name in ("kept_latency", "chaos_latency_downstream_1"):
            api.post(
                "/proxies/kept/toxics",
                json={"name": name, "type": "latency", "attributes": {"latency": 5}},
            ).raise_for_status()
        # A proxy the ini file declares too, already there: used as it is, and kept.
        api.post("/proxies", json={"name": "found", "upstream": echo}).raise_for_status()
        # ... and one pointed elsewhere: pointed at the declared upstream, then back.
        nowhere = f"127.0.0.1:{free_port()}"
        api.post("/proxies", json={"name": "elsewhere", "upstream": nowhere}).raise_for_status()
        before = api.get("/proxies").json()
        make_ini(
            suite,
            "chaos_proxies =\n"
            + "".join(f"    {name} = {echo}\n" for name in ("echo", "found", "elsewhere")),
        )

        embedded = suite.runpytest_inprocess(
            "--chaos-backend", "embedded", "-rP", "-k", "not nobody"
        )
        embedded.stdout.fnmatch_lines(
            ["chaos: backend=embedded seed=*", "server: embedded http://127.0.0.1:*"]
        )
        # The session's engine is gone with the session.
        engine_url = next(line for line in embedded.outlines if line.startswith("server: "))
        with pytest.raises(httpx.ConnectError):
            httpx.get(engine_url.split()[2] + "/version", timeout=5, trust_env=False)

        external = suite.runpytest_inprocess(
            "--chaos-backend", "toxiproxy", "--toxiproxy-url", url, "-rP"
        )
        external.stdout.fnmatch_lines(
            [
                exact(f"chaos: backend=toxiproxy url={url} seed=") + "*",
                exact(f"server: toxiproxy {url}"),
                "chaos: 6 faults injected in 5 tests (backend toxiproxy, seed *)",
            ]
        )
        after = api.get("/proxies").json()
        assert after == before
        assert sorted(after) == ["elsewhere", "found", "kept"]
        assert after["elsewhere"]["upstream"] == nowhere
        assert [t["name"] for t in after["kept"]["toxics"]] == [
            "kept_latency",
            "chaos_latency_downstream_1",
        ]
    embedded.assert_outcomes(passed=8, deselected=1)
    external.assert_outcomes(passed=9)


ENGINE_DIES = """
import os
import signal
import time

import pytest

from netcheck import talk
from pytest_chaos._keys import process_key


def test_kills_the_engine(toxiproxy, request):
    engine = request.config.stash[process_key]
    print("engine:", engine.url)
    os.kill(engine.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while engine.diagnose() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def test_with_the_chaos_fixture(chaos):
    pass


@pytest.mark.latency("echo", 100)
def test_with_a_marker(echo):
    assert talk(echo).outcome == "ok"
"""


def test_an_engine_that_died_mid_run_fails_the_next_tests_saying_so(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(test_engine_dies=ENGINE_DIES)
    result = suite.runpytest_inprocess("-p", "no:randomly", "-s")
    killed = re.search(r"engine: (http://\S+)", result.stdout.str())
    assert killed is not None, result.stdout.str()
    url = killed.group(1)
    found = re.search(r"its log, kept at (\S+), ends with:", result.stdout.str())
    assert found is not None, result.stdout.str()
    log = Path(found.group(1))
    try:
        assert log.is_file()
        for test in ("test_with_the_chaos_fixture", "test_with_a_marker"):
            result.stdout.fnmatch_lines(
                [
                    f"*_ ERROR at setup of {test} _*",
                    exact(
                        f"pytest-chaos: cannot reach {url}: the embedded engine died (killed by"
                        f" SIGKILL); its log, kept at {log}, ends with:"
                    ),
                    exact(f"pytest-chaos engine 0.1.0 listening on {url} (seed ") + "*",
                ]
            )
        result.stdout.no_fnmatch_line("*pytest_chaos*.py:*")  # no traceback of ours
    finally:
        shutil.rmtree(log.parent, ignore_errors=True)
    result.assert_outcomes(passed=1, errors=2)
