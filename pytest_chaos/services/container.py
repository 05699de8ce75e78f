"""Services in Docker containers, through testcontainers.

A `ContainerService` runs `ContainerSpec.image` with the server's port published on 127.0.0.1
only, at a host port chosen once and kept for the service's life: `docker stop`/`start` keep
the binding, so `restart()`, `kill()` + `start()` and friends bring the server back at the
address its proxy points at, in the same container (same data).

Nothing outlives the session: every container carries the labels `pytest-chaos.session=<id of
this Python process>` and `pytest-chaos.service=<name>`, and `_docker` removes this process's
containers at exit, or from its watchdog process when pytest dies without exiting (SIGKILL, a
crash).

docker and testcontainers are imported inside the functions that need them (`_docker` does
it): importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from pytest_chaos import _docker
from pytest_chaos._docker import docker_unavailable_reason
from pytest_chaos._ports import free_port, port_is_free
from pytest_chaos.services.base import Service, ServiceError

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

__all__ = ["ContainerService", "ContainerSpec", "DockerUnavailable", "docker_unavailable_reason"]

# The docker SDK has no type information: its objects are Any here.
Container = Any

LOOPBACK = "127.0.0.1"
DEFAULT_NETWORK = "bridge"

POLL_INTERVAL_SECONDS = 0.05
PORT_ATTEMPTS = 3
LOG_TAIL_LINES = 15
_LIVE_STATES = ("created", "running", "paused", "restarting")


class DockerUnavailable(ServiceError, _docker.DockerUnavailable):
    """No Docker engine answers here to run the service (callers may skip rather than fail)."""


@dataclass(frozen=True)
class ContainerSpec:
    """How to run one kind of server in a container.

    `port` is the port the server listens on inside the container. `ready(service)` is polled
    with the service's host address (`host`, `port`) until it returns True or `ready_timeout`
    passes; check the protocol (`recipes.redis_ready`, `recipes.postgres_ready`), not just TCP:
    Docker's proxy accepts connections on the published port before the server listens.
    `wait` is a testcontainers wait strategy (`testcontainers.core.wait_strategies`; its
    startup timeout is set to what is left of `ready_timeout`) or a regular expression the
    container's log must match; it applies to the log of the current start only. `stop()`
    sends `stop_signal` and SIGKILL after `stop_timeout`.
    """

    image: str
    port: int
    command: Sequence[str] | str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ready: Callable[[Service], bool] | None = None
    wait: object | None = None
    ready_timeout: float = 60.0
    stop_timeout: float = 10.0
    stop_signal: signal.Signals = signal.SIGTERM

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"ContainerSpec.port must be from 1 to 65535, got {self.port}")
        wait = self.wait
        if wait is not None and not (
            isinstance(wait, str | re.Pattern) or callable(getattr(wait, "wait_until_ready", None))
        ):
            raise TypeError(
                "ContainerSpec.wait must be a testcontainers wait strategy or a log regular "
                f"expression, got {wait!r}"
            )


class ContainerService(Service):
    """A server in a Docker container, published on 127.0.0.1 at `port` (chosen free on the
    first start unless given, then kept). `container_ip`/`container_port` reach it from other
    containers on its Docker network (`network`, default the default bridge)."""

    provider = "container"

    def __init__(
        self,
        spec: ContainerSpec,
        *,
        name: str,
        port: int | None = None,
        network: str | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        self.host = LOOPBACK
        self.port = port or 0
        self.network = network or DEFAULT_NETWORK
        self.paused = False
        self._fixed_port = port is not None
        self._testcontainer: DockerContainer | None = None
        self._container: Container | None = None

    # ---------------------------------------------------------------------------- properties
    @property
    def container_id(self) -> str | None:
        """The container's id while it exists, else None."""
        return None if self._container is None else self._container.id

    @property
    def container_name(self) -> str | None:
        """The container's name while it exists, else None."""
        return None if self._container is None else self._container.name

    @property
    def container_port(self) -> int:
        """The port the server listens on inside the container."""
        return self.spec.port

    @property
    def container_ip(self) -> str:
        """The container's address on its network. It may change across a stop and start."""
        container = self._require_running("container_ip")
        networks = container.attrs["NetworkSettings"]["Networks"]
        address = str(networks.get(self.network, {}).get("IPAddress") or "")
        if not address:
            raise ServiceError(self.name, f"has no address on Docker network {self.network!r}")
        return address

    @property
    def running(self) -> bool:
        """True while the container runs (paused included); False once stopped or killed."""
        return self._status() in ("running", "paused", "restarting")

    # ---------------------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Create and start the container (or start it again: same container, port and data)
        and wait until it is ready. A first start that fails removes its container."""
        if self._container is not None:
            if self.running:
                raise ServiceError(
                    self.name, f"already running (container {self._short_id}) at {self.address}"
                )
            self._restart_existing()
            return self
        unavailable = docker_unavailable_reason()
        if unavailable is not None:
            raise DockerUnavailable(self.name, unavailable)
        _docker.ensure_session()
        try:
            self._create_and_start()
        except BaseException:
            self._remove()
            raise
        return self

    def stop(self) -> None:
        """Graceful stop with the spec's stop signal; SIGKILL after `stop_timeout`. Returns
        once the container has exited."""
        container = self._require_running("stop")
        container.stop(timeout=max(1, round(self.spec.stop_timeout)))
        self._wait_exit(container)

    def terminate(self) -> None:
        """SIGTERM, then wait for the exit (SIGKILL after `stop_timeout`)."""
        container = self._require_running("terminate")
        if self.paused:  # a frozen process handles its signal only once thawed
            container.unpause()
            self.paused = False
        self._signal(container, "SIGTERM")
        try:
            container.wait(timeout=self.spec.stop_timeout)
        except Exception:  # the wait timed out (requests raises its own exceptions)
            self._signal(container, "SIGKILL")
        self._wait_exit(container)

    def kill(self) -> None:
        """SIGKILL (Docker thaws a paused container to deliver it); returns once it exited."""
        container = self._require_running("kill")
        self._signal(container, "SIGKILL")
        self._wait_exit(container)

    def pause(self) -> None:
        """`docker pause` (the cgroup freezer): connections stay open, nothing answers."""
        container = self._require_running("pause")
        if container.status != "paused":
            container.pause()
        self.paused = True

    def resume(self) -> None:
        """`docker unpause` what `pause()` froze."""
        container = self._require_running("resume")
        if container.status == "paused":
            container.unpause()
        self.paused = False

    def restart(self) -> None:
        """Stop (if running) and start the same container again: same port, same data."""
        if self.running:
            self.stop()
        self.start()

    def close(self) -> None:
        """Remove the container (killing it) and its anonymous volumes. The host port is kept:
        a later start() makes a new container there, when it is free."""
        self._remove()

    # ---------------------------------------------------------------------------- internals
    @property
    def _short_id(self) -> str:
        return (self.container_id or "")[:12]

    def _status(self) -> str | None:
        if self._container is None:
            return None
        try:
            self._container.reload()
        except Exception:  # removed behind our back, or the engine went away
            return None
        return str(self._container.status)

    def _require_running(self, operation: str) -> Container:
        if self._container is None or not self.running:
            raise ServiceError(self.name, f"cannot {operation}(): it is not running")
        return self._container

    def _signal(self, container: Container, name: str) -> None:
        try:
            container.kill(signal=name)
        except Exception as error:
            if self.running:  # not merely "it exited meanwhile"
                raise ServiceError(
                    self.name, f"docker kill -s {name}: {_docker.one_line(error)}"
                ) from None

    def _wait_exit(self, container: Container) -> None:
        container.wait()
        self.paused = False

    def _create_and_start(self) -> None:
        api_error = _docker.docker_module("errors").APIError
        # The check and the pull use the name with testcontainers' registry prefix; the
        # container is created from the bare name, to which testcontainers adds it.
        try:
            image = _docker.ensure_image(self.spec.image)
        except _docker.ImageUnavailable as error:
            raise ServiceError(self.name, str(error)) from None
        for attempt in range(PORT_ATTEMPTS):
            if not self.port or (attempt and not self._fixed_port):
                self.port = free_port(LOOPBACK)
            if not port_is_free(LOOPBACK, self.port):
                if self._fixed_port or attempt + 1 == PORT_ATTEMPTS:
                    raise self._port_in_use()
                continue
            started_at = time.time()
            testcontainer = self._testcontainer = self._configure(self.spec.image)
            try:
                testcontainer.start()
            except BaseException as error:
                self._container = testcontainer._container  # created, maybe not started
                if not isinstance(error, api_error):
                    raise
                if not _docker.is_port_conflict(error):
                    raise ServiceError(
                        self.name, f"docker could not start {image}: {_docker.one_line(error)}"
                    ) from None
                self._remove()
                if self._fixed_port or attempt + 1 == PORT_ATTEMPTS:
                    raise self._port_in_use() from None
                continue
            self._container = testcontainer.get_wrapped_container()
            self._wait_ready(started_at)
            return
        raise AssertionError("unreachable")  # pragma: no cover

    def _configure(self, image: str) -> DockerContainer:
        from testcontainers.core.container import DockerContainer

        testcontainer = DockerContainer(image, env=dict(self.spec.env))
        if self.spec.command is not None:
            command = self.spec.command
            testcontainer.with_command(command if isinstance(command, str) else list(command))
        # Published on loopback only, at our port: docker stop/start keep this binding.
        binding: Any = (LOOPBACK, self.port)
        testcontainer.ports = {f"{self.spec.port}/tcp": binding}
        safe_name = re.sub(r"[^a-zA-Z0-9_.-]", "-", self.name)
        testcontainer.with_name(
            f"pytest-chaos-{safe_name}-{_docker.SESSION_ID[:8]}-{next(_containers_named)}"
        )
        testcontainer.with_kwargs(
            labels=_docker.session_labels(self.name),
            stop_signal=self.spec.stop_signal.name,
            network=self.network,
        )
        return testcontainer

    def _restart_existing(self) -> None:
        container = self._container
        assert container is not None
        started_at = time.time()
        try:
            container.start()
        except Exception as error:
            if _docker.is_port_conflict(error):
                raise self._port_in_use() from None
            raise ServiceError(
                self.name,
                f"docker could not start its container again: {_docker.one_line(error)}",
            ) from None
        self.paused = False
        try:
            self._wait_ready(started_at)
        except ServiceError:
            if self.running:
                with contextlib.suppress(Exception):
                    self.kill()
            raise

    def _wait_ready(self, started_at: float) -> None:
        """Until the wait strategy and the ready check pass; the container exiting first or
        the time running out raise, with the tail of its log."""
        container = self._container
        assert container is not None
        deadline = time.monotonic() + self.spec.ready_timeout
        pattern = self.spec.wait if isinstance(self.spec.wait, str | re.Pattern) else None
        if self.spec.wait is not None and pattern is None:
            self._run_wait_strategy(self.spec.wait, started_at, deadline)
        while True:
            try:
                ready = (pattern is None or _log_matches(container, pattern, started_at)) and (
                    self.spec.ready is None or self.spec.ready(self)
                )
            except Exception:
                ready = False
            if ready:
                return
            status = self._status()
            if status not in _LIVE_STATES:
                code = container.attrs.get("State", {}).get("ExitCode", "?")
                raise ServiceError(
                    self.name,
                    f"container of {self.spec.image} exited with code {code} before it was "
                    f"ready; log:\n{self._log_tail()}",
                )
            if time.monotonic() > deadline:
                raise self._not_ready()
            time.sleep(POLL_INTERVAL_SECONDS)

    def _run_wait_strategy(self, strategy: Any, started_at: float, deadline: float) -> None:
        remaining = max(1.0, deadline - time.monotonic())
        with contextlib.suppress(AttributeError, TypeError):
            strategy.with_startup_timeout(timedelta(seconds=remaining))
        assert self._testcontainer is not None
        target = _WaitTarget(self, self._testcontainer, started_at)
        try:
            strategy.wait_until_ready(target)
        except TimeoutError:
            raise self._not_ready() from None
        except Exception as error:
            if self._status() not in _LIVE_STATES:
                return  # the loop after it reports the exit with its code and log
            raise ServiceError(
                self.name,
                f"the wait strategy failed: {_docker.one_line(error)}; log:\n{self._log_tail()}",
            ) from None

    def _not_ready(self) -> ServiceError:
        return ServiceError(
            self.name,
            f"not ready after {self.spec.ready_timeout:g}s: the readiness check never passed; "
            f"log:\n{self._log_tail()}",
        )

    def _port_in_use(self) -> ServiceError:
        return ServiceError(self.name, f"port {self.port} on {LOOPBACK} is already in use")

    def _log_tail(self) -> str:
        log = None if self._container is None else _docker.log_tail(self._container, LOG_TAIL_LINES)
        if log is None:
            return "(no log)"
        return log or "(empty)"

    def _remove(self) -> None:
        container, self._container = self._container, None
        testcontainer, self._testcontainer = self._testcontainer, None
        self.paused = False
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        if testcontainer is not None:
            with contextlib.suppress(Exception):
                testcontainer.get_docker_client().client.close()


class _WaitTarget:
    """What a testcontainers wait strategy looks at: the container, through our host address,
    with the log of the current start only (a restart must not match the previous one's)."""

    def __init__(self, service: ContainerService, testcontainer: Any, since: float) -> None:
        self._service, self._testcontainer, self._since = service, testcontainer, since

    def get_container_host_ip(self) -> str:
        return self._service.host

    def get_exposed_port(self, port: int) -> int:
        if int(port) == self._service.spec.port:
            return self._service.port
        return int(self._testcontainer.get_exposed_port(port))

    def get_wrapped_container(self) -> Any:
        return self._testcontainer.get_wrapped_container()

    def get_logs(self) -> tuple[bytes, bytes]:
        container = self.get_wrapped_container()
        return (
            container.logs(stdout=True, stderr=False, since=self._since),
            container.logs(stdout=False, stderr=True, since=self._since),
        )

    def reload(self) -> None:
        self.get_wrapped_container().reload()

    @property
    def status(self) -> str:
        return str(self.get_wrapped_container().status)

    def __getattr__(self, name: str) -> Any:  # exec(), get_docker_client(), ...
        return getattr(self._testcontainer, name)


def _log_matches(container: Container, pattern: str | re.Pattern[str], since: float) -> bool:
    log = container.logs(since=since).decode(errors="replace")
    return re.search(pattern, log, re.MULTILINE) is not None


_containers_named = itertools.count(1)
