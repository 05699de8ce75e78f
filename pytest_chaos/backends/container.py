"""The Toxiproxy image in a container, started with testcontainers (`--chaos-backend container`).

Two network modes (`chaos_toxiproxy_network`):

- bridge (default): the API port 8474 and a pool of proxy ports (8666-8697, as in
  testcontainers-java's ToxiproxyContainer) are published on random 127.0.0.1 ports of this
  machine. Proxies listen on `0.0.0.0:<next free pool port>` inside the container and are
  reported as the published `127.0.0.1:<port>`, so tests connect to what they are given.
  Upstreams on this machine's loopback (`127.0.0.1:X`, `localhost:X`) are dialled as
  `host.docker.internal:X` (Docker's host-gateway), so such a server must listen on an address
  containers reach: 0.0.0.0, or the docker0 bridge's address. Docker's port forwarder accepts
  every connection itself, so a disabled proxy looks like a connection closed at once, not a
  refused one.
- host: the container shares this machine's network; the API listens on 127.0.0.1 on a free
  port, proxies listen where they are asked to, and upstreams are used as given.

Docker itself (the engine's availability, the image and its pull, the session's labels and
clean-up) is `_docker`'s. testcontainers and docker are imported inside the functions that need
them: the plugin's import must stay cheap.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from pytest_chaos import _docker
from pytest_chaos._ports import free_port
from pytest_chaos.backends import BackendError
from pytest_chaos.backends.client import (
    FeatureUnavailable,
    ProxyInfo,
    ToxiproxyClient,
    ToxiproxyError,
)

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

API_PORT = 8474
PROXY_PORTS = tuple(range(8666, 8698))
BACKEND_LABEL = "pytest-chaos.backend"
HOST_ALIAS = "host.docker.internal"
LOOPBACK_HOSTS = ("localhost", "::1", "")
START_TIMEOUT_SECONDS = 30.0
LOG_TAIL_LINES = 20
NETWORKS = ("bridge", "host")


class ToxiproxyContainer:
    """One Toxiproxy container for the session: `start()` returns a client of its API in the
    host's terms (see the module's docstring); `stop()` removes it, as does interpreter exit."""

    def __init__(
        self,
        image: str,
        network: str = "bridge",
        *,
        seed: int | None = None,
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        if network not in NETWORKS:
            raise BackendError(
                f"chaos_toxiproxy_network: {network!r} is not a network mode;"
                f" choose from {', '.join(NETWORKS)}"
            )
        self.image = image
        self.network = network
        self.seed = seed
        self.start_timeout = start_timeout
        self.url: str | None = None
        # Container port -> published 127.0.0.1 port (bridge network only).
        self.published: dict[int, int] = {}
        self._host_api_port = 0
        self._container: DockerContainer | None = None

    def start(self) -> ToxiproxyClient:
        """Start the container and wait until its API answers; BackendError saying why when
        there is no Docker, no image, or no answer (nothing is left behind then)."""
        require_docker()
        try:
            _docker.ensure_image(self.image)
            # Ryuk off when its image is absent (it would be pulled), the atexit clean-up and
            # the watchdog that removes this process's containers even after a SIGKILL.
            _docker.ensure_session()
        except _docker.ImageUnavailable as error:
            raise BackendError(
                f"--chaos-backend container: {error}; run `docker pull {error.image}`"
                " where a registry is reachable, choose a local image with"
                " --chaos-toxiproxy-image, or use --chaos-backend embedded"
            ) from None
        except Exception as error:
            raise BackendError(
                f"--chaos-backend container: Docker failed while looking for {self.image}:"
                f" {_docker.one_line(error)}"
            ) from None
        container: DockerContainer | None = None
        try:
            container = self._container = self._configure()
            atexit.register(self.stop)
            container.start()
            self.url = self._api_url(container)
            self._wait_until_answering(self.url)
        except BackendError:
            self.stop()
            raise
        except Exception as error:
            detail = _log_tail(container)
            self.stop()
            raise BackendError(
                f"--chaos-backend container: the {self.image} container did not start:"
                f" {_docker.one_line(error)}{detail}"
            ) from None
        except BaseException:
            self.stop()
            raise
        if self.network == "bridge":
            return PublishedPortsClient(self.url, self.published)
        return ToxiproxyClient(self.url)

    def stop(self) -> None:
        """Remove the container (idempotent); also registered with atexit."""
        container, self._container = self._container, None
        atexit.unregister(self.stop)
        if container is None:
            return
        with contextlib.suppress(Exception):
            wrapped = container.get_wrapped_container()
            wrapped.remove(force=True, v=True)
        with contextlib.suppress(Exception):
            container.get_docker_client().client.close()

    # -- start-up
    def _configure(self) -> DockerContainer:
        from testcontainers.core.container import DockerContainer

        seed = [f"-seed={self.seed}"] if self.seed is not None else []
        container = DockerContainer(self.image)
        labels = {BACKEND_LABEL: "toxiproxy", **_docker.session_labels()}
        options: dict[str, Any] = {"labels": labels}
        if self.network == "host":
            self._host_api_port = free_port()
            options["network"] = "host"
            container.with_command(["-host=127.0.0.1", f"-port={self._host_api_port}", *seed])
        else:
            options["network"] = "bridge"
            options["extra_hosts"] = {HOST_ALIAS: "host-gateway"}
            container.with_command(["-host=0.0.0.0", f"-port={API_PORT}", *seed])
            # (host ip, host port): published on loopback only, on a random port.
            ports: dict[str, Any] = container.ports
            for port in (API_PORT, *PROXY_PORTS):
                ports[f"{port}/tcp"] = ("127.0.0.1", None)
        container.with_kwargs(**options)
        return container

    def _api_url(self, container: DockerContainer) -> str:
        if self.network == "host":
            return f"http://127.0.0.1:{self._host_api_port}"
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        bindings = wrapped.attrs["NetworkSettings"]["Ports"] or {}
        for port in (API_PORT, *PROXY_PORTS):
            for binding in bindings.get(f"{port}/tcp") or ():
                if binding.get("HostIp") in ("127.0.0.1", "0.0.0.0", ""):
                    self.published[port] = int(binding["HostPort"])
                    break
        if API_PORT not in self.published:
            # An exited container has no ports any more.
            self._raise_if_exited()
            raise BackendError(
                f"--chaos-backend container: Docker published no port for the API ({API_PORT})"
            )
        return f"http://127.0.0.1:{self.published.pop(API_PORT)}"

    def _raise_if_exited(self) -> None:
        assert self._container is not None
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            code = wrapped.attrs.get("State", {}).get("ExitCode")
            raise BackendError(
                f"--chaos-backend container: the {self.image} container exited (code {code})"
                f" before its API answered{_log_tail(self._container)}"
            )

    def _wait_until_answering(self, url: str) -> None:
        """Poll `GET /version` until it answers; a container that exits is an error."""
        import httpx

        deadline = time.monotonic() + self.start_timeout
        last = "no answer yet"
        # One client for the whole wait (plain http: no CA store to load).
        with httpx.Client(timeout=1.0, trust_env=False, verify=False) as http:
            while True:
                try:
                    response = http.get(f"{url}/version")
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as error:
                    last = _docker.one_line(error)
                self._raise_if_exited()
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"--chaos-backend container: the API of the {self.image} container did"
                        f" not answer GET {url}/version within {self.start_timeout:.0f}s"
                        f" ({last}){_log_tail(self._container)}"
                    )
                time.sleep(0.05)


class PublishedPortsClient(ToxiproxyClient):
    """The API of a Toxiproxy in a bridge-networked container, in this machine's terms.

    Proxies listen on pool ports inside the container and are reported as the 127.0.0.1 ports
    Docker publishes them on; upstreams on this machine's loopback are sent as
    host.docker.internal and reported as they were given.
    """

    def __init__(self, url: str, published: dict[int, int], *, timeout: float = 10.0) -> None:
        super().__init__(url, timeout=timeout)
        self.published = dict(published)
        # Proxy name -> (upstream as given, upstream as sent to the container).
        self._upstreams: dict[str, tuple[str, str]] = {}

    def proxies(self) -> dict[str, ProxyInfo]:
        return {name: self._outside(p) for name, p in super().proxies().items()}

    def get_proxy(self, name: str) -> ProxyInfo:
        return self._outside(super().get_proxy(name))

    def create_proxy(
        self,
        name: str,
        upstream: str,
        *,
        listen: str = "127.0.0.1:0",
        enabled: bool = True,
        protocol: str = "tcp",
    ) -> ProxyInfo:
        if protocol != "tcp":
            # The pool's ports are published for TCP only.
            raise FeatureUnavailable(
                f"a {protocol.upper()} proxy cannot be reached in the Toxiproxy container on"
                " the bridge network: its proxy ports are published for TCP only (use"
                " --chaos-toxiproxy-network host with the pytest-chaos engine's image, or the"
                " embedded engine)"
            )
        inside = self._inside_listen(name, listen, self._ports_in_use(), f"create proxy {name}")
        sent = self._inside_upstream(name, upstream)
        return self._outside(super().create_proxy(name, sent, listen=inside, enabled=enabled))

    def update_proxy(self, name: str, **changes: Any) -> ProxyInfo:
        if "upstream" in changes:
            changes["upstream"] = self._inside_upstream(name, str(changes["upstream"]))
        if "listen" in changes:
            in_use = self._ports_in_use(excluding=name)
            changes["listen"] = self._inside_listen(
                name, str(changes["listen"]), in_use, f"update proxy {name}"
            )
        return self._outside(super().update_proxy(name, **changes))

    def populate(self, proxies: list[dict[str, Any]]) -> list[ProxyInfo]:
        existing = super().proxies()
        in_use = {port: name for name, p in existing.items() if (port := _port_of(p.listen))}
        inside: list[dict[str, Any]] = []
        for entry in proxies:
            name = str(entry.get("name", ""))
            translated = dict(entry)
            if "upstream" in entry:
                translated["upstream"] = self._inside_upstream(name, str(entry["upstream"]))
            listen = str(entry.get("listen") or "127.0.0.1:0")
            current = existing.get(name)
            if current is not None and _port_of(listen) == 0 and _port_of(current.listen):
                # Keep the port it has: populate then leaves an unchanged proxy alone.
                translated["listen"] = f"0.0.0.0:{_port_of(current.listen)}"
            else:
                others = {port for port, owner in in_use.items() if owner != name}
                translated["listen"] = self._inside_listen(name, listen, others, "populate")
            in_use[_port_of(translated["listen"])] = name
            inside.append(translated)
        return [self._outside(p) for p in super().populate(inside)]

    # -- translation
    def _ports_in_use(self, excluding: str | None = None) -> set[int]:
        return {_port_of(p.listen) for name, p in super().proxies().items() if name != excluding}

    def _inside_listen(self, name: str, listen: str, in_use: set[int], operation: str) -> str:
        port = _port_of(listen)
        if port == 0:
            free = [p for p in PROXY_PORTS if p in self.published and p not in in_use]
            if not free:
                raise ToxiproxyError(
                    409,
                    f"all {len(PROXY_PORTS)} proxy ports the Toxiproxy container publishes"
                    f" ({PROXY_PORTS[0]}-{PROXY_PORTS[-1]}) are in use; delete a proxy, or"
                    " set chaos_toxiproxy_network = host",
                    operation,
                )
            return f"0.0.0.0:{free[0]}"
        if port in self.published:
            return f"0.0.0.0:{port}"
        inside = {outside: inside for inside, outside in self.published.items()}
        if port in inside:
            return f"0.0.0.0:{inside[port]}"
        raise ToxiproxyError(
            400,
            f"listen {listen}: in a bridge-networked container a proxy can listen only on the"
            f" ports it publishes ({PROXY_PORTS[0]}-{PROXY_PORTS[-1]}); use port 0 for the next"
            " free one, or set chaos_toxiproxy_network = host",
            operation,
        )

    def _inside_upstream(self, name: str, upstream: str) -> str:
        host, colon, port = upstream.rpartition(":")
        bare = host.strip("[]").lower()
        sent = upstream
        if colon and (bare in LOOPBACK_HOSTS or bare.startswith("127.")):
            sent = f"{HOST_ALIAS}:{port}"
        self._upstreams[name] = (upstream, sent)
        return sent

    def _outside(self, proxy: ProxyInfo) -> ProxyInfo:
        published = self.published.get(_port_of(proxy.listen))
        listen = f"127.0.0.1:{published}" if published is not None else proxy.listen
        given, sent = self._upstreams.get(proxy.name, (proxy.upstream, proxy.upstream))
        upstream = given if proxy.upstream == sent else proxy.upstream
        if (listen, upstream) == (proxy.listen, proxy.upstream):
            return proxy
        return dataclasses.replace(proxy, listen=listen, upstream=upstream)


# -- Docker helpers
def require_docker() -> None:
    """Return when a Docker engine answers; else BackendError saying why, and what to do."""
    missing = _docker.missing_package()
    if missing is not None:
        raise BackendError(
            f"--chaos-backend container needs Docker support: {missing}; or use"
            " --chaos-backend embedded"
        )
    reason = _docker.docker_unavailable_reason()
    if reason is not None:
        raise BackendError(
            f"--chaos-backend container: cannot reach a Docker engine ({reason});"
            " start Docker (or set DOCKER_HOST), or use --chaos-backend embedded"
        )


def _log_tail(container: DockerContainer | None) -> str:
    if container is None:
        return ""
    try:
        wrapped = container.get_wrapped_container()
    except Exception:
        return ""
    text = _docker.log_tail(wrapped, LOG_TAIL_LINES)
    if text is None:
        return ""
    return f"; its log ends with:\n{text}" if text else "; its log is empty"


def _port_of(listen: str) -> int:
    port = listen.rpartition(":")[2]
    return int(port) if port.isdigit() else 0
