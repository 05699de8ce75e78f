"""What the plugin does around each test, called from the hooks in `plugin.py`: the test's
services made current, its marker faults read, applied (from setup, or around the body) and
reverted, and its `chaos` object cleaned up. Failures become pytest failures with the
plugin's message only, never a traceback through the plugin."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_chaos._keys import chaos_key, config_key, marked_key, services_key
from pytest_chaos.faults import FAULT_TYPES

if TYPE_CHECKING:
    from pytest_chaos.apply import AppliedFault
    from pytest_chaos.chaos import Chaos
    from pytest_chaos.dns.session import DnsSession
    from pytest_chaos.services.fixtures import ServiceRegistry

CHAOS_FIXTURES = ("chaos", "toxiproxy")
SERVICES_MODULE = "pytest_chaos.services.fixtures"


def fail(message: str) -> NoReturn:
    """Fail the test with `message` alone (no traceback, no chained exception)."""
    __tracebackhide__ = True
    pytest.fail(message, pytrace=False)


def uses_chaos(item: pytest.Item) -> bool:
    """The test needs the Toxiproxy server: a chaos fixture, a service, or a fault marker."""
    names = getattr(item, "fixturenames", ())
    fixtures = CHAOS_FIXTURES + _declared_service_fixtures()
    return any(name in names for name in fixtures) or any(
        item.get_closest_marker(name) is not None for name in FAULT_TYPES
    )


def _declared_service_fixtures() -> tuple[str, ...]:
    # Only a conftest that called service_fixture() has imported this module.
    module = sys.modules.get(SERVICES_MODULE)
    if module is None:
        return ()
    return tuple(name for names in module.DECLARED.values() for name in names)


def settle_hypothesis_tests(items: list[pytest.Item]) -> None:
    """Hypothesis tests that use chaos get no deadline, and no function-scoped-fixture health
    check for `chaos` (see `hypothesis_settings`). Hypothesis is only looked at when a test
    module has imported it already."""
    if "hypothesis" not in sys.modules:
        return
    from pytest_chaos.hypothesis_settings import settle

    example_safe = ("chaos", *_declared_service_fixtures())
    for item in items:
        if uses_chaos(item):
            settle(item, example_safe)


# ------------------------------------------------------------------------------ services
def begin_services(item: pytest.Item) -> ServiceRegistry | None:
    """The session's service registry with this test's services made current (serving again,
    whatever an earlier test did to them, and their proxies pointed at them); None in a run
    that declares no service."""
    if SERVICES_MODULE not in sys.modules:
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
        fail(problem)
    return registry


def start_service_for(request: pytest.FixtureRequest, fault: object) -> None:
    """A process fault applied at setup needs its service now, before the test's other
    fixtures: set up the fixture of that service, if the test uses one."""
    from pytest_chaos.faults import Down

    if not (isinstance(fault, Down) and fault.acts_on_process):
        return
    if SERVICES_MODULE not in sys.modules:
        return
    from pytest_chaos.services.fixtures import service_fixtures_of

    for name, definition, _ in service_fixtures_of(request.node):
        if definition.name == fault.target:
            request.getfixturevalue(name)
            return


# ------------------------------------------------------------------------------- markers
def read_markers(request: pytest.FixtureRequest) -> None:
    """Read the test's fault markers; apply `when="setup"` ones now, keep the rest for the
    test body (`faults_around_call`)."""
    node = request.node
    marks = [
        (mark.name, mark.args, mark.kwargs)
        for name in FAULT_TYPES
        for mark in node.iter_markers(name)
    ]
    if not marks:
        return
    from pytest_chaos.faults import FaultError
    from pytest_chaos.markers import faults_of, restate_for_marker

    problem: str | None = None
    try:
        marked = faults_of(marks)
    except FaultError as error:
        problem = str(error)
    if problem is not None:
        fail(problem)
    chaos: Chaos = request.getfixturevalue("chaos")
    node.stash[marked_key] = marked
    for mark in marked:
        if mark.when == "setup":
            start_service_for(request, mark.fault)
            try:
                chaos.inject(mark.fault)
            except FaultError as error:
                problem = restate_for_marker(mark.marker, error)
            if problem is not None:
                fail(problem)


def check_call_markers(item: pytest.Item) -> None:
    """Once the fixtures are set up (they may create proxies): every marker for the test body
    names a known proxy or service, so that a wrong name is a setup error."""
    chaos = item.stash.get(chaos_key, None)
    later = [mark for mark in item.stash.get(marked_key, []) if mark.when == "call"]
    if chaos is None or not later:
        return
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
            fail(problem)


@contextmanager
def faults_around_call(item: pytest.Item) -> Iterator[None]:
    """The markers' faults applied around the test body only, and always reverted."""
    if "hypothesis" in sys.modules:
        from pytest_chaos.hypothesis_settings import unsafe_fixtures_message

        unsafe = unsafe_fixtures_message(item)
        if unsafe is not None:
            fail(unsafe)
    marked = item.stash.get(marked_key, [])
    chaos = item.stash.get(chaos_key, None)
    if chaos is None or not marked:
        yield
        return
    from pytest_chaos.faults import FaultError
    from pytest_chaos.markers import restate_for_marker

    applied: list[AppliedFault] = []
    test_failed = False
    try:
        for mark in marked:
            if mark.when != "call":
                continue
            problem: str | None = None
            try:
                applied.append(chaos.inject(mark.fault))
            except FaultError as error:
                problem = restate_for_marker(mark.marker, error)
            if problem is not None:
                fail(problem)
        yield
    except BaseException:
        test_failed = True
        raise
    finally:
        reverted = revert(applied)
        # The test's own failure says more; a failed revert is reported when the test passed.
        if reverted is not None and not test_failed:
            fail(reverted)


