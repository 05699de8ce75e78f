"""`--chaos-backend container` against a real Docker engine: the upstream Toxiproxy image when it
is present locally, and the stand-in `pytest-chaos/engine:local` (built by
scripts/images/engine.sh) in both network modes; what a user is told when Docker or the image
is missing; and no container left behind either way."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pytest_chaos._docker import SESSION_ID, SESSION_LABEL, docker_unavailable_reason
from pytest_chaos.backends.container import BACKEND_LABEL
from pytest_chaos.config import DEFAULT_TOXIPROXY_IMAGE
from tests.plugin.conftest import NETCHECK, exact, make_ini
from tests.servers import echo_server, free_port

pytest.importorskip("testcontainers", reason="testcontainers is not installed")

STAND_IN = "pytest-chaos/engine:local"
# The inner runs are in this process: their containers carry its session label, which keeps
# those of the other xdist worker, started meanwhile, out of the count.
LABEL_FILTERS = (
    "--filter",
    f"label={BACKEND_LABEL}=toxiproxy",
    "--filter",
    f"label={SESSION_LABEL}={SESSION_ID}",
)

# The inner run: one echo server of the outer test, reached through a proxy the test makes.
INNER = """
import pytest

from netcheck import talk

UPSTREAM = {upstream!r}
NETWORK = {network!r}


@pytest.fixture
def echo(chaos):
    proxy = chaos.proxy("echo", upstream=UPSTREAM)
    return (proxy.host, proxy.port)


def test_what_the_user_sees(toxiproxy, echo):
    proxy = toxiproxy.proxies()["echo"]
    print("server:", toxiproxy.backend, toxiproxy.url, "listen", proxy.listen)
    # Where the test connects (the published port in bridge mode), and the upstream as given.
    assert proxy.host == "127.0.0.1"
    assert proxy.upstream == UPSTREAM
    assert talk(echo).outcome == "ok"


@pytest.mark.latency("echo", 300)
def test_latency(echo):
    seen = talk(echo)
    assert (seen.outcome, seen.data) == ("ok", b"ping")
    assert seen.seconds >= 0.28


@pytest.mark.dependency_down("echo")
def test_down(echo):
    # Host network: nothing listens, the connection is refused. Bridge network: Docker's port
    # forwarder accepts every connection itself and drops it when nothing listens inside.
    expected = ("refused",) if NETWORK == "host" else ("reset", "eof")
    assert talk(echo).outcome in expected


def test_up_again(echo):
    assert talk(echo).outcome == "ok"


def test_declared_in_the_ini_file(toxiproxy):
    proxy = toxiproxy.proxies()["declared"]
    assert (proxy.host, proxy.upstream) == ("127.0.0.1", UPSTREAM)
    assert talk((proxy.host, proxy.port)).outcome == "ok"
"""

# Only in bridge mode: a proxy port the container does not publish cannot be honoured.
INNER_BRIDGE_ONLY = """

def test_unpublished_listen_port(chaos):
    from pytest_chaos.backends.client import ToxiproxyError

    with pytest.raises(ToxiproxyError, match="can listen only on the ports it publishes"):
        chaos.proxy("fixed", upstream=UPSTREAM, listen="127.0.0.1:5555")
"""


@pytest.fixture(scope="module")
def docker_engine() -> None:
    reason = docker_unavailable_reason()
    if reason is not None:
        pytest.skip(f"Docker is unavailable: {reason}")


def image_present(image: str) -> bool:
    found = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, check=False, timeout=30
    )
    return found.returncode == 0


def backend_containers() -> set[str]:
    listed = subprocess.run(
        ["docker", "ps", "-a", "-q", "--no-trunc", *LABEL_FILTERS],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return set(listed.stdout.split())


@contextmanager
def no_container_left() -> Iterator[None]:
    """No container of this process's is left by the block."""
    before = backend_containers()
    yield
    assert backend_containers() - before == set()


def run_inner(pytester: pytest.Pytester, network: str, port: int, *args: str) -> pytest.RunResult:
    make_ini(
        pytester,
        f"chaos_toxiproxy_network = {network}\nchaos_proxies =\n    declared = 127.0.0.1:{port}",
    )
    pytester.makepyfile(netcheck=NETCHECK)
    source = INNER.format(upstream=f"127.0.0.1:{port}", network=network)
    if network == "bridge":
        source += INNER_BRIDGE_ONLY
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_inprocess("--chaos-backend", "container", "-rP", *args)


