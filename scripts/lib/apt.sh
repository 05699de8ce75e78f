# Sourced by the set-up scripts: apt-get that waits for the package manager instead of failing
# while another apt or dpkg holds its locks (common right after a fresh VM boots, when its
# own updates run). Waits up to APT_LOCK_WAIT seconds (default 600) in all.

apt_lock_wait=${APT_LOCK_WAIT:-600}

# apt_get ARGS...: `apt-get ARGS...`, non-interactive, retried while the locks are held.
apt_get() {
    local deadline=$((SECONDS + apt_lock_wait)) output status said=""
    while true; do
        # DPkg::Lock::Timeout makes apt itself wait for the dpkg lock; the lists lock taken by
        # `apt-get update` is not covered by it, hence the loop.
        set +e
        output=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=10 "$@" 2>&1)
        status=$?
        set -e
        if [ "$status" = 0 ]; then
            [ -n "$output" ] && printf '%s\n' "$output"
            return 0
        fi
        if ! grep -qE 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock' \
            <<<"$output"; then
            printf '%s\n' "$output" >&2
            return "$status"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            printf '%s\n' "$output" >&2
            echo "apt: another package manager still holds its lock after ${apt_lock_wait}s" >&2
            return "$status"
        fi
        if [ -z "$said" ]; then
            echo "apt: another package manager holds its lock; waiting (up to ${apt_lock_wait}s)" >&2
            said=yes
        fi
        sleep 3
    done
}
