# shellcheck shell=bash
# What the image scripts share, sourced by them: scripts/images/<name>.sh build an image
# each and scripts/docker-setup.sh runs every scripts/images/*.sh, so this library lives one
# directory down, out of that glob.
#
# An image here is a root filesystem assembled from this machine's files and imported with
# `docker import`: no registry, no base image, no Dockerfile. It carries the label
# pytest-chaos.inputs, a hash of its inputs, and is rebuilt only when they change.

inputs_label=pytest-chaos.inputs

# linked_libraries FILE...: the loader and every library ldd lists for the files, one path a
# line, as the loader looks them up.
linked_libraries() {
    ldd "$@" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u
}

# inputs_hash < LISTING: the hash of the calling script, of this library and of LISTING (the
# name, size and time of every file that goes into the image).
inputs_hash() {
    cat "$0" "${BASH_SOURCE[0]}" - | sha256sum | cut -c1-16
}

# image_is_current IMAGE INPUTS: whether IMAGE exists and was built from INPUTS.
image_is_current() {
    local built
    built=$(docker image inspect --format "{{ index .Config.Labels \"$inputs_label\" }}" \
        "$1" 2>/dev/null || true)
    [ "$built" = "$2" ]
}

# make_root NAME: a new empty directory for the root filesystem, in $root, removed on exit.
make_root() {
    root=$(mktemp -d "/tmp/pytest-chaos-image-$1.XXXXXX")
    trap 'rm -rf "$root"' EXIT
}

# copy_into_root FILE...: copy each file to the same path under $root, links followed.
copy_into_root() {
    local file
    for file in "$@"; do
        mkdir -p "$root$(dirname "$file")"
        cp -L "$file" "$root$file"
    done
}

# add_accounts USER GECOS HOME SHELL: /etc/passwd and /etc/group with root and USER (uid and
# gid 999), which the image runs as.
add_accounts() {
    mkdir -p "$root/etc"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' "$1:x:999:999:$2:$3:$4" >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' "$1:x:999:" >"$root/etc/group"
}

# import_root IMAGE INPUTS MESSAGE [docker import option]...: import $root as IMAGE labelled
# with INPUTS, then remove the image it replaces (kept while a container uses it).
import_root() {
    local image=$1 inputs=$2 message=$3 old new
    shift 3
    old=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    new=$(tar -C "$root" --owner=0 --group=0 --numeric-owner -c . | docker import "$@" \
        --change "LABEL $inputs_label=$inputs" --message "$message" - "$image")
    if [ -n "$old" ] && [ "$old" != "$new" ]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
}
