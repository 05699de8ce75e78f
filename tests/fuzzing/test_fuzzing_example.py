"""The example of examples/fuzzing, run against real Redis and PostgreSQL servers: Hypothesis
finds the fragile fallback's bug, and shrinks it to at most two faults, each the weakest of
its kind that still breaks the code (one step kinder, and the code survives)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.plugin.conftest import dedent, make_ini

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fuzzing"

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("initdb") is None,
    reason="redis-server and PostgreSQL's initdb are needed (scripts/setup.sh installs them)",
)

CHECKS = dedent(
    r'''
    import dataclasses

    import redis
    from prices import FragilePriceService
    from test_prices import a_price_is_answered, find_the_fallback_bug

    from pytest_chaos.faults import NETWORK_DOWN_MODES, Down, Slicer
    from pytest_chaos.strategies import HARM_ORDER_OF_MODES

    # The bounds of the example's strategy (test_prices.ONE_FAULT), for one step kinder.
    KINDER_UP = {"LimitData": ("bytes", 10_000), "Bandwidth": ("rate", 1000)}
    KINDER_DOWN = {"Latency": "ms", "ResetPeer": "timeout", "Stall": "timeout"}


    def kinder(fault):
        """The fault one step toward harmless in the example's strategy, or None."""
        name = type(fault).__name__
        if name in KINDER_UP:
            option, top = KINDER_UP[name]
            value = getattr(fault, option)
            return dataclasses.replace(fault, **{option: value + 1}) if value < top else None
        if name in KINDER_DOWN:
            value = getattr(fault, KINDER_DOWN[name])
            return dataclasses.replace(fault, **{KINDER_DOWN[name]: value - 1}) if value else None
        if isinstance(fault, Down):
            modes = [m for m in HARM_ORDER_OF_MODES if m in NETWORK_DOWN_MODES]
            index = modes.index(fault.mode)
            return dataclasses.replace(fault, mode=modes[index - 1]) if index else None
        assert isinstance(fault, Slicer), fault
        return None if fault.average_size >= 1024 else dataclasses.replace(
            fault, average_size=fault.average_size + 1
        )


    def breaks(chaos, shop, faults):
        try:
            a_price_is_answered(FragilePriceService(shop), chaos, faults)
        except redis.ConnectionError:
            return True
        return False


    def test_the_shrunk_faults_are_the_weakest_pair_that_breaks_the_fallback(chaos, shop):
        error, shrunk = find_the_fallback_bug(chaos, shop)
        print("shrunk to:", ", ".join(map(str, shrunk)))
        assert len(shrunk) <= 2
        assert sorted(fault.target for fault in shrunk) == ["postgres", "redis"]
        # What Hypothesis reports: the shrunk example, and the seed the engine drew from.
        assert error.__notes__[:2] == [
            "Failing test case: fragile_price_is_always_answered(\n"
            f"    chosen=[{', '.join(fault.as_python() for fault in shrunk)}],\n)",
            f"chaos.apply, engine seed 0; faults: {', '.join(map(str, shrunk))}",
        ]
        # Under CI, Hypothesis's own "ci" profile (print_blob=True) adds its replay line.
        assert all("@reproduce_failure(" in note for note in error.__notes__[2:])
        # The pair breaks the code, each time.
        assert breaks(chaos, shop, shrunk)
        assert breaks(chaos, shop, shrunk)
        for index, fault in enumerate(shrunk):
            others = shrunk[:index] + shrunk[index + 1:]
            # Both are needed ...
            assert not breaks(chaos, shop, others), f"{others} alone breaks it"
            # ... and each is the weakest of its kind that does.
            softer = kinder(fault)
            if softer is not None:
                assert not breaks(chaos, shop, [*others, softer]), f"{softer} still breaks it"
    '''
)


def test_fuzzing_shrinks_the_bug_to_the_weakest_two_faults(pytester: pytest.Pytester) -> None:
    make_ini(pytester, "chaos_services = local")
    for name in ("conftest.py", "catalogue.py", "prices.py", "test_prices.py"):
        (pytester.path / name).write_text((EXAMPLE / name).read_text())
    pytester.makepyfile(test_shrunk=CHECKS)
    result = pytester.runpytest_subprocess("-s", "test_shrunk.py")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*shrunk to: *('redis'*), *('postgres'*)"])
