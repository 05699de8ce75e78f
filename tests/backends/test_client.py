"""The API client against the engine: names that need escaping in a URL path are reachable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_chaos.backends.client import ToxiproxyClient, ToxiproxyError
from pytest_chaos.engine import EngineThread


@pytest.fixture(scope="module")
def client() -> Iterator[ToxiproxyClient]:
    engine = EngineThread(seed=1)
    url = engine.start()
    try:
        with ToxiproxyClient(url) as api:
            yield api
    finally:
        engine.stop()


@pytest.mark.parametrize("name", ["a?b", "c#d", "with space", "café", "50%", "x&y=z", "a+b"])
def test_names_that_need_escaping_round_trip(client: ToxiproxyClient, name: str) -> None:
    created = client.create_proxy(name, "127.0.0.1:9", listen="127.0.0.1:0")
    try:
        assert created.name == name
        assert client.get_proxy(name).name == name
        client.add_toxic(name, "latency", name=f"toxic {name}", attributes={"latency": 5})
        assert [t.name for t in client.toxics(name)] == [f"toxic {name}"]
        client.update_toxic(name, f"toxic {name}", attributes={"latency": 6})
        client.remove_toxic(name, f"toxic {name}")
        assert client.toxics(name) == []
        assert client.update_proxy(name, enabled=False).enabled is False
    finally:
        client.delete_proxy(name)
    with pytest.raises(ToxiproxyError) as gone:
        client.get_proxy(name)
    assert gone.value.status == 404
