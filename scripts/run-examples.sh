#!/usr/bin/env bash
# The main job: the example chaos suite in examples/, on the embedded engine and a Redis
# started from the local binary. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/pytest examples "$@"
