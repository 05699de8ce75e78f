"""Dependencies the plugin can start and hurt: containers, local processes, external addresses.

A service has a `name` (the proxy that reaches it is named the same, so network faults and
process faults share one name) and a direct `address` (`host:port`, the proxy's upstream). Its
operations are `start()`, `stop()`, `restart()` (same port, same data), `kill()` (SIGKILL),
`terminate()` (SIGTERM), `pause()`/`resume()` (SIGSTOP/SIGCONT, or docker pause) and `close()`.

In a test suite, declare services as fixtures in conftest.py (session-scoped by default):

    from pytest_chaos.services import postgres_service, redis_service, service_fixture

    redis = service_fixture(redis_service())       # fixture and proxy "redis"
    postgres = service_fixture(postgres_service(image="postgres:16-alpine"))

Each yields a `RunningService`: `.url`/`.host`/`.port` through the proxy, `.direct` around it,
and the process operations. The provider is chosen per service (see `definitions`): an
external address if one is configured, else a container when Docker answers (or
`--chaos-services container`), else the local binary (`--chaos-services local`).
Declare your own with
`ServiceDefinition(name, local=Recipe(...), container=ContainerSpec(...))`.

Providers, usable on their own too:

- `ContainerService(ContainerSpec(image, port, ...), name=...)`: a Docker container through
  testcontainers, its port published on 127.0.0.1 (the same host port across restarts).
- `LocalProcess(recipe)`: a binary from PATH started on a free loopback port in a temporary
  directory. `redis_recipe()` and `postgres_recipe()` are built in; declare your own with
  `Recipe(name, command, ready=...)`, where the command may use `{host}`, `{port}`,
  `{data_dir}` (kept across restarts) and `{directory}` (the temporary directory):

      files = Recipe(
          "files",
          ["python3", "-m", "http.server", "{port}", "--bind", "{host}", "-d", "{data_dir}"],
          ready=tcp_ready,  # any callable taking the service and returning True when ready
          ready_timeout=10,
      )
      with LocalProcess(files) as server:  # start() ... close()
          ...  # server.address, server.data_dir, server.kill(), server.restart()

- `External(name, host, port)`: an address the plugin did not start; network faults only, and
  every process operation raises `UnsupportedOperation`.

Bad input fails fast with a `ServiceError` naming the service and the cause, and leaves no
process or container behind. Nothing outlives the session: each local process leads its own
process group (its descendants are found through /proc as well), is killed by the kernel if
pytest dies (PR_SET_PDEATHSIG, Linux), and an atexit handler kills whatever is still running;
containers are reaped by Ryuk where its image is present, else by an exit handler and a
watchdog process that outlives a crashed pytest just long enough to remove them.
"""

from typing import TYPE_CHECKING, Any

from pytest_chaos.services.base import (
    BinaryNotFound,
    External,
    Service,
    ServiceError,
    UnsupportedOperation,
)
from pytest_chaos.services.definitions import (
    ServiceDefinition,
    open_service,
    postgres_service,
    redis_service,
)
from pytest_chaos.services.fixtures import RunningService, service_fixture
from pytest_chaos.services.local import LocalProcess
from pytest_chaos.services.recipes import (
    Recipe,
    postgres_ready,
    postgres_recipe,
    redis_ready,
    redis_recipe,
    tcp_ready,
)

__all__ = [
    "BinaryNotFound",
    "ContainerService",
    "ContainerSpec",
    "External",
    "LocalProcess",
    "Recipe",
    "RunningService",
    "Service",
    "ServiceDefinition",
    "ServiceError",
    "UnsupportedOperation",
    "docker_unavailable_reason",
    "open_service",
    "postgres_ready",
    "postgres_recipe",
    "postgres_service",
    "redis_ready",
    "redis_recipe",
    "redis_service",
    "service_fixture",
    "tcp_ready",
]

if TYPE_CHECKING:
    from pytest_chaos.services.container import (
        ContainerService,
        ContainerSpec,
        docker_unavailable_reason,
    )

_CONTAINER_NAMES = ("ContainerService", "ContainerSpec", "docker_unavailable_reason")


def __getattr__(name: str) -> Any:
    # The container provider is imported on first use only (it is the one that may end up
    # importing testcontainers and the Docker SDK).
    if name in _CONTAINER_NAMES:
        from pytest_chaos.services import container

        return getattr(container, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
