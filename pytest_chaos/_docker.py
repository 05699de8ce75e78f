"""Docker itself, for the container services and the Toxiproxy container backend: whether an
engine answers here (and if not, why), one client, images (present? pulled, failing fast), and
the session's clean-up.

Nothing outlives the session. Every container carries the label `pytest-chaos.session=<id of
this Python process>`; `ensure_session()`, called before the first container is created,
registers an exit handler that removes this process's containers, and starts a watchdog
process (`pytest_chaos._reaper`, in its own session, so that a Ctrl-C meant for pytest does
not reach it first) that removes them when pytest dies without running it (SIGKILL, a crash).
Ryuk, testcontainers' own reaper, is used as well when its image is present locally; otherwise
it is disabled before testcontainers creates anything (it would try to pull it).

docker and testcontainers are imported inside the functions that need them: importing this
module stays cheap, and the watchdog imports it too.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import queue
import socket
import sys
import threading
import uuid
from typing import Any

SESSION_LABEL = "pytest-chaos.session"
SERVICE_LABEL = "pytest-chaos.service"
SESSION_ID = uuid.uuid4().hex  # this Python process: its containers carry it
DEFAULT_HOST = "unix:///var/run/docker.sock"
INSTALL_HINT = "pip install 'testcontainers>=4.10'"

PING_TIMEOUT_SECONDS = 3.0
CLEAN_UP_TIMEOUT_SECONDS = 15
PULL_STALL_SECONDS = 30.0  # a pull that reports nothing for this long has failed


class DockerUnavailable(Exception):
    """No Docker engine can be used from here (callers may skip rather than fail); the message
    says why, in one line (`docker_unavailable_reason()`). Users raise their own subclass,
    which says what needed Docker."""


class ImageUnavailable(Exception):
    """An image is not present locally and could not be pulled; `reason` is the engine's own
    explanation (or the stall), on one line."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"image {image} is not present locally and could not be pulled: {reason}")
        self.image = image
        self.reason = reason


# ------------------------------------------------------------------------------- the engine
def docker_host() -> str:
    """Where testcontainers will look for the engine (DOCKER_HOST, ~/.testcontainers.properties,
    the default socket), so that every answer here agrees with what it will do."""
    from testcontainers.core.docker_client import get_docker_host

    return get_docker_host() or DEFAULT_HOST


def missing_package() -> str | None:
    """One line naming the Python package Docker support needs and lacks, or None."""
    for module in ("docker", "testcontainers"):
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"the {error.name or module} package is not installed ({INSTALL_HINT})"
    return None


