"""pytest_chaos.services.container against a real Docker engine and real servers (the local
images pytest-chaos/redis:local and pytest-chaos/postgres:local that scripts/docker-setup.sh
builds): lifecycle, process faults seen by real clients, bad input that must fail fast and
leave nothing, and containers that must not outlive a killed or interrupted pytest."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from pytest_chaos._docker import (
    SERVICE_LABEL,
    SESSION_ID,
    SESSION_LABEL,
    docker_unavailable_reason,
    image_present,
)
from pytest_chaos._ports import free_port
from pytest_chaos.services import ServiceError, postgres_ready, redis_ready
from pytest_chaos.services.container import ContainerService, ContainerSpec

REDIS_IMAGE = "pytest-chaos/redis:local"
POSTGRES_IMAGE = "pytest-chaos/postgres:local"
REAP_SECONDS = 15

unavailable = docker_unavailable_reason()
pytestmark = pytest.mark.skipif(unavailable is not None, reason=f"no Docker: {unavailable}")


def needs_image(image: str) -> pytest.MarkDecorator:
    present = unavailable is None and image_present(image)
    return pytest.mark.skipif(
        not present, reason=f"image {image} is absent: run scripts/docker-setup.sh"
    )


needs_redis = needs_image(REDIS_IMAGE)
needs_postgres = needs_image(POSTGRES_IMAGE)


def redis_spec(**options: Any) -> ContainerSpec:
    return ContainerSpec(REDIS_IMAGE, 6379, **{"ready": redis_ready, **options})


def postgres_spec() -> ContainerSpec:
    return ContainerSpec(
        POSTGRES_IMAGE, 5432, ready=postgres_ready, stop_signal=signal.SIGINT, ready_timeout=30
    )


def unique(name: str) -> str:
    """A service name no other run on this machine uses (the leak checks filter by it)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def client(service: ContainerService, **options: Any) -> redis.Redis:
    """A redis-py client that does not retry, so each fault shows at once."""
    return redis.Redis(host=service.host, port=service.port, retry=Retry(NoBackoff(), 0), **options)


def containers(label: str) -> list[Any]:
    """`docker ps -a --filter label=<label>`, through the docker SDK."""
    import docker

    engine = docker.from_env()
    try:
        return list(engine.containers.list(all=True, filters={"label": label}))
    finally:
        engine.close()


def wait_until_no_containers(label: str, timeout: float = REAP_SECONDS) -> list[str]:
    """Names of the containers still labelled `label` after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (left := containers(label)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [container.name for container in left]


@pytest.fixture(scope="module")
def redis_container() -> Iterator[ContainerService]:
    with ContainerService(redis_spec(), name=unique("cache")) as service:
        yield service


@pytest.fixture
def cache(redis_container: ContainerService) -> ContainerService:
    """The module's Redis container, serving (a test before may have killed or paused it)."""
    redis_container.ensure_serving()
    return redis_container


@pytest.fixture(scope="module")
def postgres_container() -> Iterator[ContainerService]:
    with ContainerService(postgres_spec(), name=unique("db")) as service:
        yield service


