"""What every service is: a name (its proxy's), a direct address, and process operations;
and the external address, which supports none of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, Self


class ServiceError(Exception):
    """A service could not be started or operated; the message names the service and cause."""

    def __init__(self, service: str, cause: str) -> None:
        super().__init__(f"service {service!r}: {cause}")
        self.service = service
        self.cause = cause


class BinaryNotFound(ServiceError):
    """The service's binary is not installed here (callers may skip rather than fail)."""


class UnsupportedOperation(ServiceError):
    """The provider cannot do that (an external address cannot be killed)."""


class Service(ABC):
    """A dependency reached through a proxy named `name`, directly at `address`.

    `provider` says what runs it: "local" (a process from a binary), "container" (Docker,
    through testcontainers) or "external" (an address the plugin did not start).
    """

    name: str
    host: str
    port: int
    provider: ClassVar[str]
    paused: bool = False

    @property
    @abstractmethod
    def running(self) -> bool:
        """True while the server exists (paused included); False once stopped or killed."""
        raise NotImplementedError

    def ensure_serving(self) -> None:
        """Undo a process fault: resume it if paused, start it (same port and data) if it was
        stopped or killed. Nothing to do when it is serving."""
        if self.running and self.paused:
            self.resume()
        elif not self.running:
            self.start()

    @property
    def address(self) -> str:
        """The direct `host:port` (the upstream of the proxy named after the service); an IPv6
        host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @abstractmethod
    def start(self) -> Self:
        """Start the server and wait until it is ready; returns the service (for `with`)."""
        raise NotImplementedError

    @abstractmethod
    def stop(self) -> None:
        """Stop the server gracefully and wait until it has exited (port and data are kept)."""
        raise NotImplementedError

    @abstractmethod
    def restart(self) -> None:
        """Stop (if running) and start again: same port, same data."""
        raise NotImplementedError

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL the server and wait until it has exited."""
        raise NotImplementedError

    @abstractmethod
    def terminate(self) -> None:
        """SIGTERM the server and wait until it has exited."""
        raise NotImplementedError

    @abstractmethod
    def pause(self) -> None:
        """Freeze the server (SIGSTOP, docker pause): connections stay open, nothing answers."""
        raise NotImplementedError

    @abstractmethod
    def resume(self) -> None:
        """Thaw what `pause()` froze."""
        raise NotImplementedError

    @abstractmethod
    def close(self) -> None:
        """Stop the server for good and remove what it left (directory, container)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} at {self.address}>"


class External(Service):
    """An address the plugin did not start: network faults (through its proxy) only."""

    provider = "external"

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port

    @property
    def running(self) -> bool:
        return True  # as far as we can tell: we neither started it nor can stop it

    @classmethod
    def from_address(cls, name: str, address: str) -> External:
        """`External("db", ...)` from `host:port`."""
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ServiceError(
                name,
                f"an external address must be host:port with a port from 1 to 65535, got"
                f" {address!r}",
            )
        return cls(name, host.strip("[]"), int(port))

    def _unsupported(self, operation: str) -> UnsupportedOperation:
        return UnsupportedOperation(
            self.name,
            f"{operation}() is not possible on an external address ({self.address}): "
            "the plugin did not start it; only network faults apply to it",
        )

    def start(self) -> Self:
        return self  # nothing to start: it is already there

    def close(self) -> None:
        pass  # nothing to clean up

    def stop(self) -> None:
        raise self._unsupported("stop")

    def restart(self) -> None:
        raise self._unsupported("restart")

    def kill(self) -> None:
        raise self._unsupported("kill")

    def terminate(self) -> None:
        raise self._unsupported("terminate")

    def pause(self) -> None:
        raise self._unsupported("pause")

    def resume(self) -> None:
        raise self._unsupported("resume")