def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers, else one line saying why not: a package missing, no
    socket, or an engine that does not answer. Asked once per process and engine address,
    with a short timeout."""
    missing = missing_package()
    if missing is not None:
        return missing
    host = docker_host()
    with _LOCK:
        if host not in _reasons:
            _reasons[host] = _probe(host)
        return _reasons[host]


def _probe(host: str) -> str | None:
    if host.startswith("unix://"):
        socket_path = host.removeprefix("unix://")
        if not os.path.exists(socket_path):
            return f"no Docker engine: there is no socket at {socket_path} (is dockerd running?)"
        # docker-py leaks the socket of a failed unix connection (a ResourceWarning later, in
        # whichever test the garbage collector runs): try the socket ourselves first.
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(PING_TIMEOUT_SECONDS)
            try:
                probe.connect(socket_path)
            except OSError as error:
                return f"no Docker engine answers at {host}: {error.strerror or error}"
    try:
        client = _new_client(host, timeout=int(PING_TIMEOUT_SECONDS))
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        return f"the Docker engine at {host} does not answer: {one_line(error)}"
    return None


def client() -> Any:
    """The process's client of the engine at `docker_host()` (the docker SDK's DockerClient),
    for questions about images and containers; closed by `remove_session_containers()`."""
    host = docker_host()
    with _LOCK:
        if host not in _clients:
            _clients[host] = _new_client(host)
        return _clients[host]


def _new_client(host: str, **options: Any) -> Any:
    # from_env rather than DockerClient(base_url=host): it also reads the TLS settings
    # (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) of a remote engine.
    environment = {**os.environ, "DOCKER_HOST": host}
    return docker_module().from_env(environment=environment, **options)


def docker_module(name: str = "") -> Any:
    """The docker SDK (or one of its modules, e.g. "errors"), imported on first use. It has no
    type information, hence Any."""
    return importlib.import_module(f"docker.{name}" if name else "docker")


def one_line(error: BaseException) -> str:
    """The engine's own explanation of a Docker error when there is one (not the URL docker-py
    puts in front of it), on one line."""
    text = str(getattr(error, "explanation", None) or error) or type(error).__name__
    return " ".join(text.split())


# ----------------------------------------------------------------------------------- images
def image_present(image: str) -> bool:
    """The image is in the local engine (no pull is tried); False without an engine."""
    if docker_unavailable_reason() is not None:
        return False
    try:
        client().images.get(image)
    except docker_module("errors").DockerException:
        return False
    return True


def ensure_image(image: str) -> str:
    """The name testcontainers will run `image` under (with its registry prefix, if one is
    configured), pulled first when it is not present; ImageUnavailable when it cannot be."""
    from testcontainers.core.config import testcontainers_config

    image = testcontainers_config.hub_image_name_prefix + image
    if not image_present(image):
        pull(image)
    return image


def pull(image: str, *, stall_seconds: float = PULL_STALL_SECONDS) -> None:
    """Pull `image` once, through the process's client. Given up, with ImageUnavailable, as
    soon as the engine reports an error (no registry answering is a fast failure, not a retry
    loop) or when it reports nothing for `stall_seconds`.

    docker-py pulls without a timeout, so the pull runs on a daemon thread whose progress is
    read here with one. After a stall that thread stays until the engine ends the pull.
    """
    repository, tag = _split_image(image)
    api = client().api
    progress: queue.Queue[tuple[str, Any]] = queue.Queue()

    def run() -> None:
        try:
            for event in api.pull(repository, tag=tag, stream=True, decode=True):
                progress.put(("event", event))
        except Exception as error:
            progress.put(("error", error))
        else:
            progress.put(("done", None))

    threading.Thread(target=run, name=f"pytest-chaos pull {image}", daemon=True).start()
    while True:
        try:
            kind, item = progress.get(timeout=stall_seconds)
        except queue.Empty:
            reason = f"the pull stalled: the engine reported nothing for {stall_seconds:g}s"
            raise ImageUnavailable(image, reason) from None
        if kind == "done":
            break
        if kind == "error":
            raise ImageUnavailable(image, one_line(item))
        if isinstance(item, dict) and item.get("error"):
            raise ImageUnavailable(image, " ".join(str(item["error"]).split()))
    if not image_present(image):
        reason = "the engine reported no error, yet the image is still missing"
        raise ImageUnavailable(image, reason)


def _split_image(image: str) -> tuple[str, str | None]:
    """("repo", "tag") from "repo:tag", leaving digests and registry ports alone."""
    if "@" in image:
        return image, None
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repository, tag


# ------------------------------------------------------------------------------- containers
def log_tail(container: Any, lines: int) -> str | None:
    """The last `lines` lines of a container's log (docker-py's Container), without trailing
    blank lines; None when it cannot be read (the container is gone)."""
    try:
        log = container.logs(tail=lines).decode(errors="replace")
    except Exception:
        return None
    return str(log).rstrip()


def is_port_conflict(error: BaseException) -> bool:
    """The engine refused to publish a port because something on the host holds it."""
    text = str(error).lower()
    return "port is already allocated" in text or "address already in use" in text


# ------------------------------------------------------------------ the session's clean-up
def session_labels(service: str | None = None) -> dict[str, str]:
    """The labels of a container started by this process (the exit handler and the watchdog
    remove what carries them), and of the service it runs, if any."""
    labels = {SESSION_LABEL: SESSION_ID}
    if service is not None:
        labels[SERVICE_LABEL] = service
    return labels


def ensure_session() -> None:
    """Before testcontainers creates anything: Ryuk off unless its image is present locally
    (it would be pulled); once per process, the exit handler and the watchdog process."""
    global _session_started, _ryuk_present
    with _LOCK:
        from testcontainers.core.config import testcontainers_config

        # Asked every time, not once: the setting lives in testcontainers' module, which a
        # host program may import afresh (pytester's in-process runs drop it between runs).
        if not testcontainers_config.ryuk_disabled:
            if _ryuk_present is None:
                _ryuk_present = image_present(testcontainers_config.ryuk_image)
            if not _ryuk_present:
                testcontainers_config.ryuk_disabled = True
        if _session_started:
            return
        atexit.register(remove_session_containers)
        _start_watchdog()
        _session_started = True


def remove_containers(label: str, engine: Any = None) -> int:
    """Remove (forced, with their anonymous volumes) the containers carrying `label`
    (`key=value`), through `engine` or a client of its own; how many were removed."""
    own = engine is None
    if own:
        engine = _new_client(docker_host(), timeout=CLEAN_UP_TIMEOUT_SECONDS)
    removed = 0
    try:
        for container in engine.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
                removed += 1
    finally:
        if own:
            engine.close()
    return removed


def remove_session_containers() -> None:
    """Remove every container of this process (by its session label), and close the process's
    clients; errors are ignored (this runs at exit)."""
    with _LOCK:
        clients = list(_clients.values())
        _clients.clear()
    for each in clients:
        with contextlib.suppress(Exception):
            each.close()
    with contextlib.suppress(Exception):
        remove_containers(f"{SESSION_LABEL}={SESSION_ID}")


def _start_watchdog() -> None:
    """`python -m pytest_chaos._reaper <our pid> <session label>` in its own session, outliving
    us on purpose, with no Popen object to warn about it at exit."""
    if not sys.executable:
        return
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    argv = [
        sys.executable,
        "-m",
        "pytest_chaos._reaper",
        str(os.getpid()),
        f"{SESSION_LABEL}={SESSION_ID}",
    ]
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    with contextlib.suppress(OSError):
        os.posix_spawn(sys.executable, argv, env, file_actions=quiet, setsid=True)


_LOCK = threading.RLock()
_reasons: dict[str, str | None] = {}  # engine address -> why it cannot be used (None: it can)
_clients: dict[str, Any] = {}  # engine address -> the process's client of it
_ryuk_present: bool | None = None  # Ryuk's image is in the local engine (asked once)
_session_started = False
