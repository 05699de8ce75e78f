#!/usr/bin/env bash
# Build pytest-chaos/redis:local from this machine's redis-server and the libraries it links,
# imported as a root filesystem: no registry, no base image. It stands in for the official
# `redis` image: port 6379 on every interface, protected mode off, no persistence.
# A no-op when the image exists with the same inputs (label pytest-chaos.inputs: a hash of
# this script and of the name, size and time of every file that goes in).
set -euo pipefail

image=${REDIS_IMAGE:-pytest-chaos/redis:local}
server=$(command -v redis-server || true)
if [ -z "$server" ]; then
    echo "images/redis: redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
fi
server=$(readlink -f "$server")

# The binary, its loader and every library ldd lists (paths as the loader looks them up).
files=("$server")
while read -r library; do
    files+=("$library")
done < <(ldd "$server" | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u)

inputs=$({ cat "$0"; stat -L -c '%n %s %Y' "${files[@]}"; } | sha256sum | cut -c1-16)
built=$(docker image inspect --format '{{ index .Config.Labels "pytest-chaos.inputs" }}' \
    "$image" 2>/dev/null || true)
if [ "$built" = "$inputs" ]; then
    exit 0
fi

old=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
root=$(mktemp -d /tmp/pytest-chaos-image-redis.XXXXXX)
trap 'rm -rf "$root"' EXIT
for file in "${files[@]}"; do
    mkdir -p "$root$(dirname "$file")"
    cp -L "$file" "$root$file"
done
mkdir -p "$root/usr/local/bin" "$root/data" "$root/tmp" "$root/etc"
ln -s "$server" "$root/usr/local/bin/redis-server"
chmod 1777 "$root/data" "$root/tmp"
echo 'root:x:0:0:root:/root:/sbin/nologin' >"$root/etc/passwd"
echo 'redis:x:999:999:redis:/data:/sbin/nologin' >>"$root/etc/passwd"
printf 'root:x:0:\nredis:x:999:\n' >"$root/etc/group"

command='["--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", "--save", "",'
command+=' "--appendonly", "no"]'
version=$(dpkg-query -W -f '${Version}' redis-server 2>/dev/null || echo "of this machine")
tar -C "$root" --owner=0 --group=0 --numeric-owner -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/redis-server"]' \
    --change "CMD $command" \
    --change 'EXPOSE 6379' \
    --change 'WORKDIR /data' \
    --change 'USER redis' \
    --change "LABEL pytest-chaos.inputs=$inputs" \
    --message "redis-server $version" \
    - "$image" >/dev/null
if [ -n "$old" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true # the previous build, unless a container uses it
fi
echo "images/redis: built $image"
