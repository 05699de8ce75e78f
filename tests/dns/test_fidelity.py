"""The in-process layer fails exactly as glibc does: every client, under every error kind,
gives the same exception type and resolver code (and, for answered names, the same result)
as the same client resolving through glibc against a real DNS server, measured in a child
process with a network namespace of its own (`real_resolver`). The measured codes are also
asserted outright, so a change of glibc shows here first."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_chaos.faults import DNS_ERRORS, DnsFailure
from tests.dns import real_resolver
from tests.dns.probes import differences, probe_all, same
from tests.dns.real_resolver import HOSTS, TIMEOUT_MS
from tests.dns.reference import ADDRESS, ADDRESS6

NO_NAME = {"error": "socket.gaierror", "gai": [-2, "Name or service not known"]}
AGAIN = {"error": "socket.gaierror", "gai": [-3, "Temporary failure in name resolution"]}
NO_DATA = {"error": "socket.gaierror", "gai": [-5, "No address associated with hostname"]}
# What glibc 2.36 gave each client (the README's table).
EXPECTED_GAI = {
    "nxdomain": NO_NAME,
    "servfail": AGAIN,
    "refused": AGAIN,
    "timeout": AGAIN,
    "empty": NO_DATA,
}
WRAPPED_BY = {
    "requests": "requests.exceptions.ConnectionError",
    "httpx": "httpx.ConnectError",
    "httpx async": "httpx.ConnectError",
}


@pytest.fixture(scope="module")
def glibc() -> dict[str, Any]:
    problem = real_resolver.unavailable()
    if problem is not None:
        pytest.skip(f"no network namespace to measure glibc in: {problem}")
    return real_resolver.measure("reference")


def test_glibc_gives_the_measured_errors(glibc: dict[str, Any]) -> None:
    for kind in DNS_ERRORS:
        for probe, outcome in same(glibc)[kind].items():
            expected = dict(EXPECTED_GAI[kind])
            expected["error"] = WRAPPED_BY.get(probe, expected["error"])
            assert outcome == expected, (kind, probe)
    assert glibc["timeout"]["getaddrinfo"]["seconds"] >= 0.9


def test_in_process_failures_and_answers_match_glibc(chaos: Any, glibc: dict[str, Any]) -> None:
    for kind in DNS_ERRORS:
        chaos.inject(DnsFailure(HOSTS[kind], error=kind, timeout=TIMEOUT_MS))  # type: ignore[arg-type]
    chaos.resolve(HOSTS["answer"], to=ADDRESS)
    chaos.resolve(HOSTS["answer6"], to=ADDRESS6)
    mine = probe_all(HOSTS)
    assert differences(mine, glibc) == []
    # A timeout costs what glibc's did (1 s here; twice that with AI_V4MAPPED).
    for probe, outcome in mine["timeout"].items():
        twice = 2 if probe == "getaddrinfo(AI_V4MAPPED)" else 1
        assert 0.9 * twice <= outcome["seconds"] <= 0.9 * twice + 3, probe
        assert glibc["timeout"][probe]["seconds"] >= 0.9 * twice, probe


def test_glibc_sees_the_plugin_s_dns_server_as_a_real_one(glibc: dict[str, Any]) -> None:
    # glibc's resolver against the plugin's server, configured with the same faults and
    # names, gives what it gives against the reference server.
    assert differences(real_resolver.measure("plugin"), glibc) == []
