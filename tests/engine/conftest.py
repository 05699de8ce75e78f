"""Fixtures for the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import echo_server


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    """`host:port` of a real TCP echo server, one per module: it is stateless, and each one
    takes 0.5 s to stop."""
    with echo_server() as (host, port):
        yield f"{host}:{port}"
