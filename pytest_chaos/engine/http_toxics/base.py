"""What the HTTP toxics share: attributes that are the options of their fault class in
`pytest_chaos.faults` (one source of names, defaults, checks and messages for the API and the
plugin), and their state at work (requests matched, seeded draws)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any, ClassVar

from pytest_chaos.engine.errors import bad_request
from pytest_chaos.engine.toxics.base import Toxic
from pytest_chaos.faults import FaultError, HttpFault, ordered_fields
from pytest_chaos.http_rules import HttpFaultState


class HttpToxic(Toxic):
    """An HTTP toxic: its attributes are the options of `fault_class`, as JSON."""

    acts_on_connection = True
    fault_class: ClassVar[type[HttpFault]]

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        super().__init__(attributes)
        self.fault = self.fault_class.from_options(attributes)
        self._state: HttpFaultState | None = None
        self._state_key = ""

    @classmethod
    def parse_attributes(
        cls, raw: object, current: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The attributes merged over `current` (an update) or the defaults, checked by the
        fault class; 400 with its message when one is wrong."""
        values: dict[str, Any] = dict(current) if current is not None else {}
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise bad_request("attributes must be a JSON object")
        values.update(raw)
        missing = [
            f.name
            for f in ordered_fields(cls.fault_class)
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise bad_request(f"{cls.type_name}: attribute {missing[0]} is required")
        try:
            fault = cls.fault_class.from_options(values)
        except FaultError as error:
            raise bad_request(str(error)) from None
        return fault.options()

    def state(self, seed: int | None, proxy: str, name: str) -> HttpFaultState:
        """The toxic at work on `proxy`: it counts the requests it matched on every connection
        of the proxy since it was added or updated (`first` counts these), and the n-th
        request it draws for gets the n-th number of a sequence fixed by the seed, the proxy
        and its name (a new seed, from `POST /seed`, starts a new sequence)."""
        key = f"{seed}/{proxy}/{name}"
        if self._state is None or key != self._state_key:
            draws = random.Random(key if seed is not None else None)
            self._state = HttpFaultState(name, self.fault, draws)
            self._state_key = key
        return self._state
