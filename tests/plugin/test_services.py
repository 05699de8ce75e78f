"""Services declared in conftest.py with `service_fixture`, hurt through the plugin: the
`dependency_down` process modes, `chaos.kill()` and friends mid-test, and the check that
brings a service back before the next test that uses it. Real servers, started by the plugin
itself through both providers (local binaries, and containers of the images that
scripts/docker-setup.sh builds from the same binaries), and real clients (redis-py, psycopg),
in inner pytest runs. The container variants skip, with the reason, where Docker or the local
images are missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time

import psutil
import pytest

from tests.plugin.conftest import dedent, exact, make_ini

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)

SERVICES_CONFTEST = """
from pytest_chaos.services import postgres_service, redis_service, service_fixture

redis = service_fixture(redis_service())
postgres = service_fixture(postgres_service())
"""
# Images built from this machine's own binaries by scripts/docker-setup.sh (no registry here).
LOCAL_IMAGES = {"redis": "pytest-chaos/redis:local", "postgres": "pytest-chaos/postgres:local"}


def _container_skip_reason() -> str | None:
    from pytest_chaos._docker import docker_unavailable_reason, image_present

    reason = docker_unavailable_reason()
    if reason is not None:
        return f"Docker is not available: {reason}"
    missing = [image for image in LOCAL_IMAGES.values() if not image_present(image)]
    if missing:
        return f"images {', '.join(missing)} are not built; run scripts/docker-setup.sh"
    return None


def _leftover_containers() -> list[str]:
    from pytest_chaos import _docker

    if _docker.docker_unavailable_reason() is not None:
        return []
    found = _docker.client().containers.list(
        all=True, filters={"label": f"{_docker.SESSION_LABEL}={_docker.SESSION_ID}"}
    )
    return [c.name for c in found]


def _children_of_this_process() -> set[int]:
    """Live descendants of the test process, but for the container watchdog: it is started
    once per process with the first container, and stays until the process exits, by design."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone meanwhile
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if "pytest_chaos._reaper" not in child.cmdline():
                found.add(child.pid)
    return found


def _describe(pids: set[int]) -> str:
    """Each pid with its command line, to tell which server was left."""
    described = []
    for pid in sorted(pids):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            command = "(gone)"
        described.append(f"{pid} {command}")
    return "; ".join(described)


@pytest.fixture(params=["local", "container"])
def provider(request: pytest.FixtureRequest) -> str:
    if request.param == "container":
        reason = _container_skip_reason()
        if reason is not None:
            pytest.skip(reason)
    return str(request.param)


