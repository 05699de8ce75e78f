"""`ChaosMachine`: nemesis rules mixed with the user's own, against a real Redis started by the
plugin; the planted bug is found, each step shows its faults, and every run is healed."""

from __future__ import annotations

import shutil

import pytest

from tests.plugin.conftest import dedent, make_ini

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (scripts/setup.sh installs it)",
)

CONFTEST = dedent(
    """
    from pytest_chaos.services import redis_service, service_fixture

    redis_server = service_fixture(redis_service(), name="redis_server")
    """
)

# The planted bug: `add` retries INCRBY after a connection error, and INCRBY is not
# idempotent. When the reply is lost (the connection reset after Redis applied the command)
# and the retry goes through, the counter moves twice.
COUNTER = dedent(
    """
    import redis
    from hypothesis import Phase, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import initialize, invariant, rule
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from pytest_chaos.stateful import ChaosMachine, run_chaos_machine
    from pytest_chaos.strategies import resets


    class Counter(ChaosMachine):
        def __init__(self, chaos, server):
            super().__init__(
                chaos,
                targets=["redis"],
                faults=resets(["redis"], max_value=0, min_toxicity=0.5, max_toxicity=0.5),
            )
            proxy = chaos.client.get_proxy("redis")
            assert (proxy.toxics, proxy.enabled) == ((), True), "the last run was not healed"
            self.direct = redis.Redis(host=server.service.host, port=server.service.port)
            self.direct.delete("counter")
            self.client = redis.Redis(
                host=server.host, port=server.port, socket_timeout=0.5,
                retry=Retry(NoBackoff(), 2), retry_on_error=[redis.ConnectionError],
            )
            self.low = self.high = 0  # what the counter may read: unknown outcomes widen it

        @initialize()
        def connect(self):
            self.client.ping()

        @rule(amount=st.integers(1, 3))
        def add(self, amount):
            try:
                self.client.incrby("counter", amount)
            except redis.RedisError:
                self.high += amount
                return
            self.low += amount
            self.high += amount

        @invariant()
        def counted_once(self):
            value = int(self.direct.get("counter") or 0)
            assert self.low <= value <= self.high, f"{value} not in {self.low}..{self.high}"

        def teardown(self):
            super().teardown()
            self.client.close()
            self.direct.close()


    SETTINGS = settings(
        max_examples=100,
        stateful_step_count=5,
        derandomize=True,
        phases=[Phase.generate, Phase.shrink],
    )


    def test_counter(chaos, redis_server):
        run_chaos_machine(lambda: Counter(chaos, redis_server), settings=SETTINGS)


    def test_healed_after_the_machine(chaos, toxiproxy):
        proxy = toxiproxy.proxies()["redis"]
        assert (proxy.toxics, proxy.enabled) == ((), True)
    """
)


def test_the_nemesis_finds_the_planted_bug_and_shows_the_faults_of_each_step(
    pytester: pytest.Pytester,
) -> None:
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_counter=COUNTER)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1, passed=1)
    # The shrunk program: the counter is used, the nemesis resets its connection, the next
    # add is applied twice; the faults of each step beside it.
    result.stdout.fnmatch_lines(
        [
            "E   *AssertionError: * not in *",
            "E *# Counter: engine seed *, drawn for this run; faults on redis, services none",
            "E *state = Counter()",
            "E *state.connect()  # faults: none",
            "E *state.start_fault(fault=ResetPeer('redis', toxicity=0.5))"
            "  # faults: reset_peer('redis', toxicity=0.5)",
            "E *state.add(amount=1)  # faults: reset_peer('redis', toxicity=0.5)",
            "E *state.teardown()",
            "E *# healed at the end of the run: reset_peer('redis', toxicity=0.5)",
        ]
    )
    # The chaos timeline of the failing run: the connection reset, and the retry.
    result.stdout.fnmatch_lines(
        [
            "*- chaos timeline -*",
            "times from the start of the example; seed *",
            "*applied  reset_peer('redis', toxicity=0.5)",
            "*redis#* reset by toxic chaos_example_reset_peer_downstream_1 (reset_peer)*",
            "*reverted reset_peer('redis', toxicity=0.5)",
        ]
    )


def test_process_nemeses_kill_and_pause_and_every_run_is_healed(
    pytester: pytest.Pytester,
) -> None:
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_pinger=dedent(
            """
            import redis
            from hypothesis import Phase, settings
            from hypothesis.stateful import rule

            from pytest_chaos.stateful import ChaosMachine, run_chaos_machine

            SEEN = set()


            class Pinger(ChaosMachine):
                def __init__(self, chaos, server):
                    super().__init__(chaos, services=["redis"])
                    assert server.running and not server.paused, "the last run was not healed"
                    self.client = redis.Redis(
                        host=server.host, port=server.port, socket_timeout=0.3,
                        socket_connect_timeout=0.3, retry=None,
                    )

                @rule()
                def ping(self):
                    SEEN.add(tuple(f.mode for f in self.active_faults))
                    try:
                        answered = self.client.ping()
                    except (redis.ConnectionError, redis.TimeoutError):
                        answered = False
                    assert answered == (not self.is_down("redis"))

                def teardown(self):
                    super().teardown()
                    self.client.close()


            def test_pinger(chaos, redis_server):
                run_chaos_machine(
                    lambda: Pinger(chaos, redis_server),
                    settings=settings(max_examples=12, stateful_step_count=6, derandomize=True),
                )
                assert {("kill",), ("pause",)} <= SEEN
                assert redis_server.running and not redis_server.paused
            """
        )
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