def revert(applied: list[AppliedFault]) -> str | None:
    """Revert the markers' faults, newest first, each whatever the others did; the first
    failure as a message, or None."""
    from pytest_chaos.apply import revert_errors

    problem: str | None = None
    for handle in reversed(applied):
        try:
            handle.revert()
        except revert_errors() as error:
            problem = problem or f"pytest-chaos: could not revert {handle.fault}: {error}"
    return problem


# ------------------------------------------------------------------------- chaos fixture
def open_chaos(request: pytest.FixtureRequest, server: Any) -> Chaos:
    """The test's `chaos` object, seeded for this test."""
    from pytest_chaos.backends.client import ToxiproxyError
    from pytest_chaos.chaos import Chaos
    from pytest_chaos.seeds import replay_command, test_seed

    config = request.config
    settings = config.stash[config_key]
    nodeid = request.node.nodeid
    problem: str | None = None
    try:
        # The registry is looked up when a service is named, not now: a test's services may
        # be set up after this fixture, and a run without services never imports them.
        instance = Chaos(
            server,
            settings.seed,
            lambda: config.stash.get(services_key, None),
            test_seed=test_seed(settings.seed, nodeid),
            replay=replay_command(nodeid, settings.seed),
            dns=lambda create: dns_of(config, server, create=create),
        )
    except ToxiproxyError as error:
        problem = f"pytest-chaos: {error.message}"
    if problem is not None:
        fail(problem)
    request.node.stash[chaos_key] = instance
    return instance


def close_chaos(chaos: Chaos) -> None:
    """Revert what the test left applied; a failure fails the test's teardown."""
    from pytest_chaos.apply import revert_errors

    problem: str | None = None
    try:
        chaos.revert_all()
    except revert_errors() as error:
        problem = f"pytest-chaos: could not revert this test's faults: {error}"
    if problem is not None:
        fail(problem)


# ------------------------------------------------------------------------------------ DNS
def open_dns(config: pytest.Config) -> None:
    """At configure: the names of `chaos_hosts`, for the whole session (nothing else is made
    or imported when there are none)."""
    settings = config.stash[config_key]
    if not settings.hosts:
        return
    from pytest_chaos.dns.session import load_hosts, session_of

    session = session_of(config)
    assert session is not None
    load_hosts(session, settings.hosts)


def dns_of(config: pytest.Config, server: Any, *, create: bool) -> DnsSession | None:
    """The session's DNS, its proxy names resolved through `server` (made when `create`)."""
    from pytest_chaos._keys import dns_key

    if not create and config.stash.get(dns_key, None) is None:
        return None  # and nothing of the DNS layers imported
    from pytest_chaos.dns.session import session_of

    session = session_of(config, create=create)
    if session is not None:
        attach_dns(config, server)
    return session


def attach_dns(config: pytest.Config, server: Any) -> None:
    """Names given as proxy names (`chaos_hosts`) resolve to the proxies of `server`."""
    from pytest_chaos._keys import dns_key

    session = config.stash.get(dns_key, None)
    if session is not None and not session.has_proxies:
        from pytest_chaos.dns.session import proxy_lookup

        session.use_proxies(proxy_lookup(server))


def close_dns(config: pytest.Config) -> None:
    """At the end of the run: stop the DNS server, give the socket module its functions back."""
    if "pytest_chaos.dns.session" in sys.modules:
        from pytest_chaos.dns.session import close_session

        close_session(config)