@pytest.fixture
def services(pytester: pytest.Pytester, provider: str) -> pytest.Pytester:
    images = "".join(f"\n    {name} = {image}" for name, image in LOCAL_IMAGES.items())
    make_ini(pytester, f"chaos_services = {provider}\nchaos_images ={images}")
    pytester.makeconftest(SERVICES_CONFTEST)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    before = _children_of_this_process()
    result = pytester.runpytest_inprocess(*args)
    # A process killed at the very end may still be on its way out: give it a moment.
    deadline = time.monotonic() + 3
    while (left := _children_of_this_process() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind by the inner run: {_describe(left)}"
    containers = _leftover_containers()
    assert not containers, f"containers left behind by the inner run: {containers}"
    return result


def test_service_is_reached_through_its_proxy(services: pytest.Pytester) -> None:
    services.makepyfile(
        dedent(
            """
            import time
            import pytest
            import redis as redis_py

            def test_addresses(redis, toxiproxy, pytestconfig):
                assert redis.provider == pytestconfig.getini("chaos_services")
                proxy = toxiproxy.proxies()["redis"]
                assert proxy.upstream == redis.direct
                assert redis.address == f"{proxy.host}:{proxy.port}" != redis.direct
                assert redis.url == f"redis://{redis.address}/0"
                assert redis_py.Redis.from_url(redis.url).ping()

            @pytest.mark.latency("redis", 300)
            def test_latency_marker_reaches_the_service(redis):
                client = redis_py.Redis.from_url(redis.url)
                started = time.monotonic()
                client.ping()
                assert time.monotonic() - started >= 0.29
            """
        )
    )
    run(services).assert_outcomes(passed=2)


def test_kill_marker_then_the_next_test_finds_it_serving(services: pytest.Pytester) -> None:
    services.makepyfile(
        dedent(
            """
            import pytest
            import redis as redis_py

            RUN_IDS = []

            def run_id(url):
                # Random per server start: tells a restarted server from the old one, where
                # a pid would not (in a container the server is pid 1 every time).
                return redis_py.Redis.from_url(url).info("server")["run_id"]

            def test_first(redis):
                RUN_IDS.append(run_id(redis.url))

            @pytest.mark.dependency_down("redis", mode="kill")
            def test_killed(redis):
                assert not redis.running
                with pytest.raises(redis_py.ConnectionError):
                    redis_py.Redis.from_url(redis.url, socket_timeout=2).ping()

            def test_after(redis):
                assert redis.running
                assert run_id(redis.url) != RUN_IDS[0]
            """
        )
    )
    run(services, "-p", "no:randomly").assert_outcomes(passed=3)


@pytest.mark.parametrize("mode", ["terminate", "stop"])
def test_graceful_modes_take_it_down_for_the_test_only(
    services: pytest.Pytester, mode: str
) -> None:
    services.makepyfile(
        dedent(
            f"""
            import pytest
            import redis as redis_py

            @pytest.mark.dependency_down("redis", mode="{mode}")
            def test_down(redis):
                assert not redis.running
                with pytest.raises(redis_py.ConnectionError):
                    redis_py.Redis.from_url(redis.direct_url, socket_timeout=2).ping()

            def test_back(redis):
                assert redis_py.Redis.from_url(redis.url).ping()
            """
        )
    )
    run(services).assert_outcomes(passed=2)


def test_client_with_retries_rides_out_a_restart(services: pytest.Pytester) -> None:
    services.makepyfile(
        dedent(
            """
            import threading
            import time
            import redis as redis_py
            from redis.backoff import ExponentialBackoff, NoBackoff
            from redis.retry import Retry

            def workload(client, errors, stop):
                while not stop.is_set():
                    try:
                        client.incr("counter")
                    except redis_py.RedisError as error:
                        errors.append(error)

            def restart_during_workload(client, chaos):
                errors, stop = [], threading.Event()
                worker = threading.Thread(target=workload, args=(client, errors, stop))
                worker.start()
                time.sleep(0.3)
                chaos.restart("redis")
                time.sleep(0.3)
                stop.set()
                worker.join(10)
                return errors

            def test_with_retries(redis, chaos):
                client = redis_py.Redis.from_url(
                    redis.url,
                    socket_timeout=2,
                    retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), 30),
                    retry_on_error=[redis_py.ConnectionError, redis_py.TimeoutError],
                )
                assert restart_during_workload(client, chaos) == []
                assert int(client.get("counter")) > 0  # it carried on after the restart

            def test_without_retries(redis, chaos):
                client = redis_py.Redis.from_url(
                    redis.url, socket_timeout=2, retry=Retry(NoBackoff(), 0)
                )
                errors = restart_during_workload(client, chaos)
                assert errors and all(isinstance(e, redis_py.ConnectionError) for e in errors)
            """
        )
    )
    run(services).assert_outcomes(passed=2)


def test_pause_hangs_a_client_without_timeout_and_fails_one_with(
    services: pytest.Pytester,
) -> None:
    services.makepyfile(
        dedent(
            """
            import threading
            import time
            import pytest
            import redis as redis_py
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            def test_pause(redis, chaos):
                patient = redis_py.Redis.from_url(redis.url)  # no socket_timeout
                careful = redis_py.Redis.from_url(
                    redis.url, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
                )
                patient.ping(), careful.ping()
                answers = []
                with chaos.pause("redis"):
                    assert redis.paused and redis.running
                    waiter = threading.Thread(target=lambda: answers.append(patient.ping()))
                    waiter.start()
                    started = time.monotonic()
                    with pytest.raises(redis_py.TimeoutError):
                        careful.ping()
                    assert time.monotonic() - started < 2
                    waiter.join(1.5)
                    assert waiter.is_alive() and not answers  # still waiting: it hangs
                waiter.join(10)
                assert answers == [True]  # resumed at the end of the block: it answers
                assert not redis.paused
            """
        )
    )
    run(services).assert_outcomes(passed=1)


def test_kill_mid_transaction_then_the_next_fixture_is_healthy(
    services: pytest.Pytester,
) -> None:
    services.makepyfile(
        dedent(
            """
            import psycopg
            import pytest

            def test_kill_in_transaction(postgres, chaos):
                with psycopg.connect(postgres.url, autocommit=True) as setup:
                    setup.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
                    setup.execute("INSERT INTO kept VALUES (1)")
                connection = psycopg.connect(postgres.url)
                connection.execute("INSERT INTO kept VALUES (2)")  # not committed
                chaos.kill("postgres")
                with pytest.raises(psycopg.OperationalError):
                    connection.execute("SELECT 1")
                    connection.commit()
                connection.close()

            def test_next(postgres):
                with psycopg.connect(postgres.url, connect_timeout=5) as connection:
                    rows = connection.execute("SELECT n FROM kept ORDER BY n").fetchall()
                assert rows == [(1,)]  # committed data survived; the open transaction did not
            """
        )
    )
    run(services).assert_outcomes(passed=2)


def test_a_test_that_kills_it_directly_does_not_break_the_next(
    services: pytest.Pytester,
) -> None:
    services.makepyfile(
        dedent(
            """
            import redis as redis_py

            def test_breaks_it(redis):
                redis.kill()  # not through chaos: nothing reverts it at the end of this test

            def test_paused_too(redis):
                redis.pause()

            def test_finds_it_serving(redis):
                assert not redis.paused
                assert redis_py.Redis.from_url(redis.url, socket_timeout=2).ping()
            """
        )
    )
    run(services, "-p", "no:randomly").assert_outcomes(passed=3)


def test_process_fault_on_a_proxy_that_is_not_a_service(services: pytest.Pytester) -> None:
    services.makepyfile(
        dedent(
            """
            import pytest

            @pytest.mark.dependency_down("cache", mode="kill")
            def test_marker(redis, chaos):
                pass

            def test_call(redis, chaos):
                chaos.pause("nothing")
            """
        )
    )
    result = run(services)
    result.assert_outcomes(passed=0, errors=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            exact(
                "@pytest.mark.dependency_down: mode 'kill' acts on a service started by"
                " pytest-chaos, and 'cache' is not running in this session (running: redis);"
                " declare it with service_fixture() in conftest.py and request its fixture in"
                " the test"
            ),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*FaultError: dependency_down: mode 'pause' acts on a service started by pytest-chaos,"
            " and 'nothing' is not running in this session (running: redis)*"
        ]
    )


