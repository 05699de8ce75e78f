"""pytest_chaos.services against real local processes (redis-server, initdb + postgres) on
127.0.0.1: lifecycle, process faults, and bad input that must fail fast and leave nothing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pytest_chaos.services import (
    External,
    LocalProcess,
    Recipe,
    ServiceError,
    UnsupportedOperation,
    postgres_recipe,
    redis_recipe,
    tcp_ready,
)

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def client(service: LocalProcess, **options: object) -> redis.Redis:
    """A redis-py client that does not retry, so each fault shows at once."""
    return redis.Redis(host=service.host, port=service.port, retry=Retry(NoBackoff(), 0), **options)


def processes_matching(marker: str) -> list[int]:
    """Pids whose command line contains `marker` (a /proc scan, no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def children_of(pid: int) -> list[int]:
    """Pids whose parent is `pid` (a /proc scan)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def redis_service() -> Iterator[LocalProcess]:
    with LocalProcess(redis_recipe()) as service:
        yield service


@needs_redis
def test_redis_starts_on_loopback_and_closes_without_trace() -> None:
    service = LocalProcess(redis_recipe(name="cache"))
    with service:
        assert service.name == "cache"
        assert service.host == "127.0.0.1"
        assert service.address == f"127.0.0.1:{service.port}"
        assert client(service).ping()
        pid, directory = service.pid, service.directory
        assert pid is not None
        assert directory is not None
        assert service.data_dir.is_dir()
    assert not service.running
    assert not alive(pid)
    assert not directory.exists()


@needs_redis
def test_kill_breaks_clients_and_restart_comes_back_on_the_same_port_and_data(
    redis_service: LocalProcess,
) -> None:
    port, data_dir, old_pid = redis_service.port, redis_service.data_dir, redis_service.pid
    assert old_pid is not None
    cache = client(redis_service)
    cache.set("key", "value")
    redis_service.kill()
    assert not redis_service.running
    assert not alive(old_pid)
    with pytest.raises(redis.ConnectionError):
        cache.get("key")
    redis_service.restart()
    assert redis_service.running
    assert redis_service.pid != old_pid
    assert (redis_service.port, redis_service.data_dir) == (port, data_dir)
    assert client(redis_service).ping()


@needs_redis
def test_pause_hangs_a_client_without_timeout_and_fails_fast_with_one(
    redis_service: LocalProcess,
) -> None:
    patient, hasty = client(redis_service), client(redis_service, socket_timeout=0.3)
    patient.ping(), hasty.ping()  # connected before the pause
    redis_service.pause()
    try:
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            hasty.ping()
        assert time.monotonic() - started < 1.5

        answers: list[object] = []
        waiting = threading.Thread(target=lambda: answers.append(patient.ping()), daemon=True)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()
        assert answers == []
    finally:
        redis_service.resume()
    waiting.join(5)
    assert answers == [True]
    assert client(redis_service).ping()


@needs_redis
def test_restart_of_a_paused_server_and_terminate(redis_service: LocalProcess) -> None:
    redis_service.pause()
    redis_service.restart()  # stop() continues a frozen server so it can handle its signal
    assert not redis_service.paused
    assert client(redis_service).ping()
    pid = redis_service.pid
    assert pid is not None
    redis_service.terminate()
    assert not redis_service.running
    assert not alive(pid)
    with pytest.raises(redis.ConnectionError):
        client(redis_service).ping()
    with pytest.raises(
        ServiceError, match=r"^service 'redis': cannot kill\(\): it is not running$"
    ):
        redis_service.kill()
    redis_service.start()
    assert client(redis_service).ping()


@pytest.mark.skipif(
    shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    reason="no initdb",
)
def test_postgres_kill_mid_transaction_then_restart_keeps_committed_data() -> None:
    psycopg = pytest.importorskip("psycopg")
    with LocalProcess(postgres_recipe()) as service:
        dsn = f"host={service.host} port={service.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (value text)")
            connection.execute("INSERT INTO kept VALUES ('committed')")
        connection = psycopg.connect(dsn)
        connection.execute("INSERT INTO kept VALUES ('in flight')")
        port, data_dir = service.port, service.data_dir
        assert service.pid is not None
        backends = children_of(service.pid)
        assert len(backends) >= 3  # checkpointer, writers, our connection's backend...
        service.kill()
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
        connection.close()
        assert processes_matching(str(data_dir)) == []
        assert [pid for pid in backends if alive(pid)] == []  # they lead their own sessions

        service.restart()
        assert (service.port, service.data_dir) == (port, data_dir)
        with psycopg.connect(dsn) as connection:
            rows = connection.execute("SELECT value FROM kept").fetchall()
        assert rows == [("committed",)]

        service.pause()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=1)
        service.resume()
        assert service.pid is not None
        backends = children_of(service.pid)
        service.stop()
        assert processes_matching(str(data_dir)) == []
        assert [pid for pid in backends if alive(pid)] == []
        service.start()
        with psycopg.connect(dsn) as connection:
            assert connection.execute("SELECT count(*) FROM kept").fetchone() == (1,)


def test_an_external_address_refuses_process_faults() -> None:
    service = External.from_address("api", "10.1.2.3:8080")
    assert (service.name, service.host, service.port) == ("api", "10.1.2.3", 8080)
    assert service.address == "10.1.2.3:8080"
    with service, pytest.raises(UnsupportedOperation) as raised:  # nothing to start or close
        service.kill()
    assert str(raised.value) == (
        "service 'api': kill() is not possible on an external address (10.1.2.3:8080): "
        "the plugin did not start it; only network faults apply to it"
    )
    for operation in (service.terminate, service.pause, service.resume, service.stop):
        with pytest.raises(UnsupportedOperation, match="not possible on an external address"):
            operation()
    with pytest.raises(
        ServiceError, match=r"^service 'api': an external address must be host:port"
    ):
        External.from_address("api", "nowhere")


def test_a_binary_not_on_path_fails_fast() -> None:
    marker = f"no-such-server-{uuid.uuid4().hex}"
    service = LocalProcess(Recipe("ghost", [marker, "--port", "{port}"]))
    started = time.monotonic()
    with pytest.raises(ServiceError) as raised:
        service.start()
    assert str(raised.value) == f"service 'ghost': binary '{marker}' is not on PATH"
    assert time.monotonic() - started < 1
    assert processes_matching(marker) == []
    assert service.directory is None
    assert not service.running


def test_a_readiness_check_that_never_passes_fails_fast_and_kills_the_process() -> None:
    marker = f"{time.time_ns() % 10**9}.5"  # sleep ignores the port; a unique command line
    recipe = Recipe("sleeper", ["sleep", marker], ready=lambda service: False, ready_timeout=1.0)
    service = LocalProcess(recipe)
    started = time.monotonic()
    with pytest.raises(ServiceError) as raised:
        service.start()
    assert str(raised.value) == (
        "service 'sleeper': not ready after 1s: the readiness check never passed; log:\n(empty)"
    )
    assert time.monotonic() - started < 3
    assert processes_matching(f"sleep {marker}") == []
    assert service.directory is None
    assert not service.running


def test_a_server_that_exits_before_it_is_ready_says_so() -> None:
    recipe = Recipe("quitter", ["sh", "-c", "echo bad config >&2; exit 3"])
    with pytest.raises(ServiceError) as raised:
        LocalProcess(recipe).start()
    assert str(raised.value) == (
        "service 'quitter': exited with code 3 before it was ready; log:\nbad config"
    )


@needs_redis
def test_a_port_already_taken_fails_fast_and_starts_nothing() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        service = LocalProcess(redis_recipe(), port=port)
        started = time.monotonic()
        with pytest.raises(ServiceError) as raised:
            service.start()
        assert str(raised.value) == f"service 'redis': port {port} on 127.0.0.1 is already in use"
        assert time.monotonic() - started < 1
        assert processes_matching(f"--port {port}") == []


@needs_redis
@pytest.mark.parametrize("ctrl_c", [False, True], ids=["exit", "ctrl-c"])
def test_a_server_left_running_is_killed_when_the_interpreter_exits(
    tmp_path: Path, ctrl_c: bool
) -> None:
    script = tmp_path / "leave_it_running.py"
    script.write_text(
        "import sys, time\n"
        "from pytest_chaos.services import LocalProcess, redis_recipe\n"
        "service = LocalProcess(redis_recipe()).start()\n"
        "print(service.pid, service.directory, flush=True)\n"
        "if sys.argv[1] == 'wait':\n"
        "    time.sleep(30)\n"
    )
    with subprocess.Popen(
        [sys.executable, str(script), "wait" if ctrl_c else "exit"], stdout=subprocess.PIPE
    ) as owner:
        assert owner.stdout is not None
        line = owner.stdout.readline().decode()
        if ctrl_c:
            owner.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground group
        assert owner.wait(timeout=20) == (-signal.SIGINT if ctrl_c else 0)
    pid, directory = line.split()
    deadline = time.monotonic() + 5
    while alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(int(pid))
    assert not Path(directory).exists()


@needs_redis
def test_a_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    script = tmp_path / "die_hard.py"
    script.write_text(
        "import os, signal\n"
        "from pytest_chaos.services import LocalProcess, redis_recipe\n"
        "service = LocalProcess(redis_recipe()).start()\n"
        "print(service.pid, service.directory, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False, timeout=20
    )
    pid, directory = done.stdout.split()
    shutil.rmtree(directory)  # no exit handler ran: only the process is the kernel's to end
    pid = int(pid)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid)


def test_a_recipe_declared_by_the_user(tmp_path: Path) -> None:
    """The documented example: any command line with placeholders and a readiness check."""
    files = Recipe(
        "files",
        [sys.executable, "-m", "http.server", "{port}", "--bind", "{host}", "-d", "{data_dir}"],
        ready=tcp_ready,
        ready_timeout=10,
    )
    with LocalProcess(files) as server:
        (server.data_dir / "hello.txt").write_text("hello")
        url = f"http://{server.address}/hello.txt"
        assert urllib.request.urlopen(url, timeout=5).read() == b"hello"
        server.kill()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=5)
        server.restart()
        assert urllib.request.urlopen(url, timeout=5).read() == b"hello"


@needs_redis
def test_a_server_restarted_from_a_short_lived_thread_outlives_it(
    redis_service: LocalProcess,
) -> None:
    """The kernel's parent-death signal follows the thread that forked the server: a restart
    from a thread that then ends (a test's workload thread) must not take the server down."""
    restarter = threading.Thread(target=redis_service.restart)
    restarter.start()
    restarter.join(30)
    time.sleep(0.5)  # a SIGKILL on the thread's exit would have landed by now
    assert redis_service.running
    assert client(redis_service, socket_timeout=2).ping()
