"""`noop`: passes data unchanged (useful to test the toxic machinery itself)."""

from __future__ import annotations

from pytest_chaos.engine.toxics.base import Toxic, register


@register
class Noop(Toxic):
    type_name = "noop"
