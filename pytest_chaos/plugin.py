"""pytest hooks and fixtures of pytest-chaos: wiring only, hooks first.

The logic lives elsewhere (`runner` around each test, `report` for what a run shows,
`backends` for the server, `config` for the options). Loading the plugin imports nothing
heavy: the engine, the HTTP client and the services are imported inside the hooks and
fixtures that use them, so a test run that injects no fault pays nothing for the plugin.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_chaos import runner
from pytest_chaos._keys import chaos_key, config_key, process_key
from pytest_chaos.config import add_options, resolve

if TYPE_CHECKING:
    from pytest_chaos.backends.server import ToxiproxyServer
    from pytest_chaos.chaos import Chaos


# ---------------------------------------------------------------------------------- hooks
def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    add_options(parser, pluginmanager)


def pytest_configure(config: pytest.Config) -> None:
    from pytest_chaos.markers import marker_help
    from pytest_chaos.report.reporter import ChaosReporter

    for line in marker_help():
        config.addinivalue_line("markers", line)
    worker_input = getattr(config, "workerinput", None)
    inherited = worker_input.get("chaos_seed") if worker_input else None
    config.stash[config_key] = resolve(config, inherited_seed=inherited)
    config.pluginmanager.register(ChaosReporter(config), "chaos-reporter")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistSeedSharing(config), "chaos-xdist")
    runner.open_dns(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    runner.close_dns(config)


class _XdistSeedSharing:
    """Give every xdist worker the controller's seed, so a run is repeatable as a whole."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["chaos_seed"] = self.config.stash[config_key].seed


def pytest_report_header(config: pytest.Config) -> str:
    return config.stash[config_key].header()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Launch the engine early (without waiting) when a collected test will need it."""
    settings = session.config.stash[config_key]
    if settings.backend != "embedded" or session.config.option.collectonly:
        return
    if any(runner.uses_chaos(item) for item in session.items):
        from pytest_chaos.backends.embedded import EngineProcess

        process = EngineProcess(settings.seed)
        process.launch()
        session.config.stash[process_key] = process


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    runner.settle_hypothesis_tests(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Before any fixture of the test, its services are made current; once its fixtures are
    set up, its markers' targets are checked."""
    registry = runner.begin_services(item)
    try:
        result = yield
    finally:
        if registry is not None:
            registry.end_setup()
    runner.check_call_markers(item)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """The markers' faults around the test body only, always reverted."""
    with runner.faults_around_call(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    chaos = item.stash.get(chaos_key, None)
    if chaos is not None and report.when == "call":
        from pytest_chaos.report.reporter import attach_record

        attach_record(item, report, chaos)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    # An engine launched for tests that in the end did not run (deselected, skipped) too.
    process = session.config.stash.get(process_key, None)
    if process is not None:
        process.stop()


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def toxiproxy(request: pytest.FixtureRequest) -> Iterator[ToxiproxyServer]:
    """The session's Toxiproxy server (embedded engine, --toxiproxy-url, or the Toxiproxy
    image in a container), with the proxies declared in `chaos_proxies`. Stopped, or cleaned
    of everything it added, at session end."""
    from pytest_chaos.backends.server import open_session_server

    server = open_session_server(request.config)
    runner.attach_dns(request.config, server)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def chaos(request: pytest.FixtureRequest, toxiproxy: ToxiproxyServer) -> Iterator[Chaos]:
    """Faults for this test: `chaos.proxy(name, upstream=...)`, `with chaos.latency(...)`,
    `chaos.events(name)`, `chaos.timeline()`. Everything is reverted when the test ends."""
    instance = runner.open_chaos(request, toxiproxy)
    try:
        yield instance
    finally:
        runner.close_chaos(instance)


@pytest.fixture(autouse=True)
def _chaos_marker_faults(request: pytest.FixtureRequest) -> None:
    """Read the test's fault markers; apply `when="setup"` ones now, the rest around the test
    body (see pytest_runtest_call)."""
    runner.read_markers(request)
