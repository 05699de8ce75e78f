"""The distribution: one version source, typing information, an SPDX license, and a build that
warns about nothing."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import pytest_chaos

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The project built as a wheel (with the installed setuptools, no download), and what the
    build printed."""
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = out.glob("pytest_chaos-*.whl")
    return built, build.stdout + build.stderr


def test_the_build_warns_about_nothing(wheel: tuple[Path, str]) -> None:
    _, output = wheel
    warnings = [line for line in output.splitlines() if "deprecat" in line.lower()]
    assert warnings == []


def test_one_version_source(wheel: tuple[Path, str]) -> None:
    built, _ = wheel
    assert built.name.startswith(f"pytest_chaos-{pytest_chaos.__version__}-")
    with zipfile.ZipFile(built) as archive:
        metadata = archive.read(
            f"pytest_chaos-{pytest_chaos.__version__}.dist-info/METADATA"
        ).decode()
    assert f"Version: {pytest_chaos.__version__}\n" in metadata
    assert "License-Expression: MIT\n" in metadata
    # Nowhere else in the sources is the version written.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert pytest_chaos.__version__ not in pyproject


def test_typing_information_ships(wheel: tuple[Path, str]) -> None:
    built, _ = wheel
    with zipfile.ZipFile(built) as archive:
        assert "pytest_chaos/py.typed" in archive.namelist()
