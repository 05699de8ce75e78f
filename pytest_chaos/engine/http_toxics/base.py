"""What the HTTP toxics share: attributes checked by the fault classes of `pytest_chaos.faults`
(one source of names, defaults and messages for the API and the plugin), the count of requests
they matched, their seeded draws, and how each shapes the plan of one request."""

from __future__ import annotations

import abc
import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pytest_chaos.engine.errors import bad_request
from pytest_chaos.engine.toxics.base import Toxic
from pytest_chaos.faults import FaultError, HttpFault, HttpMatch, ordered_fields


@dataclass
class RequestPlan:
    """What the HTTP toxics decided for one request: held `delay` seconds, then answered by
    `answer_by` (an `http_error`), cut by `cut_by` (an `http_abort`), or passed on."""

    delay: float = 0.0
    answer_by: str | None = None
    cut_by: str | None = None
    # The names of the toxics that acted, in the order they were added; their fault types.
    acted: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    error: Any = None  # the HttpError fault of `answer_by`
    after_bytes: int = 0

    @property
    def fault(self) -> str | None:
        """The type of the toxic that decided the request's fate (a delay only when nothing
        else acted)."""
        for kind in ("http_error", "http_abort", "http_delay"):
            if kind in self.kinds:
                return kind
        return None

    def note(self, name: str, kind: str) -> None:
        self.acted.append(name)
        self.kinds.append(kind)


class HttpToxic(Toxic, abc.ABC):
    """An HTTP toxic: its attributes are the options of `fault_class`, as JSON."""

    acts_on_connection = True
    fault_class: ClassVar[type[HttpFault]]

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        super().__init__(attributes)
        self.fault = self.fault_class.from_options(attributes)
        self.selects: HttpMatch = self.fault.selects
        # Requests matched since the toxic was added or updated, on every connection of its
        # proxy: `first=N` counts these.
        self.matched = 0
        self._draws: random.Random | None = None
        self._draws_key = ""

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

    def draws(self, seed: int | None, proxy: str, name: str) -> random.Random:
        """This toxic's draws at `proxy`: the n-th request it decides on gets the n-th number of
        a sequence fixed by the seed, the proxy and the toxic's name (a new seed, from `POST
        /seed`, starts a new sequence)."""
        key = f"{seed}/{proxy}/{name}"
        if self._draws is None or key != self._draws_key:
            self._draws = random.Random(key) if seed is not None else random.Random()
            self._draws_key = key
        return self._draws

    @abc.abstractmethod
    def consider(self, plan: RequestPlan, name: str, rng: random.Random) -> None:
        """Shape `plan` for a request this toxic (called `name`) matched; `matched` already
        counts it, and `rng` gives its draws."""
