"""SIGTERM to a service while a load runs, and what the load saw: did the calls in flight
complete, were new calls refused (or served) rather than left hanging, and did the process
exit within its grace period?

The service is signalled through its public `terminate()` (SIGTERM, then the wait for the
exit; `docker` for a container), on a helper thread so that a process that never exits is
reported after `grace` seconds (and killed) rather than waited on. When the load belongs to a
test's `chaos` object and the service is that test's, the termination goes through
`chaos.terminate(name)`: it shows on the timeline, and the service is started again when the
test ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_chaos.faults import FaultError
from pytest_chaos.load.recording import LoadError
from pytest_chaos.load.signals import CallRecord
from pytest_chaos.load.workload import Load

POLL_SECONDS = 0.005
# How long to wait for a call to be in flight before signalling.
BUSY_WAIT_SECONDS = 2.0
# How long to wait for the helper thread once the process was killed after its grace.
KILL_WAIT_SECONDS = 10.0


class Terminable(Protocol):
    """A service the plugin runs (`RunningService`, or a `Service` such as `LocalProcess`)."""

    @property
    def name(self) -> str:
        """The service's name."""
        ...

    @property
    def running(self) -> bool:
        """True while its process (or container) runs, paused included."""
        ...

    def terminate(self) -> None:
        """SIGTERM it and wait until it has exited."""
        ...

    def kill(self) -> None:
        """SIGKILL it and wait until it has exited."""
        ...


@dataclass(frozen=True)
class Shutdown:
    """What a load saw of one SIGTERM: the calls in flight when it was sent, the calls started
    between it and the exit (or the end of the grace period), and when the process exited
    (`exited_at` None: still running after `grace`, then killed)."""

    service: str
    grace: float
    refuse_within: float
    signalled_at: float
    exited_at: float | None
    in_flight: tuple[CallRecord, ...]
    started_after: tuple[CallRecord, ...]
    # Calls of either kind still running when the check ended (never waited on further).
    still_running: tuple[float, ...]
    checked_at: float

    @property
    def exit_time(self) -> float | None:
        """Seconds from the SIGTERM to the exit; None when it was still running after
        `grace`."""
        return None if self.exited_at is None else self.exited_at - self.signalled_at

    @property
    def completed(self) -> list[CallRecord]:
        """In-flight calls that succeeded."""
        return [call for call in self.in_flight if call.ok]

    @property
    def dropped(self) -> list[CallRecord]:
        """In-flight calls that failed."""
        return [call for call in self.in_flight if not call.ok]

    @property
    def in_flight_running(self) -> list[float]:
        """When the in-flight calls still running at the end of the check started
        (time.monotonic())."""
        return [start for start in self.still_running if start < self.signalled_at]

    @property
    def served(self) -> list[CallRecord]:
        """New calls (started after the SIGTERM) that succeeded."""
        return [call for call in self.started_after if call.ok]

    @property
    def refused(self) -> list[CallRecord]:
        """New calls that failed within `refuse_within` seconds."""
        return [
            call
            for call in self.started_after
            if not call.ok and call.latency <= self.refuse_within
        ]

    @property
    def refused_late(self) -> list[CallRecord]:
        """New calls that failed, but only after waiting longer than `refuse_within`."""
        return [
            call for call in self.started_after if not call.ok and call.latency > self.refuse_within
        ]

    @property
    def new_running(self) -> list[float]:
        """When the new calls still running at the end of the check started
        (time.monotonic())."""
        return [start for start in self.still_running if start >= self.signalled_at]

    @property
    def exited_in_time(self) -> bool:
        """True if the process exited within `grace` seconds of the SIGTERM."""
        return self.exit_time is not None and self.exit_time <= self.grace

    @property
    def graceful(self) -> bool:
        """True if calls were in flight at the SIGTERM and all of them succeeded, every new
        call was served or refused within `refuse_within` (none failed later or was left
        running), and the process exited within `grace`."""
        return (
            bool(self.in_flight or self.in_flight_running)
            and not self.dropped
            and not self.in_flight_running
            and not self.refused_late
            and not self.new_running
            and self.exited_in_time
        )


