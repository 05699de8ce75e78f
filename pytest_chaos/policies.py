"""Backoff policies: the waits a retry policy promises, as the libraries compute them.

Each policy gives, for the n-th retry (the wait after attempt n), the interval the wait must
fall in: one point without jitter, a range with it. Constructors named after a library use
that library's own parameters and formula.
"""

from __future__ import annotations

from dataclasses import dataclass


def _seconds(value: float) -> str:
    return f"{value:g}s"


JITTERS = ("none", "full", "equal", "additive")


@dataclass(frozen=True)
class Exponential:
    """initial * multiplier ** (n - 1), capped at `cap` and raised to `floor`; jitter `none`,
    `full` (a uniform draw in [0, wait]), `equal` (in [wait / 2, wait]) or `additive`
    (wait + uniform [0, jitter_max], then capped)."""

    initial: float
    multiplier: float = 2.0
    cap: float | None = None
    jitter: str = "none"
    jitter_max: float = 0.0
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.jitter not in JITTERS:
            raise ValueError(f"jitter must be one of {', '.join(JITTERS)}, got {self.jitter!r}")

    def bounds(self, retry: int) -> tuple[float, float]:
        """The shortest and longest wait allowed before the `retry`-th retry (1: the first)."""
        try:
            base = self.initial * self.multiplier ** (retry - 1)
        except OverflowError:
            base = float("inf")
        cap = float("inf") if self.cap is None else self.cap
        if self.jitter == "full":
            low, high = 0.0, min(base, cap)
        elif self.jitter == "equal":
            low, high = min(base, cap) / 2, min(base, cap)
        elif self.jitter == "additive":
            low, high = min(base, cap), min(base + self.jitter_max, cap)
        else:
            low, high = min(base, cap), min(base, cap)
        return max(low, self.floor), max(high, self.floor)

    def __str__(self) -> str:
        parts = [f"initial={_seconds(self.initial)}", f"multiplier={self.multiplier:g}"]
        if self.cap is not None:
            parts.append(f"max={_seconds(self.cap)}")
        if self.floor:
            parts.append(f"min={_seconds(self.floor)}")
        if self.jitter in ("full", "equal"):
            parts.append(f"{self.jitter} jitter")
        elif self.jitter == "additive":
            parts.append(f"jitter up to {_seconds(self.jitter_max)}")
        return f"exponential backoff ({', '.join(parts)})"

    # -- the libraries' formulas
    @classmethod
    def tenacity(
        cls, multiplier: float = 1, max: float | None = None, exp_base: float = 2, min: float = 0
    ) -> Exponential:
        """tenacity's `wait_exponential(multiplier, max, exp_base, min)`: the n-th retry waits
        multiplier * exp_base ** (n - 1), kept within [min, max]."""
        return cls(initial=float(multiplier), multiplier=exp_base, cap=max, floor=min)

    @classmethod
    def tenacity_jitter(
        cls,
        initial: float = 1,
        max: float | None = None,
        exp_base: float = 2,
        jitter: float = 1,
        min: float = 0,
        multiplier: float = 1,
    ) -> Exponential:
        """tenacity's `wait_exponential_jitter(initial, max, exp_base, jitter, min, multiplier)`:
        multiplier * exp_base ** (n - 1) + uniform(0, jitter), kept within [min, max].
        tenacity 9.2 renamed `initial` to `multiplier`; either may be given, not both."""
        if initial != 1 and multiplier != 1:
            raise ValueError("give initial or multiplier, not both (they are the same setting)")
        first = initial if initial != 1 else multiplier
        return cls(first, exp_base, max, "additive", jitter, floor=min)

    @classmethod
    def stamina(
        cls,
        wait_initial: float = 0.1,
        wait_max: float = 5.0,
        wait_jitter: float = 1.0,
        wait_exp_base: float = 2,
    ) -> Exponential:
        """stamina's `retry(wait_initial, wait_max, wait_jitter, wait_exp_base)`: the n-th
        retry waits min(wait_max, wait_initial * wait_exp_base ** (n - 1) + uniform(0,
        wait_jitter))."""
        return cls(wait_initial, wait_exp_base, wait_max, "additive", wait_jitter)

    @classmethod
    def redis(
        cls, cap: float = 0.512, base: float = 0.008, *, jitter: bool | str = False
    ) -> Exponential:
        """redis-py's `ExponentialBackoff(cap, base)`: the n-th retry waits
        min(cap, base * 2 ** n). `jitter=True` or `"full"`: `FullJitterBackoff` (and
        `ExponentialWithJitterBackoff`); `"equal"`: `EqualJitterBackoff`, redis-py's default."""
        kind = ("full" if jitter else "none") if isinstance(jitter, bool) else jitter
        if kind not in ("none", "full", "equal"):
            raise ValueError(f"jitter must be True, False, 'full' or 'equal', got {jitter!r}")
        return cls(base * 2, 2.0, cap, kind)


@dataclass(frozen=True)
class Fixed:
    """The same wait before every retry (tenacity's `wait_fixed`, redis-py's
    `ConstantBackoff`)."""

    wait: float

    def bounds(self, retry: int) -> tuple[float, float]:
        """The shortest and longest wait allowed before the `retry`-th retry (1: the first)."""
        return self.wait, self.wait

    def __str__(self) -> str:
        return f"fixed waits of {_seconds(self.wait)}"


@dataclass(frozen=True)
class Incrementing:
    """start + increment * (n - 1), capped (tenacity's `wait_incrementing`)."""

    start: float
    increment: float
    cap: float | None = None

    def bounds(self, retry: int) -> tuple[float, float]:
        """The shortest and longest wait allowed before the `retry`-th retry (1: the first)."""
        wait = max(0.0, self.start + self.increment * (retry - 1))
        if self.cap is not None:
            wait = min(wait, self.cap)
        return wait, wait

    def __str__(self) -> str:
        cap = f", max={_seconds(self.cap)}" if self.cap is not None else ""
        return (
            f"incrementing waits (start={_seconds(self.start)},"
            f" increment={_seconds(self.increment)}{cap})"
        )


Policy = Exponential | Fixed | Incrementing
