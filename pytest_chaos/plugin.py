"""pytest hooks and fixtures of pytest-chaos. Imports nothing heavy at load time: the engine,
the HTTP client and the fault machinery are imported inside the hooks and fixtures that use
them, so a test run that injects no fault pays nothing for the plugin."""

from __future__ import annotations

import json
import sys
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_chaos.config import ChaosConfig, add_options, resolve

if TYPE_CHECKING:
    from pytest_chaos.backends import EngineProcess, ToxiproxyServer  # noqa: F401 - used in a stash key
    from pytest_chaos.chaos import Chaos
    from pytest_chaos.markers import MarkedFault
    from pytest_chaos.services.fixtures import ServiceRegistry

MARKER_NAMES = (
    "latency",
    "bandwidth",
    "stall",
    "reset_peer",
    "slow_close",
    "slicer",
    "limit_data",
    "dependency_down",
    "toxic",
)
CHAOS_FIXTURES = ("chaos", "toxiproxy")

config_key = pytest.StashKey[ChaosConfig]()
process_key = pytest.StashKey["EngineProcess"]()
marked_key = pytest.StashKey[list["MarkedFault"]]()
chaos_key = pytest.StashKey["Chaos"]()
services_key = pytest.StashKey["ServiceRegistry"]()


# ---------------------------------------------------------------------------------- hooks
def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    from pytest_chaos.markers import marker_help

    for line in marker_help():
        config.addinivalue_line("markers", line)
    worker_input = getattr(config, "workerinput", None)
    inherited = worker_input.get("chaos_seed") if worker_input else None
    config.stash[config_key] = resolve(config, inherited_seed=inherited)
    config.pluginmanager.register(ChaosReporter(config), "chaos-reporter")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistSeedSharing(config), "chaos-xdist")


class _XdistSeedSharing:
    """Give every xdist worker the controller's seed, so a run is repeatable as a whole."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["chaos_seed"] = self.config.stash[config_key].seed


def pytest_report_header(config: pytest.Config) -> str:
    settings = config.stash[config_key]
    where = ""
    if settings.backend == "toxiproxy":
        where = f" url={settings.toxiproxy_url}"
    elif settings.backend == "container":
        where = f" image={settings.toxiproxy_image} network={settings.toxiproxy_network}"
    return f"chaos: backend={settings.backend}{where} seed={settings.seed}"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Launch the engine early (without waiting) when a collected test will need it."""
    settings = session.config.stash[config_key]
    if settings.backend != "embedded" or session.config.option.collectonly:
        return
    if any(_uses_chaos(item) for item in session.items):
        from pytest_chaos.engine_process import EngineProcess

        process = EngineProcess(settings.seed)
        process.launch()
        session.config.stash[process_key] = process


def _declared_service_fixtures() -> tuple[str, ...]:
    # Only a conftest that called service_fixture() has imported this module.
    module = sys.modules.get("pytest_chaos.services.fixtures")
    if module is None:
        return ()
    return tuple(name for names in module.DECLARED.values() for name in names)


