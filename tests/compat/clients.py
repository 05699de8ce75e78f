"""What upstream's clients send: the Go client (and `toxiproxy-cli`, built on it) marshals its
structs with fixed keys; these build the same JSON bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

GO_CLIENT_HEADERS = {"User-Agent": "toxiproxy-cli", "Content-Type": "application/json"}


def go_proxy(name: str, listen: str, upstream: str, *, enabled: bool) -> dict[str, Any]:
    """A `client.Proxy` as the Go client marshals it (`toxics` is a nil slice)."""
    return {
        "name": name,
        "listen": listen,
        "upstream": upstream,
        "enabled": enabled,
        "toxics": None,
    }


def go_toxic(
    name: str,
    type_name: str,
    stream: str,
    toxicity: float,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `client.Toxic` as `Proxy.AddToxic` marshals it: an empty stream is left out, and a
    toxicity of -1 means 1."""
    body: dict[str, Any] = {"name": name, "type": type_name, "stream": stream}
    body["toxicity"] = 1 if toxicity == -1 else toxicity
    body["attributes"] = attributes
    if not stream:
        del body["stream"]
    return body


def delete_every_proxy(api: httpx.Client) -> None:
    """Delete every proxy through the API (upstream's tests clear their server so)."""
    response = api.get("/proxies")
    assert response.status_code == 200, response.text
    for name in response.json():
        deleted = api.delete(f"/proxies/{quote(name, safe='')}")
        assert deleted.status_code == 204, deleted.text