@pytest.mark.usefixtures("docker_engine")
@pytest.mark.parametrize("network", ["bridge", "host"])
def test_stand_in_image(pytester: pytest.Pytester, network: str) -> None:
    if not image_present(STAND_IN):
        pytest.skip(f"{STAND_IN} is not built; run scripts/docker-setup.sh")
    # Bridge: the container dials host.docker.internal (the docker0 address), so the server
    # listens on every interface. Host: the container shares loopback with us.
    host = "0.0.0.0" if network == "bridge" else "127.0.0.1"
    with echo_server(host) as (_, port), no_container_left():
        result = run_inner(pytester, network, port, "--chaos-toxiproxy-image", STAND_IN)
    result.stdout.fnmatch_lines(
        [
            f"chaos: backend=container image={STAND_IN} network={network} seed=*",
            "server: container http://127.0.0.1:* listen 127.0.0.1:*",
            "chaos: 2 faults injected in * tests (backend container, seed *)",
        ]
    )
    result.assert_outcomes(passed=6 if network == "bridge" else 5)


@pytest.mark.usefixtures("docker_engine")
def test_upstream_image(pytester: pytest.Pytester) -> None:
    if not image_present(DEFAULT_TOXIPROXY_IMAGE):
        pytest.skip(
            "upstream Toxiproxy image not present locally (no registry here); pull it to run"
            " this test"
        )
    with echo_server("0.0.0.0") as (_, port), no_container_left():
        result = run_inner(pytester, "bridge", port)
    result.assert_outcomes(passed=6)


@pytest.mark.usefixtures("docker_engine")
def test_missing_image_fails_fast(pytester: pytest.Pytester) -> None:
    # A registry on a closed port: the engine's pull fails at once, with its own reason.
    registry = f"127.0.0.1:{free_port()}"
    image = f"{registry}/no-such-image:missing"
    make_ini(pytester)
    pytester.makepyfile(
        test_inner="""
        def test_needs_the_server(toxiproxy):
            pass
        """
    )
    with no_container_left():
        result = pytester.runpytest_inprocess(
            "--chaos-backend", "container", "--chaos-toxiproxy-image", image
        )
    result.stdout.fnmatch_lines(
        [
            "_* ERROR at setup of test_needs_the_server _*",
            exact(
                f"pytest-chaos: --chaos-backend container: image {image} is not present locally"
                f" and could not be pulled: Get *{registry}*connection refused; run"
                f" `docker pull {image}` where a registry is reachable, choose a local image"
                " with --chaos-toxiproxy-image, or use --chaos-backend embedded"
            ).replace("[*]", "*"),
        ]
    )
    result.assert_outcomes(errors=1)


@pytest.mark.usefixtures("docker_engine")
def test_container_that_exits_is_reported_with_its_log(pytester: pytest.Pytester) -> None:
    """An image that is no Toxiproxy: the error says so, with the end of its log."""
    image = "pytest-chaos/redis:local"
    if not image_present(image):
        pytest.skip(f"{image} is not built; run scripts/docker-setup.sh")
    make_ini(pytester)
    pytester.makepyfile(test_inner="def test_needs_the_server(toxiproxy):\n    pass\n")
    with no_container_left():
        result = pytester.runpytest_inprocess(
            "--chaos-backend", "container", "--chaos-toxiproxy-image", image
        )
    result.stdout.fnmatch_lines(
        [exact(f"pytest-chaos: --chaos-backend container: the {image} container ") + "*"]
    )
    result.assert_outcomes(errors=1)


def test_unreachable_docker(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Docker engine needed: the error says why, and what to use instead."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-docker.sock")
    make_ini(pytester)
    pytester.makepyfile(test_inner="def test_needs_the_server(toxiproxy):\n    pass\n")
    result = pytester.runpytest_inprocess("--chaos-backend", "container")
    result.stdout.fnmatch_lines(
        [
            exact("pytest-chaos: --chaos-backend container: cannot reach a Docker engine (")
            + "*"
            + exact("); start Docker (or set DOCKER_HOST), or use --chaos-backend embedded")
        ]
    )
    result.assert_outcomes(errors=1)
