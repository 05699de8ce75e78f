"""Toxics with probability attributes: fractions from 0 to 1, beside the integer attributes
every other toxic has (upstream's `packet_loss` takes `loss_rate` and `correlation` as JSON
numbers such as 0.05).

Integer attributes of these toxics may also have non-zero defaults (`defaults`): upstream's
convention of zero meaning "not given" does not fit a segment size or a retry count, and the
API shows the values in force.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from pytest_chaos.engine.errors import bad_request
from pytest_chaos.engine.toxics.base import Toxic


class ProbabilityToxic(Toxic):
    """A toxic whose `probability_names` attributes are numbers from 0 to 1 (floats)."""

    probability_names: ClassVar[tuple[str, ...]] = ()
    # Integer attributes whose value when not given is not 0.
    defaults: ClassVar[Mapping[str, int]] = {}

    @classmethod
    def attribute_names(cls) -> list[str]:
        """Every attribute, in the order the API lists them: probabilities first."""
        return [*cls.probability_names, *(spec.name for spec in cls.attribute_specs)]

    @classmethod
    def parse_attributes(  # the probabilities make this a dict of ints and floats
        cls, raw: object, current: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        if current is None:
            integers = {spec.name: cls.defaults.get(spec.name, 0) for spec in cls.attribute_specs}
            probabilities: dict[str, float] = dict.fromkeys(cls.probability_names, 0.0)
        else:
            integers = {spec.name: current[spec.name] for spec in cls.attribute_specs}
            probabilities = {name: current[name] for name in cls.probability_names}
        # The base class checks the integers (and that `raw` is an object) first.
        integers = super().parse_attributes(raw, integers)
        given = raw if isinstance(raw, dict) else {}
        for name in cls.probability_names:
            value = given.get(name)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 <= value <= 1
            ):
                raise bad_request(
                    f"attribute {name} of {cls.type_name} must be a probability from 0 to 1,"
                    f" got {value!r}"
                )
            probabilities[name] = float(value)
        return {**probabilities, **integers}
