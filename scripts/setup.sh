#!/usr/bin/env bash
# Prepare a fresh machine for pytest-chaos development: a virtualenv with the project and its
# dev tools, the local service binaries the examples and tests start (redis-server, PostgreSQL,
# memcached), and Chromium with its driver (a test opens the HTML report in it).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

# Tests and examples start their own Redis and PostgreSQL from the local binaries, on free
# ports in temporary directories (and memcached, for the README's service of your own).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# The HTML report's test opens it in a real headless browser, driven through chromedriver.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        # shellcheck source=lib/apt.sh
        . scripts/lib/apt.sh
        apt_get update -qq >/dev/null && apt_get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: please install ${missing[*]} (e.g. apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi
