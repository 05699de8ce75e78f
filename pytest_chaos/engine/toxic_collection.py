"""A proxy's toxics: validation of the API's JSON, their JSON form, and per-stream settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Registers the HTTP-aware toxic types (`http_error`, `http_delay`, `http_abort`) by name.
import pytest_chaos.engine.http_toxics  # noqa: F401
from pytest_chaos.engine.errors import (
    INVALID_STREAM,
    INVALID_TOXIC_TYPE,
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
    bad_request,
)
from pytest_chaos.engine.link import ToxicSetting
from pytest_chaos.engine.names import check_name
from pytest_chaos.engine.toxics import TOXIC_TYPES, Toxic

STREAMS = ("upstream", "downstream")
# The key of `syn_settings` in the settings cache, beside the streams'.
SYN_KEY = "syn"


@dataclass(frozen=True)
class ToxicSpec:
    """A toxic as the API shows it, with the setting the links run."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]
    setting: ToxicSetting

    def to_json(self) -> dict[str, Any]:
        """The toxic as upstream's API shows it."""
        # Go prints a float32 1.0 as `1`; clients compare against that.
        toxicity: float | int = int(self.toxicity) if self.toxicity.is_integer() else self.toxicity
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": toxicity,
        }


def _build(
    types: Mapping[str, type[Toxic]],
    name: str,
    type_name: str,
    stream: str,
    toxicity: float,
    attributes: dict[str, int],
) -> ToxicSpec:
    toxic = types[type_name](attributes)
    setting = ToxicSetting(name=name, type=type_name, toxicity=toxicity, toxic=toxic)
    return ToxicSpec(name, type_name, stream, toxicity, attributes, setting)


def _optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{key} must be a string, got {type(value).__name__}")
    return value


def _parse_toxicity(body: dict[str, Any]) -> float | None:
    value = body.get("toxicity")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"toxicity must be a number between 0 and 1, got {value!r}")
    if not 0 <= value <= 1:
        raise bad_request(f"toxicity must be between 0 and 1, got {value}")
    return float(value)


class ToxicCollection:
    """The toxics of one proxy, in the order they were added (of the `types` it takes: a UDP
    proxy's are datagram toxics)."""

    def __init__(self, types: Mapping[str, type[Toxic]] = TOXIC_TYPES) -> None:
        self._toxics: dict[str, ToxicSpec] = {}
        self._types = types
        # `settings` per stream, as every new connection asks for them (twice with the SYN
        # model): built once per change of the toxics, not per connection.
        self._settings: dict[str, list[ToxicSetting]] = {}
        # Once true, the proxy's connections parse HTTP from their first byte, so that a later
        # HTTP toxic never starts reading a connection mid-message (see `connection_settings`).
        self.had_connection_toxics = False

    def add(self, body: dict[str, Any]) -> ToxicSpec:
        """Validate and add a toxic from an API body, with upstream's defaults and errors."""
        type_name = _optional_string(body, "type") or ""
        given_stream = _optional_string(body, "stream")
        name = _optional_string(body, "name")
        toxicity = _parse_toxicity(body)
        # As upstream: absent or null means downstream, the case is ignored, "" is invalid.
        stream = "downstream" if given_stream is None else given_stream.lower()
        if stream not in STREAMS:
            raise ApiError(400, INVALID_STREAM)
        toxic_class = self._types.get(type_name)
        if toxic_class is None:
            raise ApiError(400, INVALID_TOXIC_TYPE)
        if name:
            check_name(name, "toxic name")
        # Upstream builds the default name from the stream as given: `latency_UPSTREAM`.
        name = name or f"{type_name}_{stream if given_stream is None else given_stream}"
        if name in self._toxics:
            raise ApiError(409, TOXIC_EXISTS)
        attributes = toxic_class.parse_attributes(body.get("attributes"))
        toxicity = 1.0 if toxicity is None else toxicity
        spec = _build(self._types, name, type_name, stream, toxicity, attributes)
        self._toxics[name] = spec
        self._settings.clear()
        self.had_connection_toxics |= toxic_class.acts_on_connection
        return spec

    def update(self, name: str, body: dict[str, Any]) -> ToxicSpec:
        """Replace a toxic's toxicity and attributes, merged over the current ones."""
        current = self.get(name)
        toxicity = _parse_toxicity(body)
        attributes = self._types[current.type].parse_attributes(
            body.get("attributes"), current.attributes
        )
        spec = _build(
            self._types,
            name,
            current.type,
            current.stream,
            current.toxicity if toxicity is None else toxicity,
            attributes,
        )
        self._toxics[name] = spec
        self._settings.clear()
        return spec

    def remove(self, name: str) -> ToxicSpec:
        """Remove a toxic and return it (404 if there is none of that name)."""
        spec = self.get(name)
        del self._toxics[name]
        self._settings.clear()
        return spec

    def get(self, name: str) -> ToxicSpec:
        """The toxic called `name`, or upstream's 404."""
        try:
            return self._toxics[name]
        except KeyError:
            raise ApiError(404, TOXIC_NOT_FOUND) from None

    def clear(self) -> bool:
        """Remove every toxic; true if there were any."""
        had_toxics = bool(self._toxics)
        self._toxics.clear()
        self._settings.clear()
        return had_toxics

    def listing(self) -> list[ToxicSpec]:
        """Upstream toxics first, then downstream, each in the order they were added."""
        return [
            spec for stream in STREAMS for spec in self._toxics.values() if spec.stream == stream
        ]

    def settings(self, stream: str) -> list[ToxicSetting]:
        """The toxics the links of `stream` run as stages (not the connection-level ones).

        The list is shared by every caller until the toxics change: read it, never change it."""
        settings = self._settings.get(stream)
        if settings is None:
            settings = self._settings[stream] = [
                spec.setting
                for spec in self._toxics.values()
                if spec.stream == stream and not spec.setting.toxic.acts_on_connection
            ]
        return settings

    def syn_settings(self) -> list[ToxicSetting]:
        """The toxics that can lose a connection's SYNs (`packet_loss`, see `handshake.py`),
        cached as `settings` are: a new connection asks, and usually there are none."""
        settings = self._settings.get(SYN_KEY)
        if settings is None:
            settings = self._settings[SYN_KEY] = [
                spec.setting for spec in self._toxics.values() if spec.type == "packet_loss"
            ]
        return settings

    def connection_settings(self) -> list[ToxicSetting]:
        """The toxics that act on whole connections (HTTP-aware), in the order they were
        added, whatever their stream."""
        return [s.setting for s in self._toxics.values() if s.setting.toxic.acts_on_connection]

    def __len__(self) -> int:
        return len(self._toxics)
