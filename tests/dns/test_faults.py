"""DnsFailure as a value: host patterns (what they match, what they refuse), its signature,
and the applier's word on a platform whose resolver errors were not measured."""

from __future__ import annotations

import platform
from typing import Any

import pytest

from pytest_chaos.dns import glibc
from pytest_chaos.dns.applier import DnsFaults
from pytest_chaos.faults import DnsFailure, FaultError, python_signature, signature


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("db.internal", "db.internal", True),
        ("DB.Internal.", "db.internal", True),
        ("db.internal", "x.db.internal", False),
        ("*.internal", "db.internal", True),
        ("*.internal", "a.b.internal", True),
        ("*.internal", "internal", False),
        ("*.internal", "db.internal.example", False),
        ("*.internal", "dbinternal", False),
        ("*", "anything.at.all", True),
    ],
)
def test_what_a_host_pattern_matches(pattern: str, name: str, matches: bool) -> None:
    assert DnsFailure(pattern).matches(name) is matches


def test_the_signature_names_the_host() -> None:
    assert signature(DnsFailure) == (
        "dns_failure(host, *, error='nxdomain', probability=1.0, delay=0, timeout=10000)"
    )
    assert next(iter(python_signature(DnsFailure).parameters)) == "host"
    assert str(DnsFailure("*.internal", error="timeout", timeout=500)) == (
        "dns_failure('*.internal', error='timeout', timeout=500)"
    )


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("db..internal", "it has an empty label"),
        ("x" * 64 + ".internal", "label 'xxxxxxxxxxxxxxxxxxxx'... is longer than 63 characters"),
        ("db*.internal", "'*' stands only for the whole leftmost label (e.g. '*.internal')"),
        ("::1", "an IP address is never looked up in DNS; name the host the client resolves"),
        ("db.internal:5432", "a host name has no port"),
        ("db/internal", "'/' is not allowed in a host name (letters, digits, '-', '_', '.')"),
    ],
)
def test_bad_hosts_say_why(host: str, reason: str) -> None:
    with pytest.raises(FaultError) as raised:
        DnsFailure(host)
    assert str(raised.value) == (
        f"dns_failure: host must be a host name or a pattern such as '*.internal',"
        f" got {host!r}: {reason}"
    )


def test_a_platform_without_glibc_is_told_which_layer_it_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2.4"))
    with pytest.raises(FaultError) as raised:
        DnsFaults().check_target(DnsFailure("db.internal"), _no_targets(), None)
    assert str(raised.value) == (
        "dns_failure: the in-process layer reproduces glibc's resolver errors (measured on"
        " Linux with glibc), and this platform is Linux with musl 1.2.4; point the code under"
        " test at the plugin's DNS server (chaos.dns_server) instead"
    )
    monkeypatch.undo()
    assert glibc.platform_problem() is None  # this machine


def _no_targets() -> Any:
    return object()  # a DNS fault looks for no proxy and no service


def test_a_service_s_host_must_be_a_host_name() -> None:
    from pytest_chaos.services import redis_service, service_fixture

    with pytest.raises(ValueError, match="host must be a host name") as raised:
        service_fixture(redis_service(), host="cache internal")
    assert str(raised.value) == (
        "service_fixture(): host must be a host name (e.g. 'cache.internal'), got"
        " 'cache internal': ' ' is not allowed in a host name (letters, digits, '-', '_', '.')"
    )
