#!/usr/bin/env bash
# Build pytest-chaos/postgres:local from this machine's PostgreSQL: the server, initdb, psql
# and pg_isready, the share and lib directories (without JIT), every library they link, time
# zones, locale(1) for initdb, and /bin/sh (dash) for the entry point. No registry, no base
# image.
#
# It stands in for the official `postgres` image run with POSTGRES_HOST_AUTH_METHOD=trust:
# port 5432 on every interface, user and database `postgres` (POSTGRES_USER and POSTGRES_DB
# are honoured), trust authentication, runs as user postgres, and makes its cluster with
# initdb on the first start into /var/lib/postgresql/data (kept by docker stop/start), with
# fsync and full-page writes off. Stop it with SIGINT (fast shutdown; docker import cannot set
# STOPSIGNAL, so pass --stop-signal SIGINT or ContainerSpec(stop_signal=SIGINT)).
#
# A no-op when the image exists with the same inputs (label pytest-chaos.inputs: a hash of
# this script, of lib/common.sh and of the name, size and time of every file that goes in).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

image=${POSTGRES_IMAGE:-pytest-chaos/postgres:local}
bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null \
    | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "images/postgres: PostgreSQL is not installed (apt-get install postgresql)" >&2
    exit 1
fi
version=$(basename "$(dirname "$bin")")
lib=/usr/lib/postgresql/$version/lib
share=/usr/share/postgresql/$version

# initdb runs `locale -a` to fill pg_collation, through /bin/sh.
programs=("$bin/postgres" "$bin/initdb" "$bin/psql" "$bin/pg_isready" /usr/bin/locale)
modules=()
while IFS= read -r -d '' module; do
    modules+=("$module")
done < <(find "$lib" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' -print0)
libraries=()
while read -r library; do
    libraries+=("$library")
done < <(linked_libraries "${programs[@]}" "${modules[@]}" /usr/bin/dash)

# The C.UTF-8 locale when the machine has it (glibc's built-in one is not listed by locale -a).
locales=()
if [ -d /usr/lib/locale/C.utf8 ]; then
    locales=(/usr/lib/locale/C.utf8)
fi

inputs=$({
    stat -L -c '%n %s %Y' "${programs[@]}" "${libraries[@]}" /usr/bin/dash
    find "$lib" "$share" /usr/share/zoneinfo "${locales[@]}" -printf '%p %s %T@\n' | sort
} | inputs_hash)
if image_is_current "$image" "$inputs"; then
    exit 0
fi

make_root postgres
copy_into_root "${programs[@]}" "${libraries[@]}"
mkdir -p "$root$lib" "$root$share" "$root/usr/share/zoneinfo" "$root/bin"
# The modules (plpgsql, snowball, contrib...) without JIT: llvmjit links all of LLVM.
(cd "$lib" && tar -c --exclude='llvmjit*' --exclude=bitcode --exclude=pgxs .) \
    | tar -C "$root$lib" -x
(cd "$share" && tar -c --exclude=man .) | tar -C "$root$share" -x
(cd /usr/share/zoneinfo && tar -c --exclude=right .) | tar -C "$root/usr/share/zoneinfo" -x
cp -L /usr/bin/dash "$root/bin/sh"
for locale in "${locales[@]}"; do
    mkdir -p "$root$(dirname "$locale")"
    cp -a "$locale" "$root$locale"
done

mkdir -p "$root/tmp" "$root/usr/local/bin" "$root/var/lib/postgresql" "$root/var/run/postgresql"
# The data directory is made by initdb, running as postgres, in a directory anyone may write
# to (sticky, like /tmp): the image is built without root's chown.
chmod 1777 "$root/tmp" "$root/var/lib/postgresql" "$root/var/run/postgresql"
add_accounts postgres 'PostgreSQL administrator' /var/lib/postgresql /bin/sh

cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'SCRIPT'
#!/bin/sh
# The official image's entry point, reduced to what tests need: make the cluster on the first
# start (trust authentication from anywhere, no fsync), then run the command. Shell builtins
# only: the image has no coreutils.
set -e
if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user=${POSTGRES_USER:-postgres}
    database=${POSTGRES_DB:-$user}
    initdb --pgdata="$PGDATA" --username="$user" --auth=trust --encoding=UTF8 --locale=C \
        --no-sync --no-instructions
    printf '%s\n' "listen_addresses = '*'" "fsync = off" "full_page_writes = off" "jit = off" \
        "unix_socket_directories = '/var/run/postgresql'" >>"$PGDATA/postgresql.conf"
    printf 'host all all all trust\n' >>"$PGDATA/pg_hba.conf"
    if [ "$database" != postgres ]; then
        echo "CREATE DATABASE \"$database\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
SCRIPT
chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"

import_root "$image" "$inputs" "PostgreSQL $version from this machine" \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    --change "ENV PATH=$bin:/usr/local/bin:/usr/bin:/bin" \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'ENV TZ=Etc/UTC' \
    --change 'EXPOSE 5432' \
    --change 'USER postgres' \
    --change 'WORKDIR /var/lib/postgresql'
echo "images/postgres: built $image"
