"""chaos.load inside real pytest runs: the loads in `--chaos-report`, a load left running
stopped at the test's end, `--chaos-html` (and `chaos_html`) written from the controller of
an xdist run and opened in a real headless Chromium whose DOM must show the charts, the
charting library kept out of runs that do not ask for the report, and a service terminated
through `chaos` while a load runs."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugin.conftest import dedent

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

LOAD_TESTS = dedent(
    """
    import time

    from netcheck import talk
    from pytest_chaos.assertions import assert_steady_state


    def echo_once(echo):
        outcome = talk(echo, timeout=1).outcome
        if outcome != "ok":
            raise ConnectionError(outcome)


    def test_through_faults(chaos, echo):
        with chaos.load(lambda: echo_once(echo), concurrency=2, rate=100) as load:
            time.sleep(0.3)
            with chaos.latency("echo", 30):
                time.sleep(0.3)
            time.sleep(0.2)
            with chaos.dependency_down("echo"):
                time.sleep(0.2)
            time.sleep(0.3)
        assert_steady_state(load, error_rate=0, during=["before", "after"])


    def test_faults_without_a_load(chaos, echo):
        with chaos.latency("echo", 10):
            assert talk(echo).outcome == "ok"
    """
)


def run_load_suite(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    suite.makepyfile(test_load=LOAD_TESTS)
    # Hypothesis's pytest plugin imports Hypothesis at the end of every run: not needed here.
    return suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)


def test_the_json_report_carries_each_load_s_signals_per_window(suite: pytest.Pytester) -> None:
    result = run_load_suite(suite, "--chaos-report", "report.json")
    result.assert_outcomes(passed=2)
    records = {
        t["nodeid"]: t for t in json.loads(Path(suite.path, "report.json").read_text())["tests"]
    }
    [load] = records["test_load.py::test_through_faults"]["loads"]
    assert "loads" not in records["test_load.py::test_faults_without_a_load"]
    assert load["load"] == "test_through_faults.<locals>.<lambda> x2 at 100/s"
    assert [w["window"] for w in load["windows"]] == [
        "whole run",
        "before faults",
        "latency('echo', ms=30)",
        "dependency_down('echo')",
        "after faults",
    ]
    windows = {w["window"]: w for w in load["windows"]}
    assert windows["latency('echo', ms=30)"]["p50"] >= 0.03
    assert set(windows["dependency_down('echo')"]["errors"]) == {"ConnectionError"}
    assert windows["before faults"]["errors"] == {}
    assert windows["before faults"]["proxies"]["echo"]["connections"] > 10
    # The recovery: from the outage's revert (its time depends on how busy the machine is).
    recovery = load["recovery"]
    assert recovery["reverted_at"] == windows["dependency_down('echo')"]["spans"][0][1]
    assert recovery["time"] is None or recovery["time"] >= 0
    assert load["calls"]["count"] == windows["whole run"]["count"] == len(load["calls"]["start"])
    assert set(load["error_examples"]) == {"ConnectionError"}


def test_a_load_left_running_is_stopped_when_its_test_ends(suite: pytest.Pytester) -> None:
    """...before the test's faults are reverted, so that the end of the test (a service
    started again, a proxy re-enabled) is not recorded as the load's own."""
    suite.makepyfile(
        test_left=dedent(
            """
            import threading
            import time

            import pytest
            from netcheck import talk
            from pytest_chaos.faults import Latency

            left = {}


            @pytest.fixture
            def after_chaos():
                # Set up before `chaos`, so torn down after it.
                yield
                load, fault = left["load"], left["fault"]
                assert not load.running
                assert load.stopped_at < fault.reverted_at


            def test_left_running(after_chaos, chaos, echo):
                left["load"] = chaos.load(lambda: talk(echo), concurrency=2).start()
                left["fault"] = chaos.inject(Latency("echo", 5))
                time.sleep(0.2)


            def test_nothing_of_it_is_left():
                assert not [t for t in threading.enumerate() if t.name.startswith("chaos-load")]
            """
        )
    )
    result = suite.runpytest("--chaos-report", "report.json")
    result.assert_outcomes(passed=2)
    [record] = json.loads(Path(suite.path, "report.json").read_text())["tests"]
    assert record["loads"][0]["calls"]["count"] > 5


