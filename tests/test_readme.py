"""The README's first chaos test must run as printed (against a Redis of our own)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugin.local_services import redis_server

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def redis_port() -> Iterator[int]:
    with redis_server() as server:
        yield server.port


def test_the_first_chaos_test_in_the_readme_passes(
    pytester: pytest.Pytester, redis_port: int
) -> None:
    block = re.search(r"```python\n# test_cache.py\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "the README lost its first chaos test"
    pytester.makepyfile(test_cache=block.group(1).replace("6379", str(redis_port)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["chaos: 3 faults injected in 3 tests (backend embedded, seed *)"])


def test_the_readme_event_example_prints_what_it_says(
    pytester: pytest.Pytester, redis_port: int
) -> None:
    text = README.read_text()
    first = re.search(r"```python\n# test_cache.py\n(.*?)```", text, re.S)
    events = re.search(r"```python\n(def test_one_connection\(chaos, cache\):.*?)```", text, re.S)
    assert first is not None, "the README lost its first chaos test"
    assert events is not None, "the README lost its event example"
    source = first.group(1).replace("6379", str(redis_port)) + "\n\n" + events.group(1)
    pytester.makepyfile(test_cache=source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "-k", "one_connection")
    result.stdout.fnmatch_lines(
        [
            "*redis#* accepted from 127.0.0.1:*",
            "{'seq': *, 'time': *, 'kind': 'accepted', 'proxy': 'redis', 'connection': *,"
            " 'client': '127.0.0.1:*'}",
        ]
    )
    result.assert_outcomes(passed=1)


def test_the_readme_steady_state_example_passes_as_printed(
    pytester: pytest.Pytester, redis_port: int
) -> None:
    """The load through a latency fault and an outage, with its SLO and recovery assertions,
    in the README's first test module (its `cache` fixture), against a real Redis."""
    text = README.read_text()
    first = re.search(r"```python\n# test_cache.py\n(.*?)```", text, re.S)
    steady = re.search(
        r"```python\n(import time\n\nfrom pytest_chaos.assertions import assert_recovers.*?)```",
        text,
        re.S,
    )
    assert first is not None, "the README lost its first chaos test"
    assert steady is not None, "the README lost its steady-state example"
    source = first.group(1).replace("6379", str(redis_port)) + "\n\n" + steady.group(1)
    pytester.makepyfile(test_cache=source)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", "-k", "slo_through_faults"
    )
    result.stdout.fnmatch_lines(["*latency('redis', ms=100): * calls in *: p50 1* ms, *"])
    result.assert_outcomes(passed=1)


def test_the_readme_way_to_declare_your_own_service_works(pytester: pytest.Pytester) -> None:
    """The README's custom service (memcached), declared exactly as printed, started from the
    local binary, reached through its proxy, restarted, and gone at the end."""
    if shutil.which("memcached") is None:
        pytest.skip("memcached is not installed (scripts/setup.sh installs it)")
    block = re.search(
        r"```python\n(import socket\nfrom pytest_chaos.services import ContainerSpec.*?)```",
        README.read_text(),
        re.S,
    )
    assert block is not None, "the README lost its example of a service of your own"
    pytester.makeconftest(block.group(1))
    pytester.makeini("[pytest]\nchaos_services = local\n")
    pytester.makepyfile(
        test_memcached="""
        import socket

        def version(address):
            with socket.create_connection(address, timeout=2) as sock:
                sock.sendall(b"version\\r\\n")
                return sock.recv(64)

        def test_through_the_proxy(memcached, chaos, toxiproxy):
            assert toxiproxy.proxies()["memcached"].upstream == memcached.direct
            assert version((memcached.host, memcached.port)).startswith(b"VERSION")
            chaos.restart("memcached")
            assert version((memcached.host, memcached.port)).startswith(b"VERSION")
            assert memcached.url == f"memcache://{memcached.address}"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_readme_dns_example_passes(pytester: pytest.Pytester, redis_port: int) -> None:
    block = re.search(r"```python\n# test_dns.py\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "the README lost its DNS example"
    pytester.makepyfile(test_dns=block.group(1).replace("6379", str(redis_port)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_readme_packet_loss_example_passes(pytester: pytest.Pytester, redis_port: int) -> None:
    block = re.search(r"```python\n# test_lossy.py\n(.*?)```", README.read_text(), re.S)
    assert block is not None, "the README lost its packet loss example"
    pytester.makepyfile(test_lossy=block.group(1).replace("6379", str(redis_port)))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_the_readme_http_faults_run_as_printed(pytester: pytest.Pytester) -> None:
    """The README's HTTP fault examples, at a proxy (against uvicorn, in place of its
    127.0.0.1:8000) and in-process (a FastAPI app), pass as printed."""
    from tests.http.servers import uvicorn_server

    text = README.read_text()
    at_proxy = re.search(r"```python\n# test_api.py\n(.*?)```", text, re.S)
    in_process = re.search(r"```python\n# test_prices.py\n(.*?)```", text, re.S)
    assert at_proxy is not None, "the README lost its HTTP fault example"
    assert in_process is not None, "the README lost its in-process HTTP example"
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    with uvicorn_server() as upstream:
        pytester.makepyfile(
            test_api=at_proxy.group(1).replace("127.0.0.1:8000", upstream.address),
            test_prices=in_process.group(1),
        )
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