def test_external_service_takes_network_faults_only(
    services: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.servers import echo_server

    services.makepyfile(
        dedent(
            """
            import socket
            import pytest

            def test_external(redis, chaos):
                assert redis.provider == "external"
                with chaos.dependency_down("redis"):  # refuse, at the proxy: fine
                    with pytest.raises(ConnectionRefusedError):
                        socket.create_connection((redis.host, redis.port), timeout=2)
                chaos.kill("redis")
            """
        )
    )
    with echo_server() as (host, port):
        monkeypatch.setenv("CHAOS_EXTERNAL_REDIS", f"{host}:{port}")
        result = run(services)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*FaultError: dependency_down: cannot kill 'redis': kill() is not possible on an"
            " external address (127.0.0.1:*): the plugin did not start it; only network faults"
            " apply to it"
        ]
    )


def test_missing_binary_is_a_setup_error_naming_the_service(pytester: pytest.Pytester) -> None:
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(
        """
        from pytest_chaos.services import Recipe, ServiceDefinition, service_fixture

        cache = service_fixture(
            ServiceDefinition("cache", local=Recipe("cache", ["no-such-server", "{port}"]))
        )
        """
    )
    pytester.makepyfile("def test_it(cache):\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [exact("pytest-chaos: service 'cache': binary 'no-such-server' is not on PATH")]
    )


def test_readiness_that_never_passes_fails_fast_and_kills_the_process(
    pytester: pytest.Pytester,
) -> None:
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(
        """
        import sys
        from pytest_chaos.services import Recipe, ServiceDefinition, service_fixture

        sleeper = service_fixture(
            ServiceDefinition(
                "sleeper",
                local=Recipe(
                    "sleeper",
                    [sys.executable, "-c", "import time; time.sleep(60)"],
                    ready=lambda service: False,
                    ready_timeout=1,
                ),
            )
        )
        """
    )
    pytester.makepyfile("def test_it(sleeper):\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "pytest-chaos: service 'sleeper': not ready after 1s: the readiness"
            " check never passed; log:"
        ]
    )


