"""Chaos tests under pytest-xdist (one engine per worker, one seed for the run) and
pytest-asyncio (async tests and async fixtures)."""

from __future__ import annotations

import json

import pytest

DISTRIBUTED = """
import os

import pytest

from netcheck import leftovers, talk


@pytest.fixture(autouse=True)
def note_worker(request, chaos, toxiproxy):
    seen = request.config.rootpath / "seen"
    seen.mkdir(exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(seen / f"{worker}.txt", "a") as notes:
        notes.write(f"{chaos.timeline().seed} {toxiproxy.url}\\n")
    yield
    assert leftovers(toxiproxy) == {}


@pytest.mark.parametrize(
    "ms", [pytest.param(ms, marks=pytest.mark.latency("echo", ms)) for ms in (100, 150, 200, 250)]
)
def test_latency(echo, ms):
    assert talk(echo).seconds >= ms / 1000 - 0.01


@pytest.mark.latency("echo", 100)
@pytest.mark.parametrize("attempt", range(4))
def test_marked(echo, attempt):
    assert talk(echo).seconds >= 0.09


@pytest.mark.dependency_down("echo")
@pytest.mark.parametrize("attempt", range(4))
def test_down(echo, attempt):
    assert talk(echo).outcome == "refused"
"""


def test_xdist_workers_share_the_seed(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_distributed=DISTRIBUTED)
    result = suite.runpytest_inprocess("-n", "2", "--chaos-report", "report.json")
    result.stdout.fnmatch_lines(["chaos: backend=embedded seed=*", "created: 2/2 workers"])
    header = next(line for line in result.outlines if line.startswith("chaos: backend="))
    seed = int(header.rpartition("=")[2])
    result.stdout.fnmatch_lines(
        [f"chaos: 12 faults injected in 12 tests (backend embedded, seed {seed})"]
    )
    notes = {
        path.stem: [line.split() for line in path.read_text().splitlines()]
        for path in (suite.path / "seen").iterdir()
    }
    assert sorted(notes) == ["gw0", "gw1"]
    assert {int(s) for lines in notes.values() for s, _ in lines} == {seed}
    # One engine per worker.
    urls = [{url for _, url in lines} for lines in notes.values()]
    assert [len(u) for u in urls] == [1, 1]
    assert urls[0] != urls[1]
    report = json.loads((suite.path / "report.json").read_text())
    assert report["seed"] == seed
    assert {record["seed"] for record in report["tests"]} == {seed}
    assert len(report["tests"]) == 12
    result.assert_outcomes(passed=12)


ASYNC = """
import asyncio
import time

import pytest
import pytest_asyncio

from netcheck import leftovers


async def roundtrip(host, port):
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"ping")
    data = await reader.readexactly(4)
    writer.close()
    await writer.wait_closed()
    return data, time.monotonic() - started


@pytest_asyncio.fixture
async def measured_in_setup(echo, toxiproxy):
    found = leftovers(toxiproxy)
    data, seconds = await roundtrip(*echo)
    yield found, data, seconds


@pytest.mark.asyncio
@pytest.mark.latency("echo", 200)
async def test_latency(echo, measured_in_setup):
    found, data, _ = measured_in_setup
    assert (found, data) == ({}, b"ping")
    data, seconds = await roundtrip(*echo)
    assert data == b"ping"
    assert seconds >= 0.19


@pytest.mark.asyncio
@pytest.mark.latency("echo", 200, when="setup")
async def test_latency_from_setup(measured_in_setup):
    found, data, seconds = measured_in_setup
    assert list(found) == ["echo"]
    assert data == b"ping"
    assert seconds >= 0.19


@pytest.mark.asyncio
async def test_context_manager(chaos, echo):
    with chaos.latency("echo", 200):
        _, seconds = await roundtrip(*echo)
    assert seconds >= 0.19


@pytest.mark.asyncio
@pytest.mark.dependency_down("echo")
async def test_down(echo):
    with pytest.raises(ConnectionRefusedError):
        await roundtrip(*echo)


class TestInAClass:
    pytestmark = pytest.mark.latency("echo", 100, stream="upstream")

    @pytest.mark.asyncio
    async def test_class_marker(self, echo):
        _, seconds = await roundtrip(*echo)
        assert seconds >= 0.09
"""


def test_async_tests_and_fixtures(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_async=ASYNC)
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=5)