# ------------------------------------------------------------------------------------ Redis
@needs_redis
def test_redis_container_answers_on_loopback_and_on_its_docker_network(
    cache: ContainerService,
) -> None:
    assert cache.provider == "container"
    assert cache.host == "127.0.0.1"
    assert cache.address == f"127.0.0.1:{cache.port}"
    assert client(cache).ping()
    # Published on loopback only, at the port we chose; labelled for the clean-up.
    (container,) = containers(f"{SERVICE_LABEL}={cache.name}")
    assert container.id == cache.container_id
    assert container.ports == {"6379/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(cache.port)}]}
    assert container.labels[SESSION_LABEL] == SESSION_ID
    # Where a Toxiproxy container on the same network reaches it.
    assert cache.container_port == 6379
    assert redis.Redis(host=cache.container_ip, port=cache.container_port).ping()


@needs_redis
def test_kill_breaks_clients_and_start_brings_back_the_same_container_and_port(
    cache: ContainerService,
) -> None:
    port, container_id = cache.port, cache.container_id
    connection = client(cache)
    connection.set("key", "value")
    cache.kill()
    assert not cache.running
    with pytest.raises(redis.ConnectionError):
        connection.get("key")
    with pytest.raises(redis.ConnectionError):
        client(cache).ping()
    cache.start()
    assert cache.running
    assert (cache.port, cache.container_id) == (port, container_id)
    assert client(cache).ping()
    assert client(cache).get("key") is None  # kept in memory only, and the memory is gone


@needs_redis
def test_pause_times_clients_out_and_resume_answers_again(cache: ContainerService) -> None:
    connection = client(cache, socket_timeout=0.5)
    assert connection.ping()
    cache.pause()
    assert cache.paused
    assert cache.running
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        connection.ping()
    assert time.monotonic() - started < 5  # the client's timeout, not a hang
    cache.resume()
    assert not cache.paused
    assert client(cache, socket_timeout=0.5).ping()


class CountingBackoff(ExponentialBackoff):
    """Exponential backoff that counts the failures it was asked about (in the class: each
    connection works on its own copy of the client's Retry)."""

    failures = 0

    def compute(self, failures: int) -> float:
        CountingBackoff.failures += 1
        return super().compute(failures)


@needs_redis
def test_a_retrying_client_rides_out_a_restart(cache: ContainerService) -> None:
    CountingBackoff.failures = 0
    backoff = CountingBackoff(cap=0.5, base=0.02)
    retrying = redis.Redis(
        host=cache.host,
        port=cache.port,
        socket_timeout=1,
        retry=Retry(backoff, retries=30),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    assert retrying.ping()
    restart = threading.Thread(target=cache.restart)
    restart.start()
    answers = 0
    while restart.is_alive() or answers < 3:
        assert retrying.ping()  # never raises: the retries cover the restart
        answers += 1
        time.sleep(0.01)
    restart.join()
    assert cache.running
    assert CountingBackoff.failures >= 1, "the client never saw the restart"


@needs_redis
def test_terminate_and_stop_return_once_exited_and_start_serves_again(
    cache: ContainerService,
) -> None:
    for fault in (cache.terminate, cache.stop):
        fault()
        assert not cache.running
        with pytest.raises(redis.ConnectionError):
            client(cache).ping()
        cache.start()
        assert client(cache).ping()


@needs_redis
def test_a_paused_container_can_be_killed_terminated_or_stopped(cache: ContainerService) -> None:
    for fault in (cache.kill, cache.terminate, cache.stop):
        cache.pause()
        fault()
        assert not cache.running
        assert not cache.paused
        cache.ensure_serving()
        assert client(cache).ping()


@pytest.mark.parametrize("operation", ["kill", "terminate", "stop", "pause", "resume"])
def test_operations_on_a_service_that_is_not_running_say_so(operation: str) -> None:
    service = ContainerService(redis_spec(), name="idle")
    with pytest.raises(ServiceError) as raised:
        getattr(service, operation)()
    assert str(raised.value) == f"service 'idle': cannot {operation}(): it is not running"


@needs_redis
@pytest.mark.parametrize("kind", ["regex", "strategy"])
def test_a_log_wait_applies_to_the_current_start_only(kind: str) -> None:
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    message = r"Ready to accept connections"
    wait = message if kind == "regex" else LogMessageWaitStrategy(message)
    with ContainerService(redis_spec(ready=None, wait=wait), name=unique("logs")) as service:
        assert client(service).ping()
        service.kill()
        service.start()  # the first start's line is in the log too: it must not count
        log = service._container.logs().decode()  # type: ignore[union-attr]
        assert log.count("Ready to accept connections") == 2
        assert client(service).ping()


# ------------------------------------------------------------------------------- PostgreSQL
@needs_postgres
def test_postgres_kill_breaks_the_transaction_and_committed_tables_survive(
    postgres_container: ContainerService,
) -> None:
    db = postgres_container
    db.ensure_serving()
    dsn = f"host={db.host} port={db.port} user=postgres dbname=postgres connect_timeout=5"
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS orders")
        setup.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        setup.execute("INSERT INTO orders VALUES (1)")
    connection = psycopg.connect(dsn)
    connection.execute("INSERT INTO orders VALUES (2)")  # a transaction in progress
    db.kill()
    with pytest.raises(psycopg.OperationalError):
        connection.execute("INSERT INTO orders VALUES (3)")
    connection.close()
    db.start()
    with psycopg.connect(dsn) as after:
        rows = after.execute("SELECT id FROM orders ORDER BY id").fetchall()
    assert rows == [(1,)]


@needs_postgres
def test_postgres_restart_keeps_the_data(postgres_container: ContainerService) -> None:
    db = postgres_container
    db.ensure_serving()
    dsn = f"host={db.host} port={db.port} user=postgres dbname=postgres connect_timeout=5"
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS kept")
        setup.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    port = db.port
    db.restart()
    assert db.port == port
    with psycopg.connect(dsn) as after:
        assert after.execute("SELECT answer FROM kept").fetchall() == [(42,)]


# -------------------------------------------------------------------------------- bad input
def test_an_image_that_is_absent_and_cannot_be_pulled_fails_fast_and_leaves_nothing() -> None:
    name = unique("ghost")
    # A registry on a closed port: the engine's pull fails at once, with its own reason.
    registry = f"127.0.0.1:{free_port()}"
    image = f"{registry}/does-not-exist:1"
    service = ContainerService(ContainerSpec(image, 6379), name=name)
    started = time.monotonic()
    with pytest.raises(ServiceError) as raised:
        service.start()
    assert time.monotonic() - started < 10
    message = str(raised.value)
    expected = f"service '{name}': image {image} is not present locally and could not be pulled: "
    assert message.startswith(expected), message
    assert "\n" not in message
    reason = message.removeprefix(expected)
    assert registry in reason, reason
    assert "connection refused" in reason, reason
    assert not service.running
    assert wait_until_no_containers(f"{SERVICE_LABEL}={name}", timeout=0) == []


@needs_redis
def test_readiness_that_never_passes_fails_with_the_log_and_leaves_nothing() -> None:
    name = unique("never")
    service = ContainerService(redis_spec(ready=lambda _: False, ready_timeout=2), name=name)
    with pytest.raises(ServiceError) as raised:
        service.start()
    message = str(raised.value)
    assert message.startswith(
        f"service '{name}': not ready after 2s: the readiness check never passed; log:\n"
    ), message
    assert "Ready to accept connections" in message  # the container's own log
    assert not service.running
    assert service.container_id is None
    assert wait_until_no_containers(f"{SERVICE_LABEL}={name}", timeout=0) == []


@needs_redis
def test_a_container_that_exits_before_it_is_ready_names_the_image_and_shows_its_log() -> None:
    name = unique("broken")
    service = ContainerService(redis_spec(command=["--port", "not-a-port"]), name=name)
    with pytest.raises(ServiceError) as raised:
        service.start()
    message = str(raised.value)
    assert re.match(
        rf"service '{name}': container of {REDIS_IMAGE} exited with code \d+ before it was "
        r"ready; log:\n",
        message,
    ), message
    assert "not-a-port" in message or "port" in message.split("log:", 1)[1].lower()
    assert wait_until_no_containers(f"{SERVICE_LABEL}={name}", timeout=0) == []


@needs_redis
def test_a_fixed_port_already_in_use_is_named_and_leaves_nothing() -> None:
    name = unique("taken")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        service = ContainerService(redis_spec(), name=name, port=port)
        with pytest.raises(ServiceError) as raised:
            service.start()
    assert str(raised.value) == f"service '{name}': port {port} on 127.0.0.1 is already in use"
    assert wait_until_no_containers(f"{SERVICE_LABEL}={name}", timeout=0) == []


def test_a_bad_wait_is_refused_when_the_spec_is_made() -> None:
    with pytest.raises(TypeError) as raised:
        ContainerSpec(REDIS_IMAGE, 6379, wait=42)
    assert str(raised.value) == (
        "ContainerSpec.wait must be a testcontainers wait strategy or a log regular expression, "
        "got 42"
    )


@needs_redis
def test_ryuk_is_off_unless_its_image_is_present(cache: ContainerService) -> None:
    from testcontainers.core.config import testcontainers_config

    if os.environ.get("TESTCONTAINERS_RYUK_DISABLED"):
        pytest.skip("TESTCONTAINERS_RYUK_DISABLED is set here")
    assert testcontainers_config.ryuk_disabled is not image_present(
        testcontainers_config.ryuk_image
    )


# ------------------------------------------------------------------------------------ leaks
CHILD = """
import sys, time
from pytest_chaos.services import redis_ready
from pytest_chaos._docker import SESSION_ID
from pytest_chaos.services.container import ContainerService, ContainerSpec

service = ContainerService(ContainerSpec({image!r}, 6379, ready=redis_ready), name={name!r})
service.start()
print(SESSION_ID, flush=True)
time.sleep(120)
"""

CHILD_TEST = """
import time
from pathlib import Path
from pytest_chaos.services import redis_ready
from pytest_chaos._docker import SESSION_ID
from pytest_chaos.services.container import ContainerService, ContainerSpec

def test_waits_for_ctrl_c():
    spec = ContainerSpec({image!r}, 6379, ready=redis_ready)
    with ContainerService(spec, name={name!r}):
        Path({marker!r}).write_text(SESSION_ID)
        time.sleep(120)
"""


def watchdogs(session: str) -> list[int]:
    """Pids of reaper processes watching `session` (a /proc scan)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "pytest_chaos._reaper" in cmdline and session in cmdline:
            found.append(int(entry.name))
    return found


@needs_redis
def test_a_sigkilled_process_leaves_no_container_behind() -> None:
    name = unique("orphan")
    with subprocess.Popen(
        [sys.executable, "-c", CHILD.format(image=REDIS_IMAGE, name=name)],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            session = child.stdout.readline().strip()
            assert session, "the child did not start its container"
            assert containers(f"{SESSION_LABEL}={session}") != []
            assert watchdogs(session) != []
        finally:
            child.kill()
    assert wait_until_no_containers(f"{SESSION_LABEL}={session}") == []
    deadline = time.monotonic() + REAP_SECONDS
    while watchdogs(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert watchdogs(session) == [], "the watchdog did not exit after cleaning"


@needs_redis
def test_ctrl_c_of_a_pytest_run_leaves_no_container_behind(tmp_path: Path) -> None:
    name, marker = unique("interrupted"), tmp_path / "session"
    test_file = tmp_path / "test_child.py"
    test_file.write_text(
        textwrap.dedent(CHILD_TEST).format(image=REDIS_IMAGE, name=name, marker=str(marker))
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    with subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as child:
        try:
            deadline = time.monotonic() + 60
            while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert marker.exists(), "the child test did not start its container"
            session = marker.read_text()
            assert containers(f"{SESSION_LABEL}={session}") != []
            child.send_signal(signal.SIGINT)
            output, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert wait_until_no_containers(f"{SESSION_LABEL}={session}") == []
