"""The plugin's settings: command-line options with ini twins, resolved in one place."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

BACKENDS = ("embedded", "toxiproxy", "container")


@dataclass(frozen=True)
class ChaosConfig:
    backend: str
    toxiproxy_url: str | None
    seed: int
    report_path: Path | None
    proxies: dict[str, str]


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "chaos and resilience testing (pytest-chaos)")
    group.addoption(
        "--chaos-backend",
        choices=BACKENDS,
        default=None,
        help="where faults are injected: embedded (default; the bundled engine), toxiproxy "
        "(a running Toxiproxy at --toxiproxy-url) or container. Ini: chaos_backend.",
    )
    group.addoption(
        "--toxiproxy-url",
        default=None,
        help="API URL of a running Toxiproxy or `pytest-chaos serve`, e.g. "
        "http://127.0.0.1:8474 (for --chaos-backend toxiproxy). Ini: chaos_toxiproxy_url.",
    )
    group.addoption(
        "--chaos-seed",
        default=None,
        help="seed for jitter, toxicity rolls and slicing; default: random, shown in the "
        "header so a run can be repeated. Ini: chaos_seed.",
    )
    group.addoption(
        "--chaos-report",
        default=None,
        metavar="PATH",
        help="write the faults and what the engine saw, per test, as JSON. Ini: chaos_report.",
    )
    parser.addini("chaos_backend", "default for --chaos-backend", default="embedded")
    parser.addini("chaos_toxiproxy_url", "default for --toxiproxy-url", default="")
    parser.addini("chaos_seed", "default for --chaos-seed", default="")
    parser.addini("chaos_report", "default for --chaos-report", default="")
    parser.addini(
        "chaos_proxies",
        "proxies to create for the session, one `name = host:port` (the upstream) per line",
        type="linelist",
        default=[],
    )


def _setting(config: pytest.Config, option: str, ini: str) -> str:
    value = config.getoption(option)
    if value is None or value == "":
        value = config.getini(ini)
    return str(value).strip() if value is not None else ""


def resolve(config: pytest.Config, inherited_seed: int | None = None) -> ChaosConfig:
    """Read and check every setting; a bad value is a UsageError listing what is allowed."""
    backend = _setting(config, "chaos_backend", "chaos_backend") or "embedded"
    if backend not in BACKENDS:
        raise pytest.UsageError(
            f"chaos_backend: {backend!r} is not a backend; choose from {', '.join(BACKENDS)}"
        )
    url = _setting(config, "toxiproxy_url", "chaos_toxiproxy_url") or None
    if backend == "toxiproxy" and not url:
        raise pytest.UsageError(
            "--chaos-backend toxiproxy needs the API address: --toxiproxy-url "
            "http://HOST:PORT (or chaos_toxiproxy_url in the ini file)"
        )
    if url and not url.startswith(("http://", "https://")):
        raise pytest.UsageError(f"--toxiproxy-url must be an http:// URL, got {url!r}")
    seed_text = _setting(config, "chaos_seed", "chaos_seed")
    if inherited_seed is not None:
        seed = inherited_seed
    elif seed_text:
        try:
            seed = int(seed_text)
        except ValueError:
            raise pytest.UsageError(
                f"--chaos-seed must be a whole number, got {seed_text!r}"
            ) from None
    else:
        seed = random.randrange(1, 2**31)
    report = _setting(config, "chaos_report", "chaos_report")
    return ChaosConfig(
        backend=backend,
        toxiproxy_url=url,
        seed=seed,
        report_path=Path(report) if report else None,
        proxies=parse_proxy_lines(config.getini("chaos_proxies")),
    )


def parse_proxy_lines(lines: list[str]) -> dict[str, str]:
    proxies: dict[str, str] = {}
    for line in lines:
        name, sep, upstream = line.partition("=")
        name, upstream = name.strip(), upstream.strip()
        host, colon, port = upstream.rpartition(":")
        if not sep or not name or not colon or not host or not port.isdigit():
            raise pytest.UsageError(
                f"chaos_proxies: cannot read {line!r}; write one `name = host:port` per line,"
                " e.g. `redis = 127.0.0.1:6379`"
            )
        if not 0 < int(port) < 65536:
            raise pytest.UsageError(
                f"chaos_proxies: {line!r}: the port must be from 1 to 65535, got {port}"
            )
        if name in proxies:
            raise pytest.UsageError(f"chaos_proxies: proxy {name!r} is declared twice")
        proxies[name] = upstream
    return proxies