def observe_shutdown(
    service: Terminable | str, *, load: Load, grace: float, refuse_within: float
) -> Generator[float, None, Shutdown]:
    """The check as a generator of waits (seconds), so that one procedure serves the plain
    helper (time.sleep) and the async one (asyncio.sleep); its value is the Shutdown."""
    __tracebackhide__ = True
    _check_arguments(load, grace, refuse_within)
    target, terminate = _terminator(service, load)
    _check_grace(target, grace)
    busy_until = time.monotonic() + BUSY_WAIT_SECONDS
    while not load.in_flight() and time.monotonic() < busy_until:
        yield POLL_SECONDS
    outcome: dict[str, Any] = {}

    def send() -> None:
        outcome["signalled_at"] = time.monotonic()
        try:
            terminate()
        except BaseException as error:  # re-raised in the caller's thread below
            outcome["error"] = error
        outcome["exited_at"] = time.monotonic()

    helper = threading.Thread(target=send, name="chaos-graceful-shutdown", daemon=True)
    helper.start()
    started = time.monotonic()
    while helper.is_alive() and time.monotonic() < started + grace:
        yield POLL_SECONDS
    exited_at: float | None = None
    if helper.is_alive():
        ended = time.monotonic()  # calls started after this met a process being killed
        _kill(target)
        helper.join(KILL_WAIT_SECONDS)
    else:
        exited_at = ended = outcome["exited_at"]
    if "error" in outcome:
        raise outcome["error"]
    signalled_at: float = outcome.get("signalled_at", started)
    # Calls that were running at the exit end now (the server is gone) or soon after: give
    # them `refuse_within` to do so, and record the rest as still running.
    settle_until = time.monotonic() + refuse_within
    while any(start < ended for start in load.in_flight()) and time.monotonic() < settle_until:
        yield POLL_SECONDS
    checked_at = time.monotonic()
    calls = load.recording().calls
    return Shutdown(
        service=getattr(target, "name", str(target)),
        grace=grace,
        refuse_within=refuse_within,
        signalled_at=signalled_at,
        exited_at=exited_at,
        in_flight=tuple(c for c in calls if c.start < signalled_at < c.end),
        started_after=tuple(c for c in calls if signalled_at <= c.start <= ended),
        still_running=tuple(sorted(s for s in load.in_flight() if s <= ended)),
        checked_at=checked_at,
    )


def run_blocking(procedure: Generator[float, None, Shutdown]) -> Shutdown:
    """Drive the procedure with time.sleep."""
    __tracebackhide__ = True
    try:
        while True:
            time.sleep(next(procedure))
    except StopIteration as done:
        result: Shutdown = done.value
        return result


def _check_arguments(load: object, grace: object, refuse_within: object) -> None:
    __tracebackhide__ = True
    if not isinstance(load, Load):
        raise LoadError(
            f"load must be the running load (`with chaos.load(...) as load:`), got {load!r}"
        )
    if not load.running:
        raise LoadError(
            "the load is not running: call assert_graceful_shutdown inside its block, so that"
            " calls are in flight when the SIGTERM arrives"
        )
    for name, value in (("grace", grace), ("refuse_within", refuse_within)):
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not 0 < float(value) < 3600
        ):
            raise LoadError(f"{name} must be a number of seconds above 0, got {value!r}")


def _terminator(service: Terminable | str, load: Load) -> tuple[Any, Callable[[], Any]]:
    """The service object, and how to SIGTERM it: through the test's chaos object when the
    service is that test's (so the timeline shows it and it comes back at the test's end),
    else through its own terminate()."""
    __tracebackhide__ = True
    chaos: Any = load.source
    if isinstance(service, str):
        if chaos is None or not hasattr(chaos, "terminate"):
            raise LoadError(
                f"service {service!r} is a name, and this load belongs to no chaos object to"
                " look it up; pass the service itself (the fixture's value)"
            )
        name = service
        return chaos.service(name), lambda: chaos.terminate(name)
    if not callable(getattr(service, "terminate", None)):
        raise LoadError(
            "service must be a service the plugin runs (a service fixture's value, a"
            f" LocalProcess, a ContainerService) or its name, got {service!r}"
        )
    own_name = getattr(service, "name", None)
    if chaos is not None and hasattr(chaos, "terminate") and isinstance(own_name, str):
        try:
            same = chaos.service(own_name) is service
        except FaultError:  # not a service of this test: signal it directly
            same = False
        if same:
            return service, lambda: chaos.terminate(own_name)
    return service, service.terminate


def _check_grace(service: Any, grace: float) -> None:
    """terminate() kills a service that outlives its own stop timeout: a grace that long
    could not tell a graceful exit from a kill."""
    __tracebackhide__ = True
    provider = getattr(service, "service", service)  # a RunningService wraps the provider
    settings = getattr(provider, "recipe", None) or getattr(provider, "spec", None)
    limit = getattr(settings, "stop_timeout", None)
    if isinstance(limit, int | float) and grace >= limit:
        raise LoadError(
            f"grace ({grace:g}s) must be shorter than the service's stop timeout ({limit:g}s),"
            " after which terminate() kills it; raise stop_timeout in its Recipe or"
            " ContainerSpec"
        )


def _kill(service: Any) -> None:
    from pytest_chaos.services.base import ServiceError

    with contextlib.suppress(ServiceError):  # it exited on its own meanwhile
        service.kill()
