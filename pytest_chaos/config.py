"""The plugin's settings: command-line options with ini twins, resolved in one place."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BACKENDS = ("embedded", "toxiproxy", "container")
SERVICE_PROVIDERS = ("auto", "container", "local")
NETWORKS = ("bridge", "host")
DEFAULT_TOXIPROXY_IMAGE = "ghcr.io/shopify/toxiproxy:2.12.0"


@dataclass(frozen=True)
class ChaosConfig:
    backend: str
    toxiproxy_url: str | None
    seed: int
    report_path: Path | None
    proxies: dict[str, str]
    # The container backend: which image, and how it reaches upstreams.
    toxiproxy_image: str = DEFAULT_TOXIPROXY_IMAGE
    toxiproxy_network: str = "bridge"
    # Services: who runs them (auto: containers when Docker answers, else local binaries),
    # image overrides per service name, and external addresses per service name.
    services: str = "auto"
    images: dict[str, str] = field(default_factory=dict)
    external: dict[str, str] = field(default_factory=dict)
    # DNS: names for the whole session (name -> IP address or proxy name), and where the
    # plugin's DNS server sends the names it does not know (None: it refuses them).
    hosts: dict[str, str] = field(default_factory=dict)
    dns_forward: tuple[str, int] | None = None
    # `--chaos-html`: the self-contained HTML report with charts.
    html_path: Path | None = None

    def header(self) -> str:
        """The report header's line: `chaos: backend=embedded seed=1234`."""
        where = ""
        if self.backend == "toxiproxy":
            where = f" url={self.toxiproxy_url}"
        elif self.backend == "container":
            where = f" image={self.toxiproxy_image} network={self.toxiproxy_network}"
        return f"chaos: backend={self.backend}{where} seed={self.seed}"


# Other pytest plugins known to register `--chaos-seed` themselves (ordeal, a Hypothesis chaos
# library). Two plugins adding one option crash pytest at start, so when one of them is loaded
# we read its option (same dest, `chaos_seed`) instead of adding ours.
SEED_OPTION_CLAIMANTS = ("ordeal",)


