"""One test file, either way: the example suites, which the main job runs on local binaries,
pass unchanged with their Redis and PostgreSQL in containers (`--chaos-services container`),
where process faults become docker kill, stop and pause.

There is no registry here, so the images are the ones scripts/docker-setup.sh builds from this
machine's own binaries, named with `chaos_images`; without Docker or those images the test
skips, saying which is missing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMAGES = {"redis": "pytest-chaos/redis:local", "postgres": "pytest-chaos/postgres:local"}
# Services of other names that run one of those images (examples/dns's Redis is "sessions").
ALSO = {"sessions": IMAGES["redis"]}


def test_the_examples_pass_with_their_services_in_containers() -> None:
    from pytest_chaos._docker import docker_unavailable_reason, image_present

    reason = docker_unavailable_reason()
    if reason is not None:
        pytest.skip(f"Docker is not available: {reason}")
    missing = [image for image in IMAGES.values() if not image_present(image)]
    if missing:
        pytest.skip(f"images {', '.join(missing)} are not built; run scripts/docker-setup.sh")
    import docker  # installed with testcontainers, which the check above needed

    images = "\n".join(f"{name} = {image}" for name, image in {**IMAGES, **ALSO}.items())
    started = int(time.time()) - 1
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "examples", "-q", "-p", "no:cacheprovider",
            "--chaos-services", "container", "-o", f"chaos_images={images}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary, summary
    assert "skipped" not in summary, summary
    # The services really were containers: each suite's Redis, and PostgreSQL. (Other runs on
    # this machine may create containers meanwhile: count at least, not exactly.)
    created = sorted(
        event["Actor"]["Attributes"]["image"]
        for event in docker.from_env().events(
            since=started,
            until=int(time.time()) + 1,
            decode=True,
            filters={"type": "container", "event": "create", "label": "pytest-chaos.service"},
        )
    )
    assert created.count(IMAGES["redis"]) >= 3, created
    assert created.count(IMAGES["postgres"]) >= 1, created
