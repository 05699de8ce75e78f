"""`chaos.apply`: a fault, faults at once, or a schedule on a timer, for one `with` block, and
always reverted at its end. (Inside Hypothesis examples: test_hypothesis_tests.py.)"""

from __future__ import annotations

import pytest

from tests.plugin.conftest import dedent


def test_faults_apply_together_for_the_block_and_are_reverted_after_it(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        test_apply=dedent(
            """
            from netcheck import leftovers, talk, toxics_of
            from pytest_chaos.faults import Down, Latency, LimitData

            def test_one(echo, chaos, toxiproxy):
                with chaos.apply(Latency("echo", 1)) as block:
                    latency = ("latency", "downstream", 1.0, {"latency": 1, "jitter": 0})
                    assert toxics_of(toxiproxy) == [latency]
                    assert block.active == [Latency("echo", 1)] and block.finished
                assert leftovers(toxiproxy) == {}

            def test_several(echo, chaos, toxiproxy):
                faults = [LimitData("echo", 2), Latency("echo", 1, stream="upstream")]
                with chaos.apply(iter(faults)) as block:
                    assert sorted(t[0] for t in toxics_of(toxiproxy)) == ["latency", "limit_data"]
                    assert talk(echo).outcome == "eof"
                    assert block.active == faults
                assert leftovers(toxiproxy) == {}
                assert talk(echo).outcome == "ok"

            def test_reverted_when_the_block_raises(echo, chaos, toxiproxy):
                try:
                    with chaos.apply([Down("echo"), Latency("echo", 1)]):
                        raise KeyError("the block's own error")
                except KeyError as error:
                    assert error.args == ("the block's own error",)
                assert leftovers(toxiproxy) == {}
                assert [str(a.fault) for a in chaos.applied if not a.active] == [
                    "dependency_down('echo')", "latency('echo', ms=1)"
                ]
            """
        )
    )
    suite.runpytest_inprocess().assert_outcomes(passed=3)


# Its steps are timed against the clock with a quarter second of room. Seen once on a
# clean-clone CI run beside two workers: every step a second late together, as when a
# connect's SYN is dropped and retried after the kernel's 1 s initial timeout. So a run may
# be retried; a schedule that misses its offsets fails every run.
@pytest.mark.flaky(reruns=2)
def test_a_schedule_runs_on_a_timer_from_the_start_of_the_block(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_schedule=dedent(
            """
            import time

            import pytest
            from netcheck import leftovers
            from pytest_chaos.faults import Down, FaultError, Latency, RawToxic
            from pytest_chaos.schedules import Schedule, Step

            def test_steps_at_their_offsets(echo, chaos, toxiproxy):
                schedule = Schedule([
                    Step(Down("echo"), offset=0.4, duration=0.2),
                    Step(Latency("echo", 1), offset=0.1, duration=0.2),
                ])
                with chaos.apply(schedule) as block:
                    assert block.active == [] and not block.finished
                    assert block.wait(timeout=10)
                    assert block.active == [] and block.finished
                assert [str(a.fault) for a in chaos.applied] == [
                    "latency('echo', ms=1)", "dependency_down('echo')"
                ]
                # Times from the start of the block, with room for a busy machine.
                start = block._started_at
                latency, down = chaos.applied
                assert 0.1 <= latency.applied_at - start < 0.35
                assert 0.3 <= latency.reverted_at - start < 0.55
                assert 0.4 <= down.applied_at - start < 0.65
                assert 0.6 <= down.reverted_at - start < 0.85
                assert leftovers(toxiproxy) == {}

            def test_the_end_of_the_block_ends_the_schedule(echo, chaos, toxiproxy):
                schedule = [
                    Step(Latency("echo", 1), duration=30),
                    Step(Down("echo"), offset=30, duration=1),
                ]
                started = time.monotonic()
                with chaos.apply(schedule) as block:
                    while not block.active:
                        time.sleep(0.01)
                    assert block.active == [Latency("echo", 1)]
                assert time.monotonic() - started < 5
                assert leftovers(toxiproxy) == {}
                assert [str(a.fault) for a in chaos.applied] == ["latency('echo', ms=1)"]
                assert not block.finished

            def test_a_failed_step_ends_the_schedule_and_the_block_raises(echo, chaos, toxiproxy):
                schedule = [
                    Step(RawToxic("echo", "no_such_toxic"), offset=0.05, duration=1),
                    Step(Latency("echo", 1), offset=0.01, duration=5),
                ]
                with pytest.raises(FaultError) as raised:
                    with chaos.apply(schedule) as block:
                        assert block.wait(timeout=10)
                assert str(raised.value).startswith(
                    "toxic: the server refused toxic('echo', type='no_such_toxic'): "
                )
                assert leftovers(toxiproxy) == {}
            """
        )
    )
    suite.runpytest_inprocess().assert_outcomes(passed=3)


