"""Dependencies the plugin can start and hurt: local processes and external addresses.

A service has a `name` (the proxy that reaches it is named the same, so network faults and
process faults share one name) and a direct `address` (`host:port`, the proxy's upstream). Its
operations are `start()`, `stop()`, `restart()` (same port, same data directory), `kill()`
(SIGKILL), `terminate()` (SIGTERM), `pause()`/`resume()` (SIGSTOP/SIGCONT) and `close()`.

Providers:

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
process behind. Nothing outlives the session: each process leads its own process group (its
descendants are found through /proc as well), is killed by the kernel if pytest dies
(PR_SET_PDEATHSIG, Linux), and an atexit handler kills whatever is still running.
"""

from pytest_chaos.services.base import (
    BinaryNotFound,
    External,
    Service,
    ServiceError,
    UnsupportedOperation,
)
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
    "External",
    "LocalProcess",
    "Recipe",
    "Service",
    "ServiceError",
    "UnsupportedOperation",
    "postgres_ready",
    "postgres_recipe",
    "redis_ready",
    "redis_recipe",
    "tcp_ready",
]
