"""What a load recorded, read against the faults of its test: windows of time (before the first
fault, each fault's active window, after the last revert), the signals in each, and how long
the load took to come back to its baseline after the last revert.

A `Recording` is a snapshot: the calls, the faults that were active while the load ran (from
the chaos timeline) and the engine's events, all on one clock (`time.monotonic()`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_chaos.apply import AppliedFault
from pytest_chaos.events import Closed, Event
from pytest_chaos.faults import Fault
from pytest_chaos.load.signals import (
    CallRecord,
    Stats,
    busy_proxies,
    compute_stats,
    format_latency,
    format_rate,
)

WindowKind = Literal["all", "before", "fault", "during", "after", "span"]
# The plain names a window may be given by.
NAMED_WINDOWS = ("before", "during", "after")
# Recovery: a call is back to the baseline when it is no slower than this many times the
# baseline's p99, plus a floor for baselines of a fraction of a millisecond.
RECOVERY_LATENCY_FACTOR = 1.5
RECOVERY_LATENCY_FLOOR = 0.005
# ...and at least this share of the calls from then on are within that limit: the p90, not
# the p99, so that a scheduling hiccup of a busy machine is not taken for a fault's tail.
RECOVERY_QUANTILE = 0.9


class LoadError(ValueError):
    """A load was given something that makes no sense (a rate, a concurrency, a window that
    names no fault); the message says what is allowed."""


@dataclass(frozen=True)
class FaultWindow:
    """When one applied fault was active while the load ran (`end` None: still active when
    the load stopped)."""

    applied: AppliedFault
    start: float
    end: float | None

    @property
    def name(self) -> str:
        """The fault's text (`latency('api', ms=200)`), which is also the window's name."""
        return str(self.applied.fault)


# The engine's events that mark a fault taking effect on a proxy, or ceasing to.
_EFFECT_STARTS = ("toxic_added", "proxy_updated")


def _starts_effect(event: Event) -> bool:
    # Disabling a proxy closes its connections (`closed` by "proxy") before the engine records
    # the `proxy_updated` that says so: a call broken by that close belongs to the fault.
    return event.kind in _EFFECT_STARTS or (isinstance(event, Closed) and event.by == "proxy")


_EFFECT_ENDS = ("toxic_removed", "proxy_updated")


def fault_window(applied: AppliedFault, events: Sequence[Event] | None) -> FaultWindow:
    """When `applied` was active, on the engine's clock where it can tell: from the engine's
    first change to the fault's proxy after the fault was applied (its toxic added, or the
    proxy disabled) to its last change before the revert returned. `applied_at` is taken
    before the API request and `reverted_at` after the answer; between them a busy load
    makes many calls the fault did not touch yet (or any more). Process faults, and backends
    without events, keep the test's own times."""
    start, end = applied.applied_at, applied.reverted_at
    if events is None or getattr(applied.fault, "acts_on_process", False):
        return FaultWindow(applied, start, end)
    target = applied.fault.target
    changes = [e for e in events if e.proxy == target and e.time >= start]
    began = next((e.time for e in changes if _starts_effect(e)), start)
    if end is not None:
        ended = [e.time for e in changes if e.kind in _EFFECT_ENDS and began < e.time <= end]
        end = ended[-1] if ended else end
    return FaultWindow(applied, began, end)


@dataclass(frozen=True)
class Window:
    """A stretch of the load's time. Which calls belong to it depends on its kind: `before`,
    the calls that ended before the first fault was applied; `after`, those that started after
    the last revert; a fault's window (and `during`, any fault's), the calls that were running
    at any moment while it was active; `all`, every call."""

    name: str
    kind: WindowKind
    spans: tuple[tuple[float, float], ...]

    def holds(self, call: CallRecord) -> bool:
        """Does `call` belong to this window (by its kind, as the class says)?"""
        if self.kind == "all":
            return True
        if self.kind == "before":
            return call.end <= self.spans[0][1]
        if self.kind == "after":
            return call.start >= self.spans[0][0]
        return any(call.start <= end and call.end >= start for start, end in self.spans)

    def started_in(self, call: CallRecord) -> bool:
        """Did `call` start inside one of the window's spans (start included, end not)?"""
        return any(start <= call.start < end for start, end in self.spans)

    def select(self, calls: Sequence[CallRecord]) -> list[CallRecord]:
        """The calls this window holds (what `holds` says, in one pass per span: a load
        may have made a million calls)."""
        if self.kind == "all":
            return list(calls)
        if self.kind == "before":
            bound = self.spans[0][1]
            return [call for call in calls if call.start + call.latency <= bound]
        if self.kind == "after":
            bound = self.spans[0][0]
            return [call for call in calls if call.start >= bound]
        if len(self.spans) == 1:
            ((start, end),) = self.spans
            return [c for c in calls if c.start <= end and c.start + c.latency >= start]
        return [call for call in calls if self.holds(call)]

    def count_started(self, calls: Sequence[CallRecord]) -> int:
        """How many of the calls started inside the window (its traffic)."""
        return sum(
            sum(1 for call in calls if start <= call.start < end) for start, end in self.spans
        )


