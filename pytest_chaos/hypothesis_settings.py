"""Hypothesis settings for chaos tests: the `chaos-ci` profile, and what a Hypothesis test that
uses the `chaos` fixture gets without asking for it.

- **No deadline.** Faults make an example's duration vary by design; Hypothesis's default
  deadline (200 ms) would report that as a failure. A deadline the test or the loaded profile
  chose (anything but that default) is kept.
- **No function-scoped-fixture health check for `chaos`.** Hypothesis fails a `@given` test
  that takes a function-scoped fixture, because the fixture is not reset between examples.
  `chaos` needs no reset: `chaos.apply` reverts each example's faults at the end of its block,
  and starts a fresh record for the next example; nor do service fixtures
  (`service_fixture(...)`), whose processes `chaos.apply` brings back. A function-scoped
  fixture of the test's own still fails the check, with a message naming it (Hypothesis's
  would name `chaos`, the first function-scoped fixture it finds).

Both are applied at collection to the settings the test already has (those of its `@settings`
or of the loaded profile), the way Hypothesis's own pytest plugin adjusts parametrized tests.

`chaos-ci` (`pytest --hypothesis-profile chaos-ci`) is registered when Hypothesis is imported,
through Hypothesis's `hypothesis` entry point, so the plugin itself never imports Hypothesis.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

CI_PROFILE = "chaos-ci"


def register_profiles() -> None:
    """Register `chaos-ci`: 25 examples, the same ones on every run (derandomized, so a CI
    failure replays with the same command, and no database is needed), no deadline, the
    `@reproduce_failure` blob printed with every failure, and the phases that find and shrink
    (no explain phase: it re-runs examples, each of which costs fault time)."""
    from hypothesis import Phase, settings

    settings.register_profile(
        CI_PROFILE,
        max_examples=25,
        derandomize=True,
        deadline=None,
        print_blob=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )


def _hypothesis_setup_hook() -> None:
    """Hypothesis's entry point (`[project.entry-points.hypothesis]`), run when it is imported."""
    register_profiles()


def settle(item: pytest.Item, example_safe: Collection[str]) -> None:
    """Give the Hypothesis test `item`, which uses chaos (the fixture, a fault marker or a
    service), no deadline unless it chose one, and Hypothesis's function-scoped-fixture health
    check for its own fixtures only (`example_safe`: `chaos` and the service fixtures are
    not); see the module's docstring."""
    from hypothesis import HealthCheck, settings

    from pytest_chaos._keys import unsafe_fixtures_key

    test = getattr(item, "obj", None)
    function: Any = getattr(test, "__func__", test)
    if not getattr(function, "is_hypothesis_test", False):
        return
    current: Any = getattr(function, "_hypothesis_internal_use_settings", None) or settings.default
    changes: dict[str, Any] = {}
    if current.deadline == settings.get_profile("default").deadline:
        changes["deadline"] = None
    suppressed = list(current.suppress_health_check)
    if HealthCheck.function_scoped_fixture not in suppressed:
        # Hypothesis's own check would name `chaos`, the first function-scoped fixture it
        # finds; `unsafe_fixtures_message` names the test's own ones instead.
        changes["suppress_health_check"] = [*suppressed, HealthCheck.function_scoped_fixture]
        unsafe = _unsafe_fixtures(item, example_safe)
        if unsafe:
            item.stash[unsafe_fixtures_key] = unsafe
    if changes:
        function._hypothesis_internal_use_settings = settings(current, **changes)


def unsafe_fixtures_message(item: pytest.Item) -> str | None:
    """Hypothesis's function-scoped-fixture health check, naming the test's own fixtures
    only: the message to fail the test with before its body runs, or None."""
    from pytest_chaos._keys import unsafe_fixtures_key

    unsafe = item.stash.get(unsafe_fixtures_key, None)
    if not unsafe:
        return None
    names = ", ".join(repr(name) for name in unsafe)
    plural = "s" if len(unsafe) > 1 else ""
    return (
        f"Hypothesis health check (function_scoped_fixture): {item.nodeid!r} uses the"
        f" function-scoped fixture{plural} {names}, set up once for all the examples of the"
        " test, not once per example. (The `chaos` fixture is fine: chaos.apply reverts each"
        " example's faults.) Give it a wider scope (scope='session'), or, if sharing it"
        " between examples is safe, suppress this check with"
        " @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])."
    )


def _unsafe_fixtures(item: pytest.Item, example_safe: Collection[str]) -> list[str]:
    """The function-scoped fixtures among the test's arguments that are not example-safe."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    unsafe = []
    for name in info.argnames:
        definitions = info.name2fixturedefs.get(name)
        if definitions and definitions[-1].scope == "function" and name not in example_safe:
            unsafe.append(name)
    return unsafe