def test_port_already_taken_names_the_port(pytester: pytest.Pytester) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        make_ini(pytester, "chaos_services = local")
        pytester.makeconftest(
            f"""
            import pytest
            from pytest_chaos.services import LocalProcess, redis_recipe

            def test_fixed_port():
                with pytest.raises(Exception) as raised:
                    LocalProcess(redis_recipe(), port={port}).start()
                assert str(raised.value) == (
                    "service 'redis': port {port} on 127.0.0.1 is already in use"
                )
            """
        )
        pytester.makepyfile("from conftest import test_fixed_port\n")
        run(pytester).assert_outcomes(passed=1)


def test_no_provider_fits(pytester: pytest.Pytester) -> None:
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(
        """
        from pytest_chaos.services import ContainerSpec, ServiceDefinition, service_fixture

        queue = service_fixture(
            ServiceDefinition("queue", container=ContainerSpec(image="rabbitmq:3", port=5672))
        )
        """
    )
    pytester.makepyfile("def test_it(queue):\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            exact(
                "pytest-chaos: service 'queue': has no local recipe"
                " (local=Recipe(...)) and chaos_services is 'local'; give it a recipe, run it"
                " in a container (--chaos-services container, with Docker), or name an external"
                " address with CHAOS_EXTERNAL_QUEUE=host:port"
            )
        ]
    )


def test_setup_time_process_fault_starts_its_service_first(pytester: pytest.Pytester) -> None:
    """A function-scoped service, so that the marker's fault at setup really has to start it
    (a session-scoped one would already run); and once its fixture has ended, reverting the
    fault must not start it again (the inner run's process check would catch that)."""
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(
        """
        from pytest_chaos.services import redis_service, service_fixture

        redis = service_fixture(redis_service(), scope="function")
        """
    )
    pytester.makepyfile(
        dedent(
            """
            import pytest

            @pytest.fixture
            def seen_at_setup(redis):
                return redis.running

            @pytest.mark.dependency_down("redis", mode="stop", when="setup")
            def test_down_before_fixtures(seen_at_setup, redis):
                assert seen_at_setup is False

            def test_killed_through_chaos(chaos, redis):
                chaos.kill("redis")

            def test_fresh_each_time(redis, toxiproxy):
                assert redis.running
                assert toxiproxy.proxies()["redis"].upstream == redis.direct
            """
        )
    )
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=3)


def test_one_test_cannot_use_two_services_of_one_name(pytester: pytest.Pytester) -> None:
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(
        """
        from pytest_chaos.services import redis_service, service_fixture

        redis = service_fixture(redis_service())
        cache = service_fixture(redis_service(), name="cache")
        """
    )
    pytester.makepyfile(
        dedent(
            """
            import redis as redis_py

            def test_both(redis, cache):
                pass

            def test_the_first_still_works(redis):
                assert redis_py.Redis.from_url(redis.url, socket_timeout=2).ping()
            """
        )
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            exact(
                "pytest-chaos: service 'redis': this test uses two services of that name"
                " (fixtures 'redis' and 'cache'); a service's name is its proxy's, so give one"
                " of them another name"
            )
        ]
    )


def test_a_service_that_cannot_come_back_fails_the_next_test_with_its_reason(
    pytester: pytest.Pytester,
) -> None:
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(
        """
        from pytest_chaos.services import Recipe, ServiceDefinition, redis_ready, service_fixture

        STARTS = []

        def ready_once(service):
            # Ready on the first start only: every later start never passes.
            if not STARTS or STARTS[-1] != service.pid:
                STARTS.append(service.pid)
            return len(STARTS) == 1 and redis_ready(service)

        flaky = service_fixture(
            ServiceDefinition(
                "flaky",
                local=Recipe(
                    "flaky",
                    ["redis-server", "--port", "{port}", "--bind", "{host}", "--save", ""],
                    ready=ready_once,
                    ready_timeout=1,
                ),
            )
        )
        """
    )
    pytester.makepyfile(
        dedent(
            """
            def test_kills_it(flaky):
                flaky.kill()

            def test_next(flaky):
                pass
            """
        )
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "pytest-chaos: service 'flaky': cannot serve this test: not ready after 1s: the"
            " readiness check never passed; log:"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_interrupted_run_leaves_no_server(pytester: pytest.Pytester) -> None:
    """Ctrl-C in the middle of a test: the services the run started are gone when it exits."""
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(SERVICES_CONFTEST)
    pytester.makepyfile(
        dedent(
            """
            import os, signal, time

            def test_interrupted(redis, postgres):
                print("PIDS", redis.service.pid, postgres.service.pid, flush=True)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            """
        )
    )
    result = pytester.runpytest_subprocess("-s")
    pids = [int(p) for p in result.stdout.str().split("PIDS", 1)[1].split()[:2]]
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"server {pid} outlived the interrupted run")