def _uses_chaos(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    fixtures = CHAOS_FIXTURES + _declared_service_fixtures()
    return any(name in names for name in fixtures) or any(
        item.get_closest_marker(name) is not None for name in MARKER_NAMES
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Before any fixture of the test: make the services it uses its own (serving again,
    whatever an earlier test did to them, and their proxies pointed at them: two directories
    may each run their own "redis"). Once the fixtures are set up (they may create proxies):
    check that every marker for the test body names a known proxy or service, so that a
    wrong name is a setup error like any other mistake in a marker."""
    registry = _begin_services(item)
    try:
        result = yield
    finally:
        if registry is not None:
            registry.end_setup()
    chaos = item.stash.get(chaos_key, None)
    later = [mark for mark in item.stash.get(marked_key, []) if mark.when == "call"]
    if chaos is None or not later:
        return result
    from pytest_chaos.faults import FaultError
    from pytest_chaos.markers import restate_for_marker

    proxies = chaos.client.proxies()
    for mark in later:
        problem: str | None = None
        try:
            chaos.check_target(mark.fault, proxies)
        except FaultError as error:
            problem = restate_for_marker(mark.marker, error)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Apply the markers' faults around the test body only, and always revert them."""
    marked = item.stash.get(marked_key, [])
    chaos = item.stash.get(chaos_key, None)
    if chaos is None or not marked:
        return (yield)
    from pytest_chaos.faults import FaultError
    from pytest_chaos.markers import restate_for_marker

    applied = []
    test_failed = False
    try:
        for mark in marked:
            if mark.when == "call":
                try:
                    applied.append(chaos.inject(mark.fault))
                except FaultError as error:
                    problem = restate_for_marker(mark.marker, error)
                else:
                    continue
                pytest.fail(problem, pytrace=False)
        return (yield)
    except BaseException:
        test_failed = True
        raise
    finally:
        reverted = _revert(applied)
        # The test's own failure says more; a failed revert is reported when the test passed.
        if reverted is not None and not test_failed:
            pytest.fail(reverted, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    chaos = item.stash.get(chaos_key, None)
    if chaos is None or report.when != "call":
        return report
    from pytest_chaos.client import FeatureUnavailable, ToxiproxyError

    try:
        timeline = chaos.timeline()
    except (ToxiproxyError, FeatureUnavailable) as error:
        # The report must not die with the engine: show the faults, and why events are missing.
        timeline = chaos.timeline_without_events(f"(events unavailable: {error})")
    if report.failed and (timeline.entries() or timeline.note):
        # A test that injected nothing and whose proxies saw nothing gets no empty section.
        report.sections.append(("chaos timeline", timeline.render()))
    record = {"nodeid": item.nodeid, "outcome": report.outcome, **timeline.to_json()}
    entry = ("chaos", json.dumps(record))
    report.user_properties.append(entry)
    # As record_property does: JUnit XML reads the properties of the teardown report, which
    # copies the item's.
    item.user_properties.append(entry)
    return report


class ChaosReporter:
    """Gathers each test's chaos record (also from xdist workers, through their reports) for
    the terminal summary and the JSON report."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = config.stash[config_key]
        self.faults = 0
        self.records: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # The call report and the teardown report both carry the record; count it once.
        if report.when != "teardown":
            return
        for key, value in report.user_properties:
            if key == "chaos" and isinstance(value, str):
                record = json.loads(value)
                self.records.append(record)
                self.faults += len(record["faults"])

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.records:
            tests = len(self.records)
            terminalreporter.write_line(
                f"chaos: {self.faults} fault{'s' if self.faults != 1 else ''} injected in"
                f" {tests} test{'s' if tests != 1 else ''}"
                f" (backend {self.settings.backend}, seed {self.settings.seed})"
            )

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.settings.report_path
        if path is not None and not hasattr(self.config, "workerinput"):
            payload = {
                "seed": self.settings.seed,
                "backend": self.settings.backend,
                "tests": self.records,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload, indent=2) + "\n")
        process = self.config.stash.get(process_key, None)
        if process is not None:
            process.stop()


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def toxiproxy(request: pytest.FixtureRequest) -> Iterator[ToxiproxyServer]:
    """The session's Toxiproxy server (embedded engine, --toxiproxy-url, or the Toxiproxy
    image in a container), with the proxies
    declared in `chaos_proxies`. Stopped, or cleaned of everything it added, at session end."""
    from pytest_chaos.backends import BackendError, EngineProcess, open_server
    from pytest_chaos.client import ToxiproxyError

    config = request.config
    settings = config.stash[config_key]
    process = config.stash.get(process_key, None)
    if settings.backend == "embedded" and process is None:
        process = EngineProcess(settings.seed)
        config.stash[process_key] = process
    # pytest.fail() is called outside the except blocks, so that the report shows our message
    # once, without "During handling of the above exception...".
    problem: str | None = None
    server: ToxiproxyServer | None = None
    try:
        worker = getattr(config, "workerinput", {}).get("workerid")
        server = open_server(
            settings.backend,
            settings.toxiproxy_url,
            process,
            worker,
            image=settings.toxiproxy_image,
            network=settings.toxiproxy_network,
            seed=settings.seed,
        )
    except BackendError as error:
        problem = f"pytest-chaos: {error}"
    if server is None:
        pytest.fail(problem or "pytest-chaos: no Toxiproxy server", pytrace=False)
    try:
        if settings.proxies:
            server.declare(settings.proxies)
    except ToxiproxyError as error:
        server.close()
        problem = f"pytest-chaos: chaos_proxies: {error}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def chaos(request: pytest.FixtureRequest, toxiproxy: ToxiproxyServer) -> Iterator[Chaos]:
    """Faults for this test: `chaos.proxy(name, upstream=...)`, `with chaos.latency(...)`,
    `chaos.events(name)`, `chaos.timeline()`. Everything is reverted when the test ends."""
    from pytest_chaos.chaos import Chaos

    config = request.config
    # The registry is looked up when a service is named, not now: a test's services may be
    # set up after this fixture, and a run without services never imports them.
    instance = Chaos(
        toxiproxy, config.stash[config_key].seed, lambda: config.stash.get(services_key, None)
    )
    request.node.stash[chaos_key] = instance
    try:
        yield instance
    finally:
        problem = _revert_all(instance)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(autouse=True)
def _chaos_marker_faults(request: pytest.FixtureRequest) -> None:
    """Read the test's fault markers; apply `when="setup"` ones now, keep the rest for the
    test body (see pytest_runtest_call)."""
    node = request.node
    marks = [
        (mark.name, mark.args, mark.kwargs)
        for name in MARKER_NAMES
        for mark in node.iter_markers(name)
    ]
    if not marks:
        return
    from pytest_chaos.faults import FaultError
    from pytest_chaos.markers import faults_of, restate_for_marker

    # pytest.fail() is called outside the except blocks so the report shows only our message,
    # not "During handling of the above exception...".
    problem: str | None = None
    try:
        marked = faults_of(marks)
    except FaultError as error:
        problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    chaos: Chaos = request.getfixturevalue("chaos")
    node.stash[marked_key] = marked
    for mark in marked:
        if mark.when == "setup":
            _start_service_for(request, mark.fault)
            try:
                chaos.inject(mark.fault)
            except FaultError as error:
                problem = restate_for_marker(mark.marker, error)
            if problem is not None:
                pytest.fail(problem, pytrace=False)


def _revert(applied: list[Any]) -> str | None:
    """Revert the markers' faults, newest first, each whatever the others did; the first
    failure as a message, or None."""
    from pytest_chaos.faults import revert_errors

    problem: str | None = None
    for handle in reversed(applied):
        try:
            handle.revert()
        except revert_errors() as error:
            problem = problem or f"pytest-chaos: could not revert {handle.fault}: {error}"
    return problem


def _revert_all(chaos: Chaos) -> str | None:
    """Revert what the test left applied; the failure as a message, or None."""
    from pytest_chaos.faults import revert_errors

    try:
        chaos.revert_all()
    except revert_errors() as error:
        return f"pytest-chaos: could not revert this test's faults: {error}"
    return None


def _begin_services(item: pytest.Item) -> ServiceRegistry | None:
    """The session's service registry with this test's services made current (see
    pytest_runtest_setup); None in a run that declares no service."""
    if "pytest_chaos.services.fixtures" not in sys.modules:
        return None  # no conftest called service_fixture(): nothing to do, nothing imported
    from pytest_chaos.services import ServiceError
    from pytest_chaos.services.fixtures import registry_of, service_fixtures_of

    fixtures = service_fixtures_of(item)
    registry = item.config.stash.get(services_key, None)
    if registry is None and not fixtures:
        return None
    registry = registry or registry_of(item.config)
    problem: str | None = None
    try:
        registry.begin_test([running for _, _, running in fixtures if running is not None])
    except ServiceError as error:
        registry.end_setup()
        problem = f"pytest-chaos: {error}"
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return registry


def _start_service_for(request: pytest.FixtureRequest, fault: object) -> None:
    """A process fault applied at setup needs its service now, before the test's other
    fixtures: set up the fixture of that service, if the test uses one."""
    from pytest_chaos.faults import Down

    if not (isinstance(fault, Down) and fault.acts_on_process):
        return
    if "pytest_chaos.services.fixtures" not in sys.modules:
        return
    from pytest_chaos.services.fixtures import service_fixtures_of

    for name, definition, _ in service_fixtures_of(request.node):
        if definition.name == fault.target:
            request.getfixturevalue(name)
            return