def test_the_charting_library_is_imported_only_for_the_html_report(
    suite: pytest.Pytester,
) -> None:
    suite.makeconftest(
        (suite.path / "conftest.py").read_text()
        + "\n"
        + dedent(
            """
            import sys
            from pathlib import Path


            def pytest_unconfigure(config):
                Path("imported.txt").write_text(str("matplotlib" in sys.modules))
            """
        )
    )
    suite.makepyfile(
        test_short=dedent(
            """
            import time

            from netcheck import talk


            def test_short(chaos, echo):
                with chaos.load(lambda: talk(echo)), chaos.latency("echo", 5):
                    time.sleep(0.1)
            """
        )
    )
    quick = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    suite.runpytest_subprocess(*quick).assert_outcomes(passed=1)
    assert Path(suite.path, "imported.txt").read_text() == "False"
    result = suite.runpytest_subprocess(*quick, "--chaos-html", "out/report.html")
    result.assert_outcomes(passed=1)
    assert Path(suite.path, "imported.txt").read_text() == "True"
    result.stdout.fnmatch_lines(["chaos: HTML report written to out/report.html"])
    assert Path(suite.path, "out", "report.html").read_text().count("<svg") == 1


def test_the_html_report_needs_matplotlib_and_says_so(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "matplotlib" else real(name, *args),
    )
    suite.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = suite.runpytest("--chaos-html", "report.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --chaos-html draws its charts with matplotlib, which is not installed:"
            " pip install 'pytest-chaos[report]'"
        ]
    )


def test_the_ini_twin_writes_the_html_report(suite: pytest.Pytester) -> None:
    ini = Path(suite.path, "tox.ini")
    ini.write_text(ini.read_text() + "\nchaos_html = from-ini.html\n")
    suite.makepyfile(
        test_one=dedent(
            """
            from netcheck import talk

            def test_one(chaos, echo):
                with chaos.latency("echo", 5):
                    assert talk(echo).outcome == "ok"
            """
        )
    )
    suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest"
    ).assert_outcomes(passed=1)
    page = Path(suite.path, "from-ini.html").read_text()
    assert "test_one.py::test_one" in page
    assert "latency(&#x27;echo&#x27;, ms=5)" in page


# -------------------------------------------------------------------- in a real browser
@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Debian's Chromium, headless, driven by chromedriver (nothing fetched from the network)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "chromium and chromium-driver are not installed (scripts/setup.sh installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1600",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# What the page shows, read from the DOM once the browser has laid it out: each chart's size,
# and for the first test's chart, the box of each drawn element (relative to its chart).
RENDERED = """
const box = (element, chart) => {
  if (!element) return null;
  const outer = chart.getBoundingClientRect(), inner = element.getBoundingClientRect();
  return {x: inner.left - outer.left, y: inner.top - outer.top,
          width: inner.width, height: inner.height};
};
const charts = [...document.querySelectorAll('.chart > svg')];
const first = charts[0];
const find = (id) => box(document.getElementById(id), first);
const totals = Object.fromEntries([...document.querySelectorAll('table.totals th')].map(
  (th, i) => [th.textContent, document.querySelectorAll('table.totals td')[i].textContent]));
return {
  charts: charts.map(c => ({width: c.getBoundingClientRect().width,
                            height: c.getBoundingClientRect().height})),
  sections: document.querySelectorAll('section.test').length,
  bands: [0, 1].map(i => find('chart1-band-' + i)),
  bandLabel: (document.getElementById('chart1-band-label-0') || {}).textContent,
  calls: find('chart1-calls'),
  markers: document.querySelectorAll('#chart1-calls use, #chart1-calls path').length,
  errors: find('chart1-errors'),
  p50: find('chart1-p50'), p99: find('chart1-p99'),
  connections: find('chart1-connections-echo'),
  // Every chart's elements keep their own ids (markers and clip paths are found by id).
  duplicateIds: (() => {
    const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
    return ids.length - new Set(ids).size;
  })(),
  windows: [...document.querySelectorAll('section.test table.signals tr td:first-child')]
    .map(td => td.textContent),
  totals,
};
"""