def seed_option_claimed(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> bool:
    """Another plugin registers `--chaos-seed`: already (any plugin), or later (a known one
    that is installed and not disabled with `-p no:NAME`)."""
    taken = any(
        "--chaos-seed" in option.names()
        for group in parser._groups  # no public API lists the options of other groups
        for option in group.options
    )
    if taken:
        return True
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False  # only plugins given with -p load, and those have registered already
    from importlib.util import find_spec

    # A look for the package, not a scan of every installed distribution's entry points.
    return any(
        not pluginmanager.is_blocked(name) and find_spec(name) is not None
        for name in SEED_OPTION_CLAIMANTS
    )


def add_options(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the `--chaos-*` options and their ini twins."""
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
    if not seed_option_claimed(parser, pluginmanager):
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
    group.addoption(
        "--chaos-html",
        default=None,
        metavar="PATH",
        help="write one self-contained HTML file: per test, the faults as shaded bands, the "
        "load's latency and errors over time, the proxies' connections, and the signals per "
        "fault window. Ini: chaos_html.",
    )
    group.addoption(
        "--chaos-toxiproxy-image",
        default=None,
        metavar="IMAGE",
        help=f"image for --chaos-backend container (default {DEFAULT_TOXIPROXY_IMAGE}). "
        "Ini: chaos_toxiproxy_image.",
    )
    group.addoption(
        "--chaos-toxiproxy-network",
        choices=NETWORKS,
        default=None,
        help="network of the Toxiproxy container: bridge (default; ports published on "
        "127.0.0.1) or host (shares the host's network). Ini: chaos_toxiproxy_network.",
    )
    group.addoption(
        "--chaos-services",
        choices=SERVICE_PROVIDERS,
        default=None,
        help="who runs the services declared with pytest_chaos.services.service_fixture: auto "
        "(default; containers when a Docker engine answers, local binaries otherwise), "
        "container or local. Ini: chaos_services.",
    )
    parser.addini("chaos_backend", "default for --chaos-backend", default="embedded")
    parser.addini("chaos_toxiproxy_image", "default for --chaos-toxiproxy-image", default="")
    parser.addini("chaos_toxiproxy_network", "default for --chaos-toxiproxy-network", default="")
    parser.addini("chaos_services", "default for --chaos-services", default="auto")
    parser.addini(
        "chaos_images",
        "container images for services, one `name = image` per line (overrides the recipe's)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "chaos_external",
        "services that already run elsewhere, one `name = host:port` per line (network faults "
        "only); the environment variable CHAOS_EXTERNAL_<NAME> does the same",
        type="linelist",
        default=[],
    )
    parser.addini("chaos_toxiproxy_url", "default for --toxiproxy-url", default="")
    parser.addini("chaos_seed", "default for --chaos-seed", default="")
    parser.addini("chaos_report", "default for --chaos-report", default="")
    parser.addini("chaos_html", "default for --chaos-html", default="")
    parser.addini(
        "chaos_proxies",
        "proxies to create for the session, one `name = host:port` (the upstream) per line",
        type="linelist",
        default=[],
    )
    parser.addini(
        "chaos_hosts",
        "host names for the whole session, one `name = proxy-or-address` per line: the name "
        "resolves to that proxy's address or that IP address (in-process and in the plugin's "
        "DNS server)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "chaos_dns_forward",
        "`host:port` of a DNS server to which the plugin's DNS server forwards the names it "
        "does not know (default: it refuses them)",
        default="",
    )


def _setting(config: pytest.Config, option: str, ini: str) -> str:
    value = config.getoption(option, default=None)
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
    html = _setting(config, "chaos_html", "chaos_html")
    if html:
        check_charts_installed()
    network = _setting(config, "chaos_toxiproxy_network", "chaos_toxiproxy_network") or "bridge"
    if network not in NETWORKS:
        raise pytest.UsageError(
            f"chaos_toxiproxy_network: {network!r} is not a network mode; choose from"
            f" {', '.join(NETWORKS)}"
        )
    services = _setting(config, "chaos_services", "chaos_services") or "auto"
    if services not in SERVICE_PROVIDERS:
        raise pytest.UsageError(
            f"chaos_services: {services!r} is not a provider; choose from"
            f" {', '.join(SERVICE_PROVIDERS)}"
        )
    return ChaosConfig(
        backend=backend,
        toxiproxy_url=url,
        seed=seed,
        report_path=Path(report) if report else None,
        proxies=parse_proxy_lines(config.getini("chaos_proxies")),
        toxiproxy_image=_setting(config, "chaos_toxiproxy_image", "chaos_toxiproxy_image")
        or DEFAULT_TOXIPROXY_IMAGE,
        toxiproxy_network=network,
        services=services,
        images=parse_image_lines(config.getini("chaos_images")),
        external=parse_proxy_lines(config.getini("chaos_external"), ini="chaos_external"),
        hosts=parse_host_lines(config.getini("chaos_hosts")),
        dns_forward=parse_dns_forward(str(config.getini("chaos_dns_forward")).strip()),
        html_path=Path(html) if html else None,
    )


def check_charts_installed() -> None:
    """The HTML report draws with matplotlib (the `report` extra): say so at start rather than
    fail at the end of the run. Looked up, not imported: importing it costs half a second."""
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        raise pytest.UsageError(
            "--chaos-html draws its charts with matplotlib, which is not installed:"
            " pip install 'pytest-chaos[report]'"
        )


def parse_image_lines(lines: list[str]) -> dict[str, str]:
    """`chaos_images` lines (`name = image`) as a dict; UsageError for a line that is not one."""
    images: dict[str, str] = {}
    for line in lines:
        name, sep, image = (part.strip() for part in line.partition("="))
        if not sep or not name or not image or " " in image:
            raise pytest.UsageError(
                f"chaos_images: cannot read {line!r}; write one `name = image` per line,"
                " e.g. `redis = redis:7-alpine`"
            )
        if name in images:
            raise pytest.UsageError(f"chaos_images: service {name!r} is given twice")
        images[name] = image
    return images


def parse_proxy_lines(lines: list[str], ini: str = "chaos_proxies") -> dict[str, str]:
    """`name = host:port` lines (`chaos_proxies`, `chaos_external`) as a dict; UsageError
    for a line that is not one."""
    proxies: dict[str, str] = {}
    for line in lines:
        name, sep, upstream = line.partition("=")
        name, upstream = name.strip(), upstream.strip()
        host, colon, port = upstream.rpartition(":")
        if not sep or not name or not colon or not host or not port.isdigit():
            raise pytest.UsageError(
                f"{ini}: cannot read {line!r}; write one `name = host:port` per line,"
                " e.g. `redis = 127.0.0.1:6379`"
            )
        if not 0 < int(port) < 65536:
            raise pytest.UsageError(
                f"{ini}: {line!r}: the port must be from 1 to 65535, got {port}"
            )
        if name in proxies:
            raise pytest.UsageError(f"{ini}: {name!r} is declared twice")
        proxies[name] = upstream
    return proxies


def parse_host_lines(lines: list[str]) -> dict[str, str]:
    """`chaos_hosts`: name -> IP address or proxy name."""
    from pytest_chaos.faults import dns_name_problem

    hosts: dict[str, str] = {}
    for line in lines:
        name, sep, target = (part.strip() for part in line.partition("="))
        if not sep or not name or not target or " " in target:
            raise pytest.UsageError(
                f"chaos_hosts: cannot read {line!r}; write one `name = proxy-or-address` per"
                " line, e.g. `db.internal = postgres` or `db.internal = 127.0.0.1`"
            )
        problem = dns_name_problem(name, pattern=False)
        if problem is not None:
            raise pytest.UsageError(
                f"chaos_hosts: {line!r}: {name!r} is not a host name: {problem}"
            )
        if name.lower().rstrip(".") in hosts:
            raise pytest.UsageError(f"chaos_hosts: {name!r} is declared twice")
        hosts[name.lower().rstrip(".")] = target
    return hosts


def parse_dns_forward(text: str) -> tuple[str, int] | None:
    """`chaos_dns_forward`: an IP address and a port, or nothing."""
    import ipaddress

    if not text:
        return None
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        valid = bool(colon) and port.isdigit() and 0 < int(port) < 65536
    except ValueError:
        valid = False
    if not valid:
        raise pytest.UsageError(
            f"chaos_dns_forward: {text!r} is not an address; write `ip:port`, e.g."
            " `127.0.0.1:5353` (an IPv6 address in brackets: `[::1]:53`)"
        )
    return host, int(port)
