"""What a service is before it runs: a name, how to run it locally and in a container, and the
choice between them (the provider), made once per service when its fixture starts it.

The choice, first match wins:

1. an external address for the name (`CHAOS_EXTERNAL_<NAME>=host:port` in the environment, or
   `name = host:port` in the `chaos_external` ini list): the plugin starts nothing;
2. the definition's own `provider`, else `--chaos-services` / `chaos_services`:
   `container` (Docker, through testcontainers), `local` (a binary from PATH), or `auto`:
   a container when the definition has an image and a Docker engine answers, else the local
   binary.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pytest_chaos.services.base import External, Service, ServiceError
from pytest_chaos.services.recipes import (
    Recipe,
    postgres_ready,
    postgres_recipe,
    redis_ready,
    redis_recipe,
)

if TYPE_CHECKING:
    from pytest_chaos.services.container import ContainerSpec

PROVIDERS = ("auto", "container", "local")
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


@dataclass(frozen=True)
class ServiceDefinition:
    """A dependency the plugin can run: `local` (a Recipe for a binary on PATH) and/or
    `container` (a ContainerSpec: image, port, readiness). `url` is a template for clients,
    with `{host}` and `{port}` (e.g. "redis://{host}:{port}/0"). `provider` forces "local" or
    "container" for this service whatever `chaos_services` says."""

    name: str
    local: Recipe | None = None
    container: ContainerSpec | None = None
    url: str | None = None
    provider: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise ServiceError(
                str(self.name),
                "a service name must start with a letter or _ and hold only letters, digits,"
                " _, . and - (it names the service's proxy and fixture)",
            )
        if self.local is None and self.container is None:
            raise ServiceError(
                self.name,
                "needs a way to run: local=Recipe(...) and/or container=ContainerSpec(...)",
            )
        if self.provider is not None and self.provider not in ("container", "local"):
            raise ServiceError(
                self.name, f"provider must be 'container' or 'local', got {self.provider!r}"
            )


def redis_service(
    name: str = "redis", *, image: str = "redis:7", provider: str | None = None
) -> ServiceDefinition:
    """Redis: the `image` in a container, or a local `redis-server` (no persistence)."""
    from pytest_chaos.services.container import ContainerSpec

    return ServiceDefinition(
        name,
        local=redis_recipe(name),
        container=ContainerSpec(image=image, port=6379, ready=redis_ready),
        url="redis://{host}:{port}/0",
        provider=provider,
    )


def postgres_service(
    name: str = "postgres", *, image: str = "postgres:16", provider: str | None = None
) -> ServiceDefinition:
    """PostgreSQL with trust authentication, user and database `postgres`: the `image` in a
    container, or a local cluster made by `initdb` (data kept across stop/start)."""
    from pytest_chaos.services.container import ContainerSpec

    return ServiceDefinition(
        name,
        local=postgres_recipe(name),
        container=ContainerSpec(
            image=image,
            port=5432,
            env={"POSTGRES_HOST_AUTH_METHOD": "trust"},
            ready=postgres_ready,
            stop_signal=signal.SIGINT,  # PostgreSQL's "fast shutdown"
        ),
        url="postgresql://postgres@{host}:{port}/postgres",
        provider=provider,
    )


def external_address(name: str, configured: dict[str, str]) -> str | None:
    """The external `host:port` given for `name` by the environment or the ini file."""
    return os.environ.get(external_variable(name)) or configured.get(name)


def external_variable(name: str) -> str:
    """The environment variable that gives service `name` an external address."""
    return "CHAOS_EXTERNAL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def open_service(
    definition: ServiceDefinition,
    *,
    providers: str = "auto",
    images: dict[str, str] | None = None,
    external: dict[str, str] | None = None,
) -> Service:
    """The (not yet started) service for `definition`, from the provider chosen as the module
    docstring says. Raises ServiceError naming the service and why no provider fits."""
    name = definition.name
    address = external_address(name, external or {})
    if address:
        return External.from_address(name, address)
    choice = definition.provider or providers
    if choice not in PROVIDERS:
        raise ServiceError(name, f"provider must be one of {', '.join(PROVIDERS)}, got {choice!r}")
    if choice in ("auto", "container") and definition.container is not None:
        from pytest_chaos.services.container import ContainerService, docker_unavailable_reason

        reason = docker_unavailable_reason()
        if reason is None:
            spec = definition.container
            image = (images or {}).get(name)
            if image:
                spec = replace(spec, image=image)
            return ContainerService(spec, name=name)
        if choice == "container":
            raise ServiceError(name, f"cannot run it in a container: {reason}")
    if choice == "container":
        raise ServiceError(name, "has no container image (container=ContainerSpec(...)) to run")
    if definition.local is None:
        why = (
            "chaos_services is 'local'"
            if choice == "local"
            else "Docker is not available to run its image"
        )
        raise ServiceError(
            name,
            f"has no local recipe (local=Recipe(...)) and {why}; give it a recipe, run it in a"
            " container (--chaos-services container, with Docker), or name an external address"
            f" with {external_variable(name)}=host:port",
        )
    from pytest_chaos.services.local import LocalProcess

    return LocalProcess(definition.local, name=name)
