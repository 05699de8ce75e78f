#!/usr/bin/env bash
# The test suite (tests/), after lint and type checks. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Docker and the images the container tests use, built from this machine's binaries; where
# Docker cannot start, the script says why and those tests skip with the reason.
./scripts/docker-setup.sh
.venv/bin/ruff check pytest_chaos tests examples benchmarks
.venv/bin/ruff format --check pytest_chaos tests examples benchmarks
.venv/bin/mypy pytest_chaos
# Two workers (pytest-xdist): most tests wait on sockets and servers, so two run in about the
# time of one. A later `-n N` or `-p no:xdist` in the arguments overrides it.
exec .venv/bin/pytest -n 2 "$@"
