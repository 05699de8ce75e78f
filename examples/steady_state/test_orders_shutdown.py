"""SIGTERM while requests are in flight: uvicorn drains them and exits; a bare server that
does not handle the signal drops them. Both are real processes the plugin runs."""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable

import pytest

from pytest_chaos.assertions import ChaosAssertionError, assert_graceful_shutdown
from pytest_chaos.services import RunningService


def order_reader(service: RunningService) -> Callable[[], None]:
    """GET /orders through the service's proxy, on a new connection each time."""

    def read() -> None:
        connection = http.client.HTTPConnection(service.host, service.port, timeout=3)
        try:
            connection.request("GET", "/orders")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        finally:
            connection.close()

    return read


# `chaos` first: it is torn down last, after the service's own fixture has closed it.
def test_uvicorn_drains_its_requests_on_sigterm(chaos, orders):
    with chaos.load(order_reader(orders), concurrency=4) as load:
        time.sleep(0.5)
        shutdown = assert_graceful_shutdown("orders", load=load, grace=3.0)
    assert shutdown.in_flight
    assert all(call.ok for call in shutdown.in_flight)


def test_a_server_that_ignores_sigterm_drops_its_requests(chaos, bare_orders):
    with chaos.load(order_reader(bare_orders), concurrency=4) as load:
        time.sleep(0.5)
        with pytest.raises(ChaosAssertionError) as raised:
            assert_graceful_shutdown(bare_orders, load=load, grace=3.0)
    message = str(raised.value)
    lines = message.splitlines()
    assert lines[0] == "The service 'bare_orders' did not shut down gracefully on SIGTERM.", message
    assert re.fullmatch(
        r"- \d+ calls? in flight at the SIGTERM: 0 completed, \d+ failed \(.+\)  <-- dropped",
        lines[1],
    ), message
    assert re.fullmatch(r"- exited \d+\.\d\ds after the SIGTERM \(grace 3\.00s\)", lines[3])
    assert lines[4] == (
        "Hint: on SIGTERM a server should stop accepting, finish the requests in flight, then"
        " exit (uvicorn and gunicorn do); a server that does not handle the signal dies at once."
    )