def test_container_services_behind_the_container_backend(pytester: pytest.Pytester) -> None:
    """Both in Docker: the Toxiproxy container dials the service's container on the Docker
    network, and is pointed at it again when a restart gives it a new address."""
    from pytest_chaos._docker import image_present

    reason = _container_skip_reason()
    if reason is None and not image_present("pytest-chaos/engine:local"):
        reason = "image pytest-chaos/engine:local is not built; run scripts/docker-setup.sh"
    if reason is not None:
        pytest.skip(reason)
    make_ini(
        pytester, f"chaos_services = container\nchaos_images =\n    redis = {LOCAL_IMAGES['redis']}"
    )
    pytester.makeconftest(SERVICES_CONFTEST)
    pytester.makepyfile(
        dedent(
            """
            import time
            import uuid
            import pytest
            import redis as redis_py

            OURS = uuid.uuid4().hex

            def test_through_the_container(redis, toxiproxy):
                assert toxiproxy.backend == "container"
                assert toxiproxy.proxies()["redis"].upstream == (
                    f"{redis.service.container_ip}:6379"
                )
                assert redis_py.Redis.from_url(redis.url).set("owner", OURS)

            @pytest.mark.latency("redis", 300)
            def test_latency(redis):
                client = redis_py.Redis.from_url(redis.url)
                started = time.monotonic()
                client.ping()
                assert time.monotonic() - started >= 0.29

            @pytest.mark.dependency_down("redis", mode="kill")
            def test_killed(redis):
                # The dead container's address leaves the Docker network: the proxy's dial
                # gets no answer at all, so the client times out rather than being refused.
                # Unless Docker gave the freed address to a container started meanwhile (by
                # the other xdist worker): then the client reaches a Redis that is not ours.
                client = redis_py.Redis.from_url(redis.url, socket_timeout=2)
                try:
                    owner = client.get("owner")
                except (redis_py.ConnectionError, redis_py.TimeoutError):
                    return
                assert owner != OURS.encode()

            def test_back(redis, toxiproxy):
                assert toxiproxy.proxies()["redis"].upstream == (
                    f"{redis.service.container_ip}:6379"
                )
                assert redis_py.Redis.from_url(redis.url, socket_timeout=5).ping()
            """
        )
    )
    result = run(
        pytester,
        "-p",
        "no:randomly",
        "--chaos-backend",
        "container",
        "--chaos-toxiproxy-image",
        "pytest-chaos/engine:local",
    )
    result.assert_outcomes(passed=4)


def test_process_faults_appear_in_the_timeline_of_a_failed_test(
    pytester: pytest.Pytester,
) -> None:
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(SERVICES_CONFTEST)
    pytester.makepyfile(
        dedent(
            """
            def test_fails(redis, chaos):
                chaos.restart("redis")
                with chaos.pause("redis"):
                    pass
                chaos.kill("redis")
                assert False, "see the timeline"
            """
        )
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*chaos timeline*",
            "*applied  dependency_down('redis', mode='stop')",
            "*reverted dependency_down('redis', mode='stop')",
            "*applied  dependency_down('redis', mode='pause')",
            "*reverted dependency_down('redis', mode='pause')",
            "*applied  dependency_down('redis', mode='kill')",
        ]
    )


def test_local_services_are_refused_behind_a_bridge_network_toxiproxy(
    pytester: pytest.Pytester,
) -> None:
    """A container on Docker's bridge cannot dial this machine's loopback: say so at setup,
    with the ways out, rather than let every connection fail."""
    from pytest_chaos._docker import docker_unavailable_reason, image_present

    reason = docker_unavailable_reason()
    if reason is None and not image_present("pytest-chaos/engine:local"):
        reason = "image pytest-chaos/engine:local is not built; run scripts/docker-setup.sh"
    if reason is not None:
        pytest.skip(reason)
    make_ini(pytester, "chaos_services = local")
    pytester.makeconftest(SERVICES_CONFTEST)
    pytester.makepyfile("def test_it(redis):\n    pass\n")
    result = run(
        pytester, "--chaos-backend", "container", "--chaos-toxiproxy-image",
        "pytest-chaos/engine:local",
    )  # fmt: skip
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "pytest-chaos: service 'redis': runs on this machine's loopback (127.0.0.1:*),"
            " which the Toxiproxy container on Docker's bridge network cannot reach; set"
            " chaos_toxiproxy_network = host, or run the service in a container"
            " (--chaos-services container)"
        ]
    )


