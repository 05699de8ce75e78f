"""pytest_chaos._docker against the real Docker engine here: why an engine cannot be used,
images present or pulled (a pull that cannot succeed fails fast, with the engine's own reason,
or is given up when it stalls), and containers removed by their label."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pytest_chaos import _docker
from pytest_chaos._ports import free_port

LOCAL_IMAGE = "pytest-chaos/redis:local"
PULL_THREAD = "pytest-chaos pull"

unavailable = _docker.docker_unavailable_reason()
needs_docker = pytest.mark.skipif(unavailable is not None, reason=f"no Docker: {unavailable}")


def pull_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(PULL_THREAD)]


@contextmanager
def registry_that_hangs() -> Iterator[tuple[int, threading.Event]]:
    """A "registry" on 127.0.0.1 that accepts connections and answers nothing until the event
    is set, then 503 to every request (so that the engine ends its pull at once)."""
    listener = socket.create_server(("127.0.0.1", 0))
    answer = threading.Event()

    def serve(connection: socket.socket) -> None:
        with connection:
            answer.wait()
            response = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            try:
                connection.recv(65536)
                connection.sendall(response)
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], answer
    finally:
        answer.set()
        listener.close()


# ----------------------------------------------------------------------------------- engine
def test_no_socket_is_the_reason_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    socket_path = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    assert _docker.docker_unavailable_reason() == (
        f"no Docker engine: there is no socket at {socket_path} (is dockerd running?)"
    )


def test_a_container_service_without_docker_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pytest_chaos.services import ServiceError
    from pytest_chaos.services.container import ContainerService, ContainerSpec, DockerUnavailable

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    service = ContainerService(ContainerSpec(LOCAL_IMAGE, 6379), name="cache")
    with pytest.raises(DockerUnavailable) as raised:
        service.start()
    assert isinstance(raised.value, ServiceError)
    assert isinstance(raised.value, _docker.DockerUnavailable)
    assert str(raised.value) == (
        f"service 'cache': no Docker engine: there is no socket at {tmp_path}/docker.sock"
        " (is dockerd running?)"
    )


def test_a_socket_nobody_answers_on_is_the_reason_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    socket_path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as bound_only:
        bound_only.bind(str(socket_path))  # a socket file, but nothing listens on it
        monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
        assert _docker.docker_unavailable_reason() == (
            f"no Docker engine answers at unix://{socket_path}: Connection refused"
        )


# ----------------------------------------------------------------------------------- images
@needs_docker
def test_image_present_tells_a_local_image_from_an_absent_one() -> None:
    if not _docker.image_present(LOCAL_IMAGE):
        pytest.skip(f"{LOCAL_IMAGE} is not built; run scripts/docker-setup.sh")
    assert _docker.ensure_image(LOCAL_IMAGE) == LOCAL_IMAGE  # present: no pull
    assert not _docker.image_present(f"pytest-chaos/not-here-{uuid.uuid4().hex[:8]}:1")


@needs_docker
def test_a_pull_from_a_registry_that_refuses_fails_fast_with_the_engines_reason() -> None:
    port = free_port()
    image = f"127.0.0.1:{port}/not-here:1"
    started = time.monotonic()
    with pytest.raises(_docker.ImageUnavailable) as raised:
        _docker.ensure_image(image)
    assert time.monotonic() - started < 10
    error = raised.value
    assert (error.image, str(error)) == (
        image,
        f"image {image} is not present locally and could not be pulled: {error.reason}",
    )
    # The engine's own words, naming the registry it dialled (the unix socket's
    # "Invalid bind address protocol" was docker-py's, and never reached the engine).
    assert f"127.0.0.1:{port}" in error.reason
    assert "connection refused" in error.reason


@needs_docker
def test_a_pull_of_an_image_no_registry_serves_gives_the_engines_reason() -> None:
    """Docker Hub's name: unreachable here (the engine says why), or reachable and refusing."""
    started = time.monotonic()
    with pytest.raises(_docker.ImageUnavailable) as raised:
        _docker.pull("pytest-chaos/not-here:1")
    assert time.monotonic() - started < _docker.PULL_STALL_SECONDS
    reason = raised.value.reason
    assert "Invalid bind address" not in reason
    assert "stalled" not in reason
    assert "\n" not in reason
    assert reason


@needs_docker
def test_a_stalled_pull_is_given_up_and_its_thread_ends_with_the_pull() -> None:
    with registry_that_hangs() as (port, answer):
        image = f"127.0.0.1:{port}/stalls:1"
        started = time.monotonic()
        with pytest.raises(_docker.ImageUnavailable) as raised:
            _docker.pull(image, stall_seconds=1)
        assert time.monotonic() - started < 10
        assert raised.value.reason == "the pull stalled: the engine reported nothing for 1s"
        assert pull_threads() != []  # still waiting on the engine, which waits on the registry
        answer.set()
        deadline = time.monotonic() + 30
        while pull_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert pull_threads() == []


# ------------------------------------------------------------------------------- containers
@needs_docker
def test_containers_are_removed_by_their_label() -> None:
    if not _docker.image_present(LOCAL_IMAGE):
        pytest.skip(f"{LOCAL_IMAGE} is not built; run scripts/docker-setup.sh")
    label = f"pytest-chaos.test={uuid.uuid4().hex}"
    key, value = label.split("=")
    labels = {**_docker.session_labels("doomed"), key: value}
    assert labels[_docker.SESSION_LABEL] == _docker.SESSION_ID
    assert labels[_docker.SERVICE_LABEL] == "doomed"
    engine = _docker.client()
    engine.containers.create(LOCAL_IMAGE, labels=labels)
    engine.containers.create(LOCAL_IMAGE, labels=labels)
    assert _docker.remove_containers(label) == 2
    assert engine.containers.list(all=True, filters={"label": label}) == []
