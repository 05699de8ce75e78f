"""Fixtures for the plugin's tests: a pytester directory ready for chaos test files.

Every inner run gets a real TCP echo server on 127.0.0.1 as the upstream of a proxy named
`echo` (declared with `chaos_proxies`, as a user would), and a small `netcheck` module whose
`talk()` says what a client saw: all bytes echoed, an early close, a reset, a timeout or a
refused connection.
"""

from __future__ import annotations

import textwrap

import httpcore  # noqa: F401 - see below
import hypothesis.internal.observability  # noqa: F401 - see below
import psycopg  # noqa: F401 - see below
import pytest

# runpytest_inprocess drops the modules an inner run imported once it ends, so what the inner
# runs import lazily is best imported here, once:
# - httpx imports httpcore lazily and keeps a map of httpcore's exception classes; if an inner
#   run imported httpcore first, the next run's httpcore exceptions would no longer be in that
#   map and would escape httpx untranslated;
# - Hypothesis's pytest plugin imports Hypothesis at the end of every run (2 s each time);
# - psycopg's compiled part (psycopg_binary) cannot be imported twice: after an inner run
#   dropped psycopg, it would raise the first import's OperationalError, which the next run's
#   `pytest.raises(psycopg.OperationalError)` would not recognise.


NETCHECK = '''
"""What a client sees through a proxy (written by tests/plugin/conftest.py)."""

import socket
import time
from dataclasses import dataclass, field


@dataclass
class Talk:
    outcome: str  # ok, eof, reset, timeout or refused
    data: bytes
    seconds: float
    chunks: list = field(default_factory=list)


def talk(address, payload=b"ping", *, timeout=5.0):
    """Connect, send `payload` and read until it is all echoed or the connection ends."""
    started = time.monotonic()
    chunks = []

    def done(outcome):
        return Talk(outcome, b"".join(chunks), time.monotonic() - started, chunks)

    try:
        sock = socket.create_connection(address, timeout=timeout)
    except ConnectionRefusedError:
        return done("refused")
    except ConnectionResetError:
        return done("reset")
    with sock:
        try:
            sock.sendall(payload)
            while sum(map(len, chunks)) < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    return done("eof")
                chunks.append(chunk)
        except TimeoutError:
            return done("timeout")
        except (ConnectionResetError, BrokenPipeError):
            return done("reset")
    return done("ok")


def close_delay(address, *, timeout=5.0):
    """Seconds between our FIN and the proxy's FIN, after one echoed message."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(b"ping")
        received = b""
        while len(received) < 4:
            received += sock.recv(4)
        started = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        return time.monotonic() - started


def address_of(toxiproxy, name):
    proxy = toxiproxy.proxies()[name]
    return (proxy.host, proxy.port)


def toxics_of(toxiproxy, name="echo"):
    """(type, stream, toxicity, attributes) of every toxic on the proxy, in order."""
    return [(t.type, t.stream, t.toxicity, t.attributes) for t in toxiproxy.client.toxics(name)]


def leftovers(toxiproxy):
    """Proxies that still carry a toxic or are disabled: {name: (toxic names, enabled)}."""
    return {
        name: ([t.name for t in proxy.toxics], proxy.enabled)
        for name, proxy in toxiproxy.proxies().items()
        if proxy.toxics or not proxy.enabled
    }


def wait_for_close(chaos, proxy="echo", timeout=5.0):
    """Events of `proxy` once every connection accepted in this test has closed."""
    deadline = time.monotonic() + timeout
    while True:
        events = chaos.events(proxy)
        opened = {e.connection for e in events if e.kind == "accepted"}
        closed = {e.connection for e in events if e.kind == "closed"}
        if opened <= closed or time.monotonic() > deadline:
            return events
        time.sleep(0.01)
'''

INNER_CONFTEST = """
import pytest

from netcheck import address_of


@pytest.fixture
def echo(toxiproxy):
    \"\"\"(host, port) of the `echo` proxy, declared in chaos_proxies.\"\"\"
    return address_of(toxiproxy, "echo")
"""


def make_ini(pytester: pytest.Pytester, extra: str = "") -> None:
    """Strict settings for an inner run, plus `extra` ini lines.

    In-process runs load the plugin a second time; pytest warns that the already imported
    module cannot be rewritten, which says nothing about the plugin, hence the one ignore.
    """
    lines = [
        "[pytest]",
        "addopts = --strict-markers -p no:cacheprovider",
        "filterwarnings =",
        "    error",
        "    ignore:Module already imported so cannot be rewritten:"
        "pytest.PytestAssertRewriteWarning",
        "asyncio_default_fixture_loop_scope = function",
        extra,
    ]
    pytester.makeini("\n".join(lines) + "\n")


@pytest.fixture
def bare(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester directory with strict settings and nothing else."""
    make_ini(pytester)
    return pytester


@pytest.fixture
def suite(pytester: pytest.Pytester, echo: str) -> pytest.Pytester:
    """A pytester directory with strict settings, the `echo` proxy and `netcheck`."""
    make_ini(pytester, f"chaos_proxies =\n    echo = {echo}")
    pytester.makepyfile(netcheck=NETCHECK)
    pytester.makeconftest(INNER_CONFTEST)
    return pytester


def exact(line: str) -> str:
    """An fnmatch pattern matching exactly `line` (for `fnmatch_lines`)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in line)


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")