def test_a_seed_given_to_apply_seeds_the_engine(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_seeded=dedent(
            """
            import httpx
            from pytest_chaos.faults import Latency
            from pytest_chaos.schedules import Schedule, Step

            def seed(toxiproxy):
                return httpx.get(f"{toxiproxy.url}/seed").json()["seed"]

            def test_seeds(echo, chaos, toxiproxy):
                with chaos.apply(Latency("echo", 1), seed=41):
                    assert seed(toxiproxy) == 41
                with chaos.apply(Schedule([Step(Latency("echo", 1), duration=0.01)], seed=42)):
                    assert seed(toxiproxy) == 42
            """
        )
    )
    suite.runpytest_inprocess().assert_outcomes(passed=1)


def test_mistakes_are_reported_at_the_users_line(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_mistakes=dedent(
            """
            from pytest_chaos.faults import Down, Latency
            from pytest_chaos.schedules import Step

            def test_not_a_fault(echo, chaos):
                chaos.apply([Latency("echo", 1), "latency"])

            def test_unknown_target(echo, chaos):
                with chaos.apply([Latency("echo", 1), Latency("ecco", 1)]):
                    pass

            def test_down_twice(echo, chaos):
                with chaos.apply([Down("echo"), Down("echo", mode="blackhole")]):
                    pass

            def test_overlapping_downs(echo, chaos):
                down = Down("echo")
                chaos.apply([Step(down, duration=2), Step(down, offset=1, duration=9)])

            def test_bad_seed(echo, chaos):
                chaos.apply(Latency("echo", 1), seed=-1)
            """
        )
    )
    result = suite.runpytest_inprocess("--tb=line")
    result.assert_outcomes(failed=5)
    output = result.stdout.str()
    for line in (
        "test_mistakes.py:5: pytest_chaos.faults.FaultError: chaos.apply takes a fault, an"
        " iterable of faults, a Schedule or an iterable of Steps, got [Latency(target='echo',"
        " stream='downstream', toxicity=1.0, ms=1, jitter=0), 'latency']",
        "test_mistakes.py:8: pytest_chaos.faults.FaultError: latency: target 'ecco' names no"
        " known proxy; known proxies: echo (",
        "test_mistakes.py:12: pytest_chaos.faults.FaultError: chaos.apply:"
        " dependency_down('echo') and dependency_down('echo', mode='blackhole') at once; a"
        " target can be down in one way at a time",
        "test_mistakes.py:17: pytest_chaos.faults.FaultError: schedule: 0.000 - 2.000 "
        " dependency_down('echo') and 1.000 - 10.000  dependency_down('echo') overlap; a target"
        " can be down in one way at a time",
        "test_mistakes.py:20: pytest_chaos.faults.FaultError: chaos.apply: seed must be None"
        " or a whole number from 0 to 2**63-1, got -1",
    ):
        assert line in output
    # Nothing was applied by any of them.
    assert "applied" not in output