@dataclass(frozen=True)
class Recovery:
    """How the load came back after the last revert: the baseline it had to return to, the
    limits that mean "back", and when it got there (`recovered_at` None: not before it
    stopped)."""

    last_fault: str
    reverted_at: float
    recovered_at: float | None
    latency_limit: float
    error_rate_limit: float
    baseline: Stats
    after: Stats
    last_unhealthy: CallRecord | None

    @property
    def time(self) -> float | None:
        """Seconds from the last revert until the load was back to its baseline."""
        return None if self.recovered_at is None else max(0.0, self.recovered_at - self.reverted_at)

    def describe_limits(self) -> str:
        """The limits that mean "back", for a message: `every call succeeds, p90 at most
        8.0 ms`."""
        if self.error_rate_limit == 0:
            errors = "every call succeeds"
        else:
            errors = f"error rate at most {format_rate(self.error_rate_limit)}"
        return f"{errors}, p90 at most {format_latency(self.latency_limit)}"


@dataclass(frozen=True)
class Recording:
    """The calls of a load, the faults active while it ran, and the engine's events (None
    where the backend records none; `events_note` then says why)."""

    calls: tuple[CallRecord, ...]
    faults: tuple[FaultWindow, ...]
    events: tuple[Event, ...] | None
    started_at: float
    stopped_at: float
    events_note: str | None = None

    # ------------------------------------------------------------------------- windows
    def window(self, during: object = None) -> Window:
        """The window `during` names: None (the whole run), "before" (before the first fault),
        "during" (while any fault was active), "after" (after the last revert), a fault applied
        while the load ran (its handle, the fault itself, its text such as
        "latency('api', ms=200)", or its kind such as "latency"), or a (start, end) pair of
        `time.monotonic()` times. LoadError says what is allowed when it names nothing."""
        __tracebackhide__ = True
        if during is None:
            return Window("whole run", "all", ((self.started_at, self.stopped_at),))
        if isinstance(during, tuple) and len(during) == 2 and not isinstance(during[0], tuple):
            return self._span(during)
        if during in NAMED_WINDOWS:
            return self._named(str(during))
        matching = self._matching_faults(during)
        if not matching:
            raise LoadError(self._no_such_window(during))
        names = sorted({window.name for window in matching})
        if len(names) > 1:
            raise LoadError(
                f"window {during!r} is ambiguous: it matches {', '.join(names)}; name one by its"
                " text or pass its handle (`with chaos.latency(...) as fault:`)"
            )
        spans = tuple((w.start, self._end_of(w)) for w in matching)
        return Window(names[0], "fault", spans)

    def fault_windows(self) -> list[Window]:
        """One window per fault application while the load ran, in order of application."""
        return [
            Window(w.name, "fault", ((w.start, self._end_of(w)),))
            for w in sorted(self.faults, key=lambda w: w.start)
        ]

    def windows(self) -> list[Window]:
        """The whole run, before the first fault, each fault, and after the last revert
        (those that exist)."""
        found = [self.window(None)]
        if self.faults:
            if self._first_applied() > self.started_at:
                found.append(self._named("before"))
            found += self.fault_windows()
            if all(w.end is not None for w in self.faults):
                found.append(self._named("after"))
        return found

    def _named(self, name: str) -> Window:
        __tracebackhide__ = True
        if not self.faults:
            raise LoadError(
                f"window {name!r} needs a fault, and none was applied while the load ran;"
                " apply one inside the load's block (`with chaos.latency(...):`)"
            )
        if name == "before":
            return Window("before faults", "before", ((self.started_at, self._first_applied()),))
        if name == "during":
            spans = tuple((w.start, self._end_of(w)) for w in self.faults)
            return Window("during faults", "during", spans)
        still = [w.name for w in self.faults if w.end is None]
        if still:
            raise LoadError(
                f"window 'after' starts at the last revert, but {', '.join(still)} was still"
                " active when the load stopped; end its block before the load's"
            )
        return Window("after faults", "after", ((self.last_revert(), self.stopped_at),))

    def _span(self, during: tuple[Any, Any]) -> Window:
        __tracebackhide__ = True
        start, end = during
        if not isinstance(start, int | float) or not isinstance(end, int | float | None):
            raise LoadError(
                f"a window given as a pair must be (start, end) times from time.monotonic(),"
                f" got {during!r}"
            )
        stop = self.stopped_at if end is None else float(end)
        if stop < start:
            raise LoadError(f"window {during!r} ends before it starts")
        span = (max(float(start), self.started_at), min(stop, self.stopped_at))
        return Window(
            f"{start - self.started_at:+.2f}s..{stop - self.started_at:+.2f}s", "span", (span,)
        )

    def _matching_faults(self, during: object) -> list[FaultWindow]:
        if isinstance(during, AppliedFault):
            return [w for w in self.faults if w.applied is during]
        if isinstance(during, Fault):
            return [w for w in self.faults if w.applied.fault == during]
        if isinstance(during, str):
            exact = [w for w in self.faults if w.name == during]
            return exact or [w for w in self.faults if w.applied.fault.kind == during]
        return []

    def _no_such_window(self, during: object) -> str:
        applied = ", ".join(dict.fromkeys(w.name for w in self.faults)) or "none"
        what = (
            "names no fault applied while the load ran"
            if isinstance(during, str | Fault | AppliedFault)
            else "is not a window"
        )
        shown = str(during) if isinstance(during, Fault) else repr(during)
        return (
            f"window {shown} {what}; a window is None (the whole run), 'before', 'during',"
            " 'after', a fault applied while the load ran (its handle, the fault, its text or"
            f" its kind; applied: {applied}), or a (start, end) pair of time.monotonic() times"
        )

    def _first_applied(self) -> float:
        return min(w.start for w in self.faults)

    def last_revert(self) -> float:
        """When the last reverted fault ceased to act (time.monotonic()); ValueError when
        no fault was reverted while the load ran."""
        return max(w.end for w in self.faults if w.end is not None)

    def _end_of(self, window: FaultWindow) -> float:
        return self.stopped_at if window.end is None else window.end

    # ------------------------------------------------------------------------- signals
    def calls_in(self, window: Window) -> list[CallRecord]:
        """The calls `window` holds, oldest first."""
        return window.select(self.calls)

    def stats(self, during: object = None) -> Stats:
        """The golden signals of the window `during` names (see `window`)."""
        __tracebackhide__ = True
        window = self.window(during)
        return self._stats(window)

    def _stats(self, window: Window) -> Stats:
        calls = self.calls_in(window)
        started = window.count_started(self.calls)
        proxies = [] if self.events is None else busy_proxies(self.events, *self._span_of_load())
        return compute_stats(
            window.name, window.spans, calls, started, self.events, proxies, self.events_note
        )

    def _span_of_load(self) -> tuple[float, float]:
        last_end = max((call.end for call in self.calls), default=self.stopped_at)
        return self.started_at, max(self.stopped_at, last_end)

    # ------------------------------------------------------------------------ recovery
    def recovery(
        self, *, latency: float | None = None, error_rate: float | None = None
    ) -> Recovery:
        """When the load was back to its baseline after the last revert: from the first call
        that succeeded within the latency limit and after which the calls' error rate and
        p90 stay within the limits (one slow call is always allowed). The limits: `latency`
        seconds (default: 1.5 x the baseline's p99 + 5 ms) and `error_rate` (default: the
        baseline's), the baseline being the calls before the first fault."""
        __tracebackhide__ = True
        after = self.window("after")
        baseline = self._stats(self.window("before"))
        if latency is None:
            if baseline.p99 is None:
                raise LoadError(
                    "recovery needs a baseline: the load made no call before the first fault;"
                    " start the load earlier, or give the limit: latency=SECONDS"
                )
            latency = baseline.p99 * RECOVERY_LATENCY_FACTOR + RECOVERY_LATENCY_FLOOR
        if error_rate is None:
            error_rate = baseline.error_rate
        calls = self.calls_in(after)
        recovered_at, last_unhealthy = _recovered_at(calls, latency, error_rate)
        reverted = max((w for w in self.faults if w.end is not None), key=lambda w: w.end or 0.0)
        return Recovery(
            last_fault=reverted.name,
            reverted_at=self.last_revert(),
            recovered_at=recovered_at,
            latency_limit=latency,
            error_rate_limit=error_rate,
            baseline=baseline,
            after=self._stats(after),
            last_unhealthy=last_unhealthy,
        )

    # ---------------------------------------------------------------------------- JSON
    def to_json(self, origin: float, *, max_points: int) -> dict[str, Any]:
        """The recording for the JSON and HTML reports, times relative to `origin` (the test's
        start): signals per window, the recovery time, and the calls (at most `max_points`
        of them, errors first to be kept, evenly spread)."""
        windows = []
        for window in self.windows():
            stats = self._stats(window).to_json()
            stats["kind"] = window.kind
            stats["spans"] = [[_offset(a, origin), _offset(b, origin)] for a, b in window.spans]
            windows.append(stats)
        recovery: dict[str, Any] | None = None
        if self.faults and all(w.end is not None for w in self.faults):
            try:
                found = self.recovery()
            except LoadError:
                found = None
            if found is not None:
                recovery = {
                    "time": None if found.time is None else round(found.time, 6),
                    "reverted_at": _offset(found.reverted_at, origin),
                    "recovered_at": None
                    if found.recovered_at is None
                    else _offset(found.recovered_at, origin),
                }
        shown = sample_calls(self.calls, max_points)
        return {
            "started_at": _offset(self.started_at, origin),
            "stopped_at": _offset(self.stopped_at, origin),
            "windows": windows,
            "recovery": recovery,
            "proxies_note": self.events_note,
            "calls": {
                "count": len(self.calls),
                "shown": len(shown),
                "start": [_offset(call.start, origin) for call in shown],
                "latency": [round(call.latency, 6) for call in shown],
                "error": [call.error for call in shown],
            },
        }


