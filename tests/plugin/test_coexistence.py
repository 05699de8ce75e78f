"""pytest-chaos beside other plugins that claim its option names.

ordeal (a Hypothesis chaos library on PyPI) registers `--chaos-seed` in a group of its own;
two plugins adding one option used to crash pytest at start. The stand-in below registers the
option exactly as ordeal 0.3 does, under the same package and entry-point name, installed as a
distribution (so pytest loads it through its entry point, in whatever order) or given with -p
(so it loads before pytest-chaos).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

STAND_IN_PLUGIN = """
import pytest


def pytest_addoption(parser):
    group = parser.getgroup("ordeal", "Chaos testing with ordeal")
    group.addoption("--chaos", action="store_true", default=False)
    group.addoption("--chaos-seed", type=int, default=None)


def pytest_report_header(config):
    return f"stand-in ordeal: chaos_seed={config.getoption('chaos_seed')}"
"""

TEST_FILE = """
def test_seeded(chaos):
    assert chaos.seed == 42
"""


def install_stand_in(root: Path) -> Path:
    """A site directory holding the package `ordeal` and its distribution metadata with a
    pytest11 entry point, as `pip install ordeal` leaves them."""
    site = root / "site"
    package = site / "ordeal"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(STAND_IN_PLUGIN))
    info = site / "ordeal-0.3.39.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ordeal\nVersion: 0.3.39\n")
    (info / "entry_points.txt").write_text("[pytest11]\nordeal = ordeal.plugin\n")
    return site


@pytest.mark.parametrize("loaded", ["by entry point", "with -p, before pytest-chaos"])
def test_seed_option_shared_with_ordeal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, loaded: str
) -> None:
    site = install_stand_in(pytester.path)
    pytester.makepyfile(test_seeded=TEST_FILE)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    extra = ["-p", "ordeal"] if loaded.startswith("with -p") else []
    result = pytester.runpytest_subprocess(*extra, "--chaos-seed", "42", "-p", "no:cacheprovider")
    # Both plugins read the one option (the header lines come in plugin order).
    result.stdout.fnmatch_lines(["chaos: backend=embedded seed=42"])
    result.stdout.fnmatch_lines(["stand-in ordeal: chaos_seed=42"])
    result.assert_outcomes(passed=1)


def test_own_option_when_ordeal_is_disabled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = install_stand_in(pytester.path)
    pytester.makepyfile(test_seeded=TEST_FILE)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    result = pytester.runpytest_subprocess(
        "-p", "no:ordeal", "--chaos-seed", "42", "-p", "no:cacheprovider"
    )
    result.stdout.fnmatch_lines(["chaos: backend=embedded seed=42"])
    result.stdout.no_fnmatch_line("*stand-in ordeal*")
    result.assert_outcomes(passed=1)
