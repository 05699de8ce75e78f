"""A typed client for the Toxiproxy HTTP API, the same for every backend.

Works against the embedded engine, `pytest-chaos serve`, and a real Toxiproxy. Extensions only
the embedded engine has (events) raise `FeatureUnavailable` naming the feature and the backend.
One keep-alive connection makes a fault's apply plus revert cost about a millisecond.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx


class ToxiproxyError(Exception):
    """The server answered with an error (`status`, and upstream's exact `message`), or did not
    answer at all (`status` 0, and `message` says why)."""

    def __init__(self, status: int, message: str, operation: str) -> None:
        answer = f" (HTTP {status})" if status else ""
        super().__init__(f"{operation} failed: {message}{answer}")
        self.status = status
        self.message = message
        self.operation = operation


class FeatureUnavailable(Exception):
    """A feature of the embedded engine was asked of a server that lacks it."""


@dataclass(frozen=True)
class ToxicInfo:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToxicInfo:
        """The toxic as the API's JSON describes it."""
        return cls(
            name=data["name"],
            type=data["type"],
            stream=data["stream"],
            toxicity=float(data["toxicity"]),
            attributes=dict(data.get("attributes") or {}),
        )


@dataclass(frozen=True)
class ProxyInfo:
    """A proxy as the server reports it; `host` and `port` are where clients connect."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = field(default=())
    # "tcp", or "udp" for the engine's UDP proxies (an extension a Toxiproxy never shows).
    protocol: str = "tcp"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProxyInfo:
        """The proxy as the API's JSON describes it (its toxics included)."""
        return cls(
            name=data["name"],
            listen=data["listen"],
            upstream=data["upstream"],
            enabled=bool(data["enabled"]),
            toxics=tuple(ToxicInfo.from_json(t) for t in data.get("toxics") or ()),
            protocol=str(data.get("protocol") or "tcp"),
        )

    @property
    def host(self) -> str:
        """Where clients connect: the listen host, loopback for a proxy listening on every
        interface."""
        host = self.listen.rpartition(":")[0].strip("[]")
        # A proxy listening on every interface is reached on loopback from the tests.
        return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        return int(self.listen.rpartition(":")[2])

    @property
    def address(self) -> str:
        """`host:port` to give to the code under test."""
        return f"{self.host}:{self.port}"


class ToxiproxyClient:
    """Blocking client of one Toxiproxy API (`url` like http://127.0.0.1:8474).

    `diagnose`, if given, is asked why the server cannot be reached when a request gets no
    answer (the embedded engine's process knows it died, and how); None means it does not
    know, and the transport's error is reported instead.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        diagnose: Callable[[], str | None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._diagnose = diagnose
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"User-Agent": "pytest-chaos"},
            # Traffic to the API must never go through a proxy from the environment.
            trust_env=False,
            # Loading the CA store costs ~15 ms per client; plain http needs none of it.
            verify=self.url.startswith("https://"),
        )
        self._engine_version: str | bool | None = False

    def close(self) -> None:
        """Close the keep-alive connection to the API."""
        self._http.close()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing
    def _request(self, method: str, path: str, operation: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as error:
            why = None if self._diagnose is None else self._diagnose()
            raise ToxiproxyError(0, f"cannot reach {self.url}: {why or error}", operation) from None
        if response.status_code >= 400:
            try:
                message = str(response.json()["error"])
            except (ValueError, KeyError, TypeError):
                message = response.text.strip() or response.reason_phrase
            raise ToxiproxyError(response.status_code, message, operation)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -- the Toxiproxy API
    def version(self) -> str:
        """The Toxiproxy version the server reports (`GET /version`)."""
        return str(self._request("GET", "/version", "version")["version"])

    def engine(self) -> str | None:
        """The embedded engine's version when the server is ours, None for a real Toxiproxy."""
        if self._engine_version is False:
            payload = self._request("GET", "/version", "version")
            engine = payload.get("engine") if isinstance(payload, dict) else None
            self._engine_version = str(engine) if engine else None
        return self._engine_version if isinstance(self._engine_version, str) else None

    def proxies(self) -> dict[str, ProxyInfo]:
        """Every proxy, by name (`GET /proxies`)."""
        data = self._request("GET", "/proxies", "list proxies")
        return {name: ProxyInfo.from_json(p) for name, p in data.items()}

    def get_proxy(self, name: str) -> ProxyInfo:
        """The proxy `name` (`GET /proxies/{name}`; ToxiproxyError 404 when there is none)."""
        return ProxyInfo.from_json(
            self._request("GET", f"/proxies/{_segment(name)}", f"get proxy {name}")
        )

    def create_proxy(
        self,
        name: str,
        upstream: str,
        *,
        listen: str = "127.0.0.1:0",
        enabled: bool = True,
        protocol: str = "tcp",
    ) -> ProxyInfo:
        """Create a proxy (`POST /proxies`); 409 when the name is taken. `protocol="udp"`
        makes a UDP proxy, which only the pytest-chaos engine has (FeatureUnavailable
        elsewhere)."""
        body: dict[str, Any] = {
            "name": name,
            "upstream": upstream,
            "listen": listen,
            "enabled": enabled,
        }
        if protocol != "tcp":
            # Sent only when asked: a TCP proxy's request stays upstream's.
            self._require_engine(f"a {protocol.upper()} proxy")
            body["protocol"] = protocol
        return ProxyInfo.from_json(self._request("POST", "/proxies", f"create proxy {name}", body))

    def update_proxy(self, name: str, **changes: Any) -> ProxyInfo:
        """Change some of a proxy's fields (`listen`, `upstream`, `enabled`); the rest are kept."""
        data = self._request("POST", f"/proxies/{_segment(name)}", f"update proxy {name}", changes)
        return ProxyInfo.from_json(data)

    def delete_proxy(self, name: str) -> None:
        """Delete a proxy, closing its listener and connections."""
        self._request("DELETE", f"/proxies/{_segment(name)}", f"delete proxy {name}")

    def populate(self, proxies: list[dict[str, Any]]) -> list[ProxyInfo]:
        """Create or replace proxies as `POST /populate` does; the proxies it answers with."""
        data = self._request("POST", "/populate", "populate", proxies)
        return [ProxyInfo.from_json(p) for p in data.get("proxies") or ()]

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (`POST /reset`)."""
        self._request("POST", "/reset", "reset")

    def add_toxic(
        self,
        proxy: str,
        type: str,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: dict[str, Any] | None = None,
    ) -> ToxicInfo:
        """Add a toxic to `proxy` (attributes by their Toxiproxy names; default name
        `<type>_<stream>`)."""
        body: dict[str, Any] = {
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes or {},
        }
        if name is not None:
            body["name"] = name
        operation = f"add {type} toxic to proxy {proxy}"
        return ToxicInfo.from_json(
            self._request("POST", f"/proxies/{_segment(proxy)}/toxics", operation, body)
        )

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        toxicity: float | None = None,
        attributes: dict[str, int] | None = None,
    ) -> ToxicInfo:
        """Change a toxic's toxicity and attributes (merged over the current ones)."""
        body: dict[str, Any] = {"attributes": attributes or {}}
        if toxicity is not None:
            body["toxicity"] = toxicity
        operation = f"update toxic {name} of proxy {proxy}"
        path = f"/proxies/{_segment(proxy)}/toxics/{_segment(name)}"
        return ToxicInfo.from_json(self._request("POST", path, operation, body))

    def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove the toxic `name` from `proxy`."""
        operation = f"remove toxic {name} from proxy {proxy}"
        self._request("DELETE", f"/proxies/{_segment(proxy)}/toxics/{_segment(name)}", operation)

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        """The toxics of `proxy`, upstream ones first."""
        data = self._request(
            "GET", f"/proxies/{_segment(proxy)}/toxics", f"list toxics of proxy {proxy}"
        )
        return [ToxicInfo.from_json(t) for t in data]

    # -- extensions of the embedded engine
    def events(
        self, since: int = 0, *, proxy: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """Events newer than `since`, and the sequence number to ask from next time."""
        self._require_engine("events")
        params = f"?since={since}" + (f"&proxy={quote(proxy, safe='')}" if proxy else "")
        data = self._request("GET", f"/events{params}", "read events")
        return list(data["events"]), int(data["last_seq"])

    def set_seed(self, seed: int | None) -> None:
        """Seed the engine's draws from now on (None: unseeded); connections are numbered
        from 1 again per proxy, so draws do not depend on what came before."""
        self._require_engine("seeding")
        self._request("POST", "/seed", "set seed", {"seed": seed})

    def _require_engine(self, feature: str) -> None:
        if self.engine() is None:
            raise FeatureUnavailable(
                f"{feature} needs the pytest-chaos engine; the server at {self.url} is a plain"
                " Toxiproxy (use --chaos-backend embedded, or run `pytest-chaos serve`)"
            )


def _segment(name: str) -> str:
    """A proxy or toxic name as one URL path segment (`?`, `#`, `/` and spaces escaped)."""
    return quote(name, safe="")
