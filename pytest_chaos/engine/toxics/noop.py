"""`noop`: passes data unchanged (useful to test the toxic machinery itself)."""

from __future__ import annotations

from pytest_chaos.engine.toxics.base import Toxic, register


@register
class Noop(Toxic):
    """Passes every item on unchanged: the default `pipe`, so its stage runs no task."""

    type_name = "noop"
