"""Toxic types, one module each, registered by their wire name in `TOXIC_TYPES`."""

from __future__ import annotations

from pytest_chaos.engine.toxics import (
    bandwidth,
    latency,
    limit_data,
    noop,
    packet_loss,
    reset_peer,
    slicer,
    slow_close,
    timeout,
)
from pytest_chaos.engine.toxics.base import TOXIC_TYPES, Toxic, ToxicStub

__all__ = [
    "TOXIC_TYPES",
    "Toxic",
    "ToxicStub",
    "bandwidth",
    "latency",
    "limit_data",
    "noop",
    "packet_loss",
    "reset_peer",
    "slicer",
    "slow_close",
    "timeout",
]
