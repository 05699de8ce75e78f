"""`pytest-chaos serve` (and `python -m pytest_chaos serve`): the drop-in `toxiproxy-server`.

Every server runs as a real subprocess on 127.0.0.1 with port 0; tests wait for its ready line
(never a sleep) and always kill it in a `finally`.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from pytest_chaos import __version__
from pytest_chaos.engine import EngineThread
from tests.engine.api_helpers import (
    add_toxic,
    assert_closed,
    connect,
    create_proxy,
    exchange,
    listen_of,
    listening_socket,
)
from tests.engine.served import (
    COMMANDS,
    EXIT_SECONDS,
    STARTUP_SECONDS,
    Served,
    serve,
)


def stop(served: Served, signum: int) -> tuple[int, bytes, bytes]:
    served.process.send_signal(signum)
    stdout, stderr = served.process.communicate(timeout=EXIT_SECONDS)
    return served.process.returncode, stdout, stderr


def run(*args: str, command: str = "module") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMANDS[command], *args],
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def write_config(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "toxiproxy.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (?P<message>.*)")


def log_messages(stderr: bytes) -> list[str]:
    """The messages of the log lines on stderr; each line must start with a timestamp."""
    messages = []
    for line in stderr.decode().splitlines():
        match = LOG_LINE.fullmatch(line)
        assert match is not None, f"not a timestamped log line: {line!r}"
        messages.append(match["message"])
    return messages


@pytest.mark.parametrize("command", ["module", "script"])
@pytest.mark.parametrize("port_flag", ["-port", "--port"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serves_the_api_and_exits_cleanly_on_signals(
    command: str, port_flag: str, signum: int
) -> None:
    with serve(port_flag, "0", command=command) as served:
        assert served.seed == "random"
        with httpx.Client(base_url=served.url, timeout=10) as api:
            assert api.get("/version").json()["version"] == "2.12.0"
            assert api.get("/proxies").json() == {}

        returncode, stdout, stderr = stop(served, signum)

    assert returncode == 0
    assert stdout == b""
    assert log_messages(stderr) == [
        f"INFO pytest_chaos.engine: listening on {served.url} (seed random)",
        f"INFO pytest_chaos.engine: stopping on {signal.Signals(signum).name}",
        "INFO pytest_chaos.engine: stopped",
    ]


@pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.2 is loopback on Linux only")
def test_binds_127_0_0_1_by_default() -> None:
    with serve("-port", "0") as served:
        # Another loopback address reaches a socket bound to all interfaces, not this one.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", served.port), timeout=5).close()
        socket.create_connection(("127.0.0.1", served.port), timeout=5).close()


def test_config_file_loads_proxies_and_shutdown_closes_connections(
    tmp_path: Path, echo: str
) -> None:
    config = write_config(
        tmp_path,
        [
            {"name": "cache", "upstream": echo, "listen": "127.0.0.1:0"},
            {"name": "spare", "upstream": echo, "enabled": False, "toxics": [{"type": "noop"}]},
        ],
    )

    with serve("-config", str(config)) as served:
        with httpx.Client(base_url=served.url, timeout=10) as api:
            proxies = api.get("/proxies").json()
        assert sorted(proxies) == ["cache", "spare"]
        assert proxies["spare"]["enabled"] is False
        assert proxies["spare"]["toxics"] == []
        listen = proxies["cache"]["listen"]
        with connect(listen) as live:
            assert exchange(live, b"through the config proxy") == b"through the config proxy"

            returncode, _, stderr = stop(served, signal.SIGTERM)

            assert returncode == 0
            assert "WARNING" not in stderr.decode()
            assert "ERROR" not in stderr.decode()
            assert_closed(live)


@pytest.mark.parametrize("flag", ["-config", "--config"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read config file {path}: [Errno 2] No such file or directory: '{path}'"),
        ("", "cannot read config file {path}: Expecting value: line 1 column 1 (char 0)"),
        (
            "[{]",
            "cannot read config file {path}: Expecting property name enclosed in double quotes:"
            " line 1 column 3 (char 2)",
        ),
        (
            [{"name": "a", "upstream": "127.0.0.1:1"}, {"name": "b"}],
            "config file {path}: missing required field: upstream at proxy 2",
        ),
        (
            {"name": "a", "upstream": "127.0.0.1:1"},
            "config file {path}: bad request body: populate expects a JSON array of proxies",
        ),
    ],
    ids=["missing", "empty", "invalid-json", "no-upstream", "not-an-array"],
)
def test_bad_config_file_fails_clearly(
    tmp_path: Path, flag: str, content: Any, message: str
) -> None:
    path = tmp_path / "toxiproxy.json" if content is None else write_config(tmp_path, content)

    result = run("-port", "0", flag, str(path))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"pytest-chaos serve: {message.format(path=path)}\n"


def test_config_proxy_that_cannot_bind_fails_clearly(tmp_path: Path, echo: str) -> None:
    with listening_socket() as holder:
        taken = listen_of(holder)
        config = write_config(tmp_path, [{"name": "clash", "upstream": echo, "listen": taken}])

        result = run("-port", "0", "-config", str(config))

    assert result.returncode == 1
    assert result.stdout == ""
    prefix = f"pytest-chaos serve: config file {config}: listen tcp {taken}: "
    assert result.stderr.startswith(prefix), result.stderr
    assert result.stderr.endswith("address already in use\n"), result.stderr


@pytest.mark.parametrize("command", ["module", "script"])
def test_port_in_use_fails_clearly(command: str) -> None:
    with listening_socket() as holder:
        port = holder.getsockname()[1]

        result = run("-port", str(port), command=command)

    assert result.returncode == 1
    assert result.stdout == ""
    assert (
        result.stderr
        == f"pytest-chaos serve: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )


def toxicity_rolls(url: str, echo: str, connections: int = 16) -> str:
    """One letter per connection: `C` if a 50% `limit_data 0` toxic cut it, `E` if it echoed."""
    with httpx.Client(base_url=url, timeout=10) as api:
        listen = create_proxy(api, "seeded", echo)["listen"]
        add_toxic(api, "seeded", type="limit_data", toxicity=0.5, attributes={"bytes": 0})
    rolls = []
    for _ in range(connections):
        try:
            with connect(listen) as sock:
                sock.sendall(b"x")
                rolls.append("E" if sock.recv(1) == b"x" else "C")
        except ConnectionResetError:
            rolls.append("C")
    return "".join(rolls)


def test_seed_makes_toxicity_rolls_repeatable(echo: str) -> None:
    with serve("-seed", "42") as served:
        assert served.seed == "42"
        served_rolls = toxicity_rolls(served.url, echo)
    in_process = {}
    for seed in (42, 43):
        engine = EngineThread(seed=seed)
        engine.start()
        try:
            in_process[seed] = toxicity_rolls(engine.engine.url, echo)
        finally:
            engine.stop()

    assert "C" in served_rolls
    assert "E" in served_rolls
    assert served_rolls == in_process[42]
    assert served_rolls != in_process[43]


def test_bad_seed_is_a_usage_error() -> None:
    result = run("-port", "0", "-seed", "soon")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.endswith(
        "pytest-chaos serve: error: argument -seed/--seed: invalid int value: 'soon'\n"
    )


def test_version_flag() -> None:
    result = run("-version", command="script")

    assert result.returncode == 0
    assert result.stdout == f"pytest-chaos {__version__} (toxiproxy-server 2.12.0)\n"


@pytest.mark.parametrize(
    ("args", "returncode", "stream", "expected"),
    [
        ([], 2, "stdout", "usage: pytest-chaos COMMAND [options]\n"),
        (["--help"], 0, "stdout", "usage: pytest-chaos COMMAND [options]\n"),
        (["frobnicate"], 2, "stderr", "pytest-chaos: unknown command 'frobnicate'\n"),
    ],
)
def test_top_level_command_line(
    args: list[str], returncode: int, stream: str, expected: str
) -> None:
    result = subprocess.run(
        [*COMMANDS["script"][:1], *args],
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )

    assert result.returncode == returncode
    assert getattr(result, stream).startswith(expected)
    assert "serve    run the engine" in getattr(result, stream)