def test_the_html_report_renders_its_charts_in_a_real_browser(
    suite: pytest.Pytester, browser: Any
) -> None:
    result = run_load_suite(suite, "--chaos-html", "report.html", "--chaos-report", "r.json")
    result.assert_outcomes(passed=2)
    page = Path(suite.path, "report.html")
    # Nothing to fetch: no script, no stylesheet or image from elsewhere (the SVGs' XML
    # namespaces are names, not addresses to load).
    assert not re.search(r"<script|<link|(src|href)=[\"']https?:", page.read_text())
    records = sorted(
        json.loads(Path(suite.path, "r.json").read_text())["tests"], key=lambda t: t["nodeid"]
    )
    browser.get(page.as_uri())
    seen = browser.execute_script(RENDERED)
    # One chart per test (the test without a load still shows its connections), laid out wide.
    assert seen["sections"] == 2
    assert seen["duplicateIds"] == 0
    assert len(seen["charts"]) == 2
    assert all(c["width"] > 600 and c["height"] > 100 for c in seen["charts"])
    first = seen["charts"][0]
    # The faults as bands inside the chart, the later one to the right of the earlier.
    latency_band, outage_band = seen["bands"]
    for band in (latency_band, outage_band):
        assert band is not None
        assert band["width"] > 5
        assert band["height"] > 50
        assert band["x"] >= 0
        assert band["x"] + band["width"] <= first["width"]
    assert outage_band["x"] > latency_band["x"] + latency_band["width"]
    assert seen["bandLabel"].strip() == "latency('echo', ms=30)"
    # The calls as points, the failed ones marked, the percentile lines, the connections.
    assert seen["markers"] > 20
    for drawn in ("calls", "errors", "p50", "p99", "connections"):
        assert seen[drawn] is not None, drawn
        assert seen[drawn]["width"] > 0, drawn
    assert seen["errors"]["x"] >= outage_band["x"] - 5
    assert (
        seen["errors"]["x"] + seen["errors"]["width"]
        <= outage_band["x"] + outage_band["width"] + 30
    )
    assert seen["windows"][:5] == [
        "whole run",
        "before faults",
        "latency('echo', ms=30)",
        "dependency_down('echo')",
        "after faults",
    ]
    # The suite's totals come from every worker's records.
    calls = sum(load["windows"][0]["count"] for t in records for load in t.get("loads", []))
    assert seen["totals"]["tests"] == "2"
    assert seen["totals"]["passed"] == "2"
    assert seen["totals"]["faults injected"] == "3"
    assert seen["totals"]["calls"] == str(calls)


# ------------------------------------------------------------- a service terminated by chaos
def test_a_service_terminated_through_chaos_shows_on_the_timeline_and_comes_back(
    bare: pytest.Pytester,
) -> None:
    server = Path(__file__).parents[1] / "load" / "shutdown_server.py"
    bare.makeconftest(
        dedent(
            f"""
            import sys

            from pytest_chaos.services import Recipe, ServiceDefinition, service_fixture

            api = service_fixture(
                ServiceDefinition(
                    "api",
                    local=Recipe("api", [sys.executable, {str(server)!r}, "{{port}}", "drain"]),
                )
            )
            """
        )
    )
    bare.makepyfile(
        test_api=dedent(
            """
            import http.client
            import time

            import pytest

            from pytest_chaos.assertions import assert_graceful_shutdown


            def get(api):
                connection = http.client.HTTPConnection(api.host, api.port, timeout=3)
                try:
                    connection.request("GET", "/slow")
                    assert connection.getresponse().status == 200
                finally:
                    connection.close()


            @pytest.mark.parametrize("by", ["name", "fixture value"])
            def test_drains(api, chaos, by):
                service = "api" if by == "name" else api
                with chaos.load(lambda: get(api), concurrency=3) as load:
                    time.sleep(0.4)
                    shutdown = assert_graceful_shutdown(service, load=load, grace=2)
                assert not api.running
                assert [str(f.fault) for f in chaos.applied] == [
                    "dependency_down('api', mode='terminate')"
                ]
                during = load.stats("dependency_down('api', mode='terminate')")
                assert during.count >= len(shutdown.in_flight) > 0


            def test_it_is_back(api):
                get(api)
            """
        )
    )
    result = bare.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--chaos-services", "local"
    )
    result.assert_outcomes(passed=3)
