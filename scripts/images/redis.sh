#!/usr/bin/env bash
# Build pytest-chaos/redis:local from this machine's redis-server and the libraries it links,
# imported as a root filesystem: no registry, no base image. It stands in for the official
# `redis` image: port 6379 on every interface, protected mode off, no persistence.
# A no-op when the image exists with the same inputs (label pytest-chaos.inputs: a hash of
# this script, of lib/common.sh and of the name, size and time of every file that goes in).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

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
done < <(linked_libraries "$server")

inputs=$(stat -L -c '%n %s %Y' "${files[@]}" | inputs_hash)
if image_is_current "$image" "$inputs"; then
    exit 0
fi

make_root redis
copy_into_root "${files[@]}"
mkdir -p "$root/usr/local/bin" "$root/data" "$root/tmp"
ln -s "$server" "$root/usr/local/bin/redis-server"
chmod 1777 "$root/data" "$root/tmp"
add_accounts redis redis /data /sbin/nologin

command='["--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", "--save", "",'
command+=' "--appendonly", "no"]'
version=$(dpkg-query -W -f '${Version}' redis-server 2>/dev/null || echo "of this machine")
import_root "$image" "$inputs" "redis-server $version" \
    --change 'ENTRYPOINT ["/usr/local/bin/redis-server"]' \
    --change "CMD $command" \
    --change 'EXPOSE 6379' \
    --change 'WORKDIR /data' \
    --change 'USER redis'
echo "images/redis: built $image"
