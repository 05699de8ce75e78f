#!/usr/bin/env bash
# Docker for the container tests and the container backend, idempotent and quick when all is in
# place: install docker.io when dockerd is missing (as root, with apt-get), start dockerd when
# the engine does not answer, then build the local images (every scripts/images/*.sh; each is a
# no-op when its image was built from the same inputs).
#
# When Docker cannot be installed or started, this says why in one line and exits 0: the
# container tests then skip with that reason. A failing image build exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

log=/tmp/pytest-chaos-dockerd.log
install_log=/tmp/pytest-chaos-docker-install.log
start_timeout=30

give_up() {
    echo "docker-setup: $*; container tests will skip" >&2
    exit 0
}

engine_answers() {
    timeout 5 docker info >/dev/null 2>&1
}

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        give_up "Docker is not installed and only root can install it (apt-get install docker.io)"
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        give_up "Docker is not installed and there is no apt-get to install it with"
    fi
    echo "docker-setup: installing docker.io (log: $install_log)" >&2
    # shellcheck source=lib/apt.sh
    . scripts/lib/apt.sh
    if ! { apt_get update -qq && apt_get install -y -qq --no-install-recommends docker.io; } \
        >"$install_log" 2>&1; then
        give_up "apt-get could not install docker.io ($(tail -n 1 "$install_log"))"
    fi
fi

if ! engine_answers; then
    if [ "$(id -u)" != 0 ]; then
        give_up "the Docker engine does not answer ($(docker info 2>&1 >/dev/null | tail -n 1))" \
            "and only root can start dockerd"
    fi
    # A dockerd that is already starting (its pid file names a live process) gets the time to
    # finish rather than a rival.
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        started=""
    else
        echo "docker-setup: starting dockerd (log: $log)" >&2
        setsid dockerd >"$log" 2>&1 </dev/null &
        started=$!
    fi
    deadline=$((SECONDS + start_timeout))
    until engine_answers; do
        if [ -n "$started" ] && ! kill -0 "$started" 2>/dev/null; then
            give_up "dockerd exited ($log: $(tail -n 1 "$log" 2>/dev/null))"
        fi
        if [ "$SECONDS" -ge "$deadline" ] && [ -n "$started" ]; then
            give_up "dockerd did not answer within ${start_timeout}s" \
                "($log: $(tail -n 1 "$log" 2>/dev/null))"
        elif [ "$SECONDS" -ge "$deadline" ]; then
            give_up "dockerd (pid $pid) runs but did not answer within ${start_timeout}s"
        fi
        sleep 0.5
    done
fi

failed=()
for script in scripts/images/*.sh; do
    if ! "$script"; then
        failed+=("$script")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "docker-setup: image build failed: ${failed[*]}" >&2
    exit 1
fi