def test_auto_with_docker_and_a_missing_image_says_how_to_use_the_binary(
    pytester: pytest.Pytester,
) -> None:
    from pytest_chaos._docker import docker_unavailable_reason

    reason = docker_unavailable_reason()
    if reason is not None:
        pytest.skip(f"Docker is not available: {reason}")
    make_ini(pytester, "chaos_services = auto\nchaos_images =\n    redis = pytest-chaos/absent:1")
    pytester.makeconftest(SERVICES_CONFTEST)
    pytester.makepyfile("def test_it(redis):\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "pytest-chaos: service 'redis': image pytest-chaos/absent:1 is not present locally"
            " and could not be pulled: *; to run it from the local binary instead:"
            " --chaos-services local"
        ]
    )


def test_process_fault_in_a_run_that_declares_no_service(bare: pytest.Pytester) -> None:
    bare.makepyfile(
        dedent(
            """
            def test_kill(chaos):
                chaos.kill("redis")
            """
        )
    )
    result = run(bare)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*FaultError: dependency_down: mode 'kill' acts on a service started by pytest-chaos,"
            " and 'redis' is not running in this session (running: none); declare it with"
            " service_fixture() in conftest.py and request its fixture in the test"
        ]
    )


DIRECTORY_CONFTEST = """
import pytest
import redis as redis_py
from pytest_chaos.services import redis_service, service_fixture

redis = service_fixture(redis_service(){scope})


@pytest.fixture(scope="module")
def written(redis):
    # A module-scoped fixture: set up before any function-scoped one of its first test.
    client = redis_py.Redis.from_url(redis.url, socket_timeout=2)
    client.set("written_by", "{directory}")
    return redis_py.Redis.from_url(redis.direct_url, socket_timeout=2).get("written_by")
"""


def test_two_directories_each_with_their_own_redis(pytester: pytest.Pytester) -> None:
    """Each suite's tests reach their own server through the one proxy "redis", even from
    module-scoped fixtures, and even after a test killed its server directly; chaos.kill()
    names the test's own; a shorter-lived service leaves the proxy to the other."""
    make_ini(pytester, "chaos_services = local")
    pytester.mkpydir("a").joinpath("conftest.py").write_text(
        DIRECTORY_CONFTEST.format(scope="", directory="a")
    )
    pytester.mkpydir("b").joinpath("conftest.py").write_text(
        DIRECTORY_CONFTEST.format(scope=', scope="module"', directory="b")
    )
    pytester.path.joinpath("a", "test_first.py").write_text(
        dedent(
            """
            def test_a(redis, written):
                assert written == b"a"  # written through the proxy, read directly: its own
            """
        )
    )
    pytester.path.joinpath("b", "test_b.py").write_text(
        dedent(
            """
            import pytest
            from pytest_chaos.faults import FaultError

            def test_b(redis, written, chaos):
                assert written == b"b"
                assert chaos.service("redis") is redis
                with chaos.kill("redis"):
                    assert not redis.running

            def test_without_a_service(chaos):
                with pytest.raises(FaultError, match="runs 2 times in this session"):
                    chaos.service("redis")
            """
        )
    )
    pytester.path.joinpath("a", "test_second.py").write_text(
        dedent(
            """
            def test_a_again(redis, written, toxiproxy):
                assert written == b"a"  # the proxy was pointed back before this module began
                assert toxiproxy.proxies()["redis"].upstream == redis.direct
                redis.kill()  # directly: nothing reverts it but the next test's setup
            """
        )
    )
    pytester.path.joinpath("a", "test_third.py").write_text(
        dedent(
            """
            def test_a_healed(redis, written):
                assert redis.running  # brought back before this module's fixture needed it
                assert written == b"a"
            """
        )
    )
    result = run(
        pytester, "-p", "no:randomly",
        "a/test_first.py", "b/test_b.py", "a/test_second.py", "a/test_third.py",
    )  # fmt: skip
    result.assert_outcomes(passed=5)