def _offset(at: float, origin: float) -> float:
    return round(at - origin, 6)


def _recovered_at(
    calls: Sequence[CallRecord], latency: float, error_rate: float
) -> tuple[float | None, CallRecord | None]:
    """The start of the earliest healthy call from which on the calls stay within the limits
    (None if there is none), and the last slow or failed call."""
    ordered = sorted(calls, key=lambda call: call.start)
    slow_or_failed = [c for c in ordered if not c.ok or c.latency > latency]
    last_unhealthy = slow_or_failed[-1] if slow_or_failed else None
    # Walk back from the end, counting the suffix's calls, errors and slow calls. Its p90 (the
    # nearest rank, ceil(0.9 n)) is within the limit when at most n - ceil(0.9 n) are slow;
    # one slow call is always allowed, or a single hiccup among fewer than 10 calls (the last
    # one, say) would read as "never recovered".
    errors = slow = 0
    recovered: float | None = None
    for count, call in enumerate(reversed(ordered), 1):
        errors += 0 if call.ok else 1
        slow += 1 if call.latency > latency else 0
        healthy = call.ok and call.latency <= latency
        slow_allowed = max(1, count - math.ceil(RECOVERY_QUANTILE * count))
        if healthy and errors <= error_rate * count and slow <= slow_allowed:
            recovered = call.start
    return recovered, last_unhealthy


def sample_calls(calls: Sequence[CallRecord], limit: int) -> list[CallRecord]:
    """At most `limit` calls, spread evenly over the run; failed calls are kept first (up to
    half the limit), as they are the ones a reader looks for."""
    if len(calls) <= limit:
        return list(calls)
    failed = [call for call in calls if not call.ok]
    fine = [call for call in calls if call.ok]
    keep_failed = _spread(failed, min(len(failed), limit // 2))
    keep_fine = _spread(fine, limit - len(keep_failed))
    return sorted(keep_failed + keep_fine, key=lambda call: call.start)


def _spread(items: Sequence[CallRecord], count: int) -> list[CallRecord]:
    if count >= len(items):
        return list(items)
    if count <= 0:
        return []
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]
