"""The in-process layer's own mechanics: which lookups it decides, how it stacks with other
sessions and with other patches of the socket module, and that it leaves nothing behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from pytest_chaos.dns import inprocess
from pytest_chaos.dns.session import DnsSession
from pytest_chaos.faults import DnsFailure

ORIGINAL = (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex)


def current() -> tuple[object, ...]:
    return (socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex)


@pytest.fixture
def session() -> Iterator[DnsSession]:
    running = DnsSession()
    yield running
    running.close()
    assert current() == ORIGINAL


def test_installed_only_while_there_is_something_to_say(session: DnsSession) -> None:
    assert current() == ORIGINAL
    handle = session.add_name("db.internal", addresses=("127.0.0.3",), source="test")
    assert inprocess.installed()
    active = session.add_fault(DnsFailure("cache.internal"), seed=1, ordinal=0)
    handle.revert()
    assert inprocess.installed()
    session.remove_fault(active)
    assert current() == ORIGINAL


def test_only_names_it_knows_are_decided(session: DnsSession) -> None:
    session.add_name("DB.Internal.", addresses=("127.0.0.3",), source="test")
    session.add_fault(DnsFailure("*.broken.internal"), seed=1, ordinal=0)
    assert socket.gethostbyname("db.internal") == "127.0.0.3"
    assert socket.gethostbyname(b"DB.INTERNAL.".decode()) == "127.0.0.3"
    assert socket.getaddrinfo(b"db.internal", 80)[0][4] == ("127.0.0.3", 80)
    with pytest.raises(socket.gaierror):
        socket.gethostbyname("a.b.broken.internal")
    # Names and addresses it does not know go to the real resolver, unrecorded.
    assert socket.gethostbyname("localhost") == "127.0.0.1"
    assert socket.getaddrinfo("127.0.0.1", 80)[0][4] == ("127.0.0.1", 80)
    recorded = [event.name for event in session.log.since(0) if hasattr(event, "layer")]
    assert recorded == ["db.internal", "db.internal", "db.internal", "a.b.broken.internal"]


def test_numeric_host_only_is_never_decided(session: DnsSession) -> None:
    session.add_fault(DnsFailure("*"), seed=1, ordinal=0)
    with pytest.raises(socket.gaierror) as raised:
        socket.getaddrinfo("localhost", 80)
    assert raised.value.errno == socket.EAI_NONAME
    # As glibc: AI_NUMERICHOST never looks a name up, whatever the fault.
    with pytest.raises(socket.gaierror) as raised:
        socket.getaddrinfo("db.internal", 80, flags=socket.AI_NUMERICHOST)
    assert raised.value.errno == socket.EAI_NONAME
    assert socket.getaddrinfo("127.0.0.1", 80)[0][4] == ("127.0.0.1", 80)


def test_an_unknown_service_is_refused_before_any_lookup(session: DnsSession) -> None:
    session.add_fault(DnsFailure("db.internal", error="timeout", timeout=5000), seed=1, ordinal=0)
    started = time.monotonic()
    with pytest.raises(socket.gaierror) as raised:
        socket.getaddrinfo("db.internal", "no-such-service")
    assert raised.value.errno == socket.EAI_SERVICE
    assert time.monotonic() - started < 2


def test_sessions_stack_newest_first() -> None:
    outer, inner = DnsSession(), DnsSession()
    try:
        outer.add_name("db.internal", addresses=("127.0.0.3",), source="outer")
        outer.add_name("cache.internal", addresses=("127.0.0.4",), source="outer")
        inner.add_name("db.internal", addresses=("127.0.0.5",), source="inner")
        assert socket.gethostbyname("db.internal") == "127.0.0.5"
        assert socket.gethostbyname("cache.internal") == "127.0.0.4"
        inner.close()
        assert socket.gethostbyname("db.internal") == "127.0.0.3"
        assert inprocess.installed()
    finally:
        inner.close()
        outer.close()
    assert current() == ORIGINAL


def test_a_patch_made_over_it_is_left_alone_and_still_works(
    session: DnsSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = session.add_name("db.internal", addresses=("127.0.0.3",), source="test")
    ours = socket.gethostbyname
    calls: list[str] = []

    def theirs(host: str) -> str:
        calls.append(host)
        return ours(host)

    monkeypatch.setattr(socket, "gethostbyname", theirs)
    handle.revert()  # ours cannot be taken out from under theirs: it stays, with nothing to say
    assert socket.gethostbyname is theirs
    assert socket.gethostbyname("localhost") == "127.0.0.1"
    # Installed again over theirs: a lookup is decided once, not by both wrappers.
    session.add_name("db.internal", addresses=("127.0.0.3",), source="test")
    session.add_fault(DnsFailure("db.internal", delay=200, probability=0), seed=1, ordinal=0)
    started = time.monotonic()
    assert socket.gethostbyname("db.internal") == "127.0.0.3"
    assert 0.2 <= time.monotonic() - started < 0.35
    assert calls == ["localhost"]  # answered by ours, on top
    lookups = [event for event in session.log.since(started) if hasattr(event, "layer")]
    assert len(lookups) == 1
    # Their patch undone puts back what they saw first: our old wrapper, taken off at close.
    monkeypatch.undo()


def test_a_reverted_fault_releases_the_lookups_it_holds(session: DnsSession) -> None:
    import threading

    active = session.add_fault(
        DnsFailure("db.internal", error="timeout", timeout=60_000), seed=1, ordinal=0
    )
    errors: list[int] = []
    thread = threading.Thread(
        target=lambda: errors.append(_errno(lambda: socket.getaddrinfo("db.internal", 80)))
    )
    thread.start()
    time.sleep(0.1)
    session.remove_fault(active)
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert errors == [socket.EAI_AGAIN]


def _errno(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except socket.gaierror as error:
        return error.errno
    return 0
