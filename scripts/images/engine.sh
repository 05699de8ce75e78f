#!/usr/bin/env bash
# Build pytest-chaos/engine:local, a stand-in for the upstream Toxiproxy image that runs OUR
# engine (`python -m pytest_chaos serve`), for the container backend's tests where no registry
# is reachable. Same interface as ghcr.io/shopify/toxiproxy: the entrypoint takes
# `-host=... -port=...` (default `-host=0.0.0.0 -port=8474`) and port 8474 is exposed.
#
# No registry, no Dockerfile: the root filesystem is assembled from this machine (the real
# Python installation behind .venv, only the stdlib parts a server needs; the shared libraries
# ldd lists; the site-packages the engine imports; pytest_chaos copied as files) and streamed
# into `docker import`. The image carries a hash of its inputs in a label, so running this
# again is a no-op until one of them changes.
#
# Usage: scripts/images/engine.sh            (after scripts/setup.sh made .venv)
# Environment: ENGINE_IMAGE (default pytest-chaos/engine:local), PYTHON (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${ENGINE_IMAGE:-pytest-chaos/engine:local}
python=${PYTHON:-.venv/bin/python}
if [ ! -x "$python" ]; then
    echo "engine.sh: $python not found; run scripts/setup.sh first" >&2
    exit 1
fi
command -v docker >/dev/null 2>&1 || { echo "engine.sh: docker is not installed" >&2; exit 1; }
command -v ldd >/dev/null 2>&1 || { echo "engine.sh: ldd is not installed" >&2; exit 1; }

exec "$python" - "$image" "$0" <<'PY'
"""Assemble the root filesystem as a tar stream, and `docker import` it (see engine.sh)."""

import compileall
import hashlib
import importlib.metadata as metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

IMAGE, SCRIPT = sys.argv[1], Path(sys.argv[2])
LABEL = "pytest-chaos.inputs"
# What `python -m pytest_chaos serve` imports, with their own requirements found below.
ROOTS = ("aiohttp", "uvloop", "prometheus_client")
# Stdlib directories a server never imports (tests, GUIs, installers, the static libpython).
SKIP_DIRS = {
    "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
    "site-packages", "pydoc_data", "distutils", "venv", "sqlite3", "curses", "dbm", "msilib",
    "__phello__",
}
SKIP_DYNLOAD = re.compile(
    r"^(_test|_xx|xx|_ctypes_test|_tkinter|_curses|readline|_sqlite3|nis|spwd|ossaudiodev"
    r"|_dbm|_gdbm|audioop)"
)
ENTRY_ENV = {
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    # The engine speaks plain HTTP and TCP: no CA store to load (there is none in the image).
    "SSL_CERT_FILE": "/dev/null",
}

started = time.monotonic()
repo = Path.cwd()
prefix = Path(sys.base_prefix).resolve()
executable = Path(sys._base_executable).resolve()
stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(prefix), "base": str(prefix)})["stdlib"])
# The engine's packages go in a directory of their own on PYTHONPATH: the interpreter's own
# site directory differs between builds (Debian's python has none under its stdlib).
site_packages = Path("/opt/pytest-chaos/lib")


def requirement_names(name):
    """`name` and what it requires (markers evaluated, extras ignored), recursively."""
    from packaging.requirements import Requirement  # pytest requires packaging

    seen, todo = {}, [name]
    while todo:
        dist = metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("-", "_")
        if key in seen:
            continue
        seen[key] = dist
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


distributions = {}
for root in ROOTS:
    distributions.update(requirement_names(root))


def stdlib_files():
    for directory, dirs, files in os.walk(stdlib):
        here = Path(directory)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith("config-")]
        for file in files:
            if here.name == "lib-dynload" and SKIP_DYNLOAD.match(file):
                continue
            if ".opt-" in file or file.endswith((".exe", ".a")):
                continue
            yield here / file


def distribution_files():
    for dist in distributions.values():
        for file in dist.files or ():
            path = Path(dist.locate_file(file)).resolve()
            if path.is_file() and ".." not in file.parts and not file.parts[0].endswith(".data"):
                yield path, site_packages / file


def write_root(tar, entries, etc):
    """Every file at its target path, parents first; returns the bytes written."""
    made = set()

    def directory(path):
        for parent in reversed([path, *path.parents]):
            name = str(parent).lstrip("/")
            if name and name not in made:
                made.add(name)
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
                tar.addfile(info)

    directory(Path("/tmp"))
    for name, text in etc.items():
        directory(Path("/" + name).parent)
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    size = 0
    for source, target in entries:
        directory(target.parent)
        info = tar.gettarinfo(str(source.resolve()), arcname=str(target).lstrip("/"))
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        size += info.size
        with open(source, "rb") as handle:
            tar.addfile(info, handle)
    return size


package_files = sorted(
    p for p in (repo / "pytest_chaos").rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed")
)
stdlib_list = sorted(stdlib_files())
dist_list = sorted(distribution_files())
shared = [executable]
shared += [p for p in stdlib_list if p.suffix == ".so"] + [p for p, _ in dist_list if p.suffix == ".so"]
ldd = subprocess.run(["ldd", *map(str, shared)], capture_output=True, text=True, check=False)
libraries = sorted({Path(m) for m in re.findall(r"(?:=> |^\s+)(/\S+) \(0x", ldd.stdout, re.M)})

# The inputs' fingerprint: this script, the interpreter, every distribution's version, the
# engine's sources and the libraries (path and size). A change in any rebuilds the image.
digest = hashlib.sha256(SCRIPT.read_bytes())
digest.update(f"{executable} {sys.version} {sorted((k, d.version) for k, d in distributions.items())}".encode())
for path in package_files:
    digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
for path in libraries:
    digest.update(f"{path} {path.stat().st_size}".encode())
fingerprint = digest.hexdigest()[:32]

inspect = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
found = json.loads(inspect.stdout or b"[]") if inspect.returncode == 0 else []
previous = found[0]["Id"] if found else ""
built = ((found[0].get("Config") or {}).get("Labels") or {}).get(LABEL) if found else None
if built == fingerprint:
    print(f"engine.sh: {IMAGE} is up to date ({LABEL}={fingerprint})")
    sys.exit(0)

# pytest_chaos as plain files (not the editable install's link), compiled once here so that
# the server does not compile it at every container start.
staging = Path(tempfile.mkdtemp(prefix="engine-image-"))
try:
    package_copy = staging / "pytest_chaos"
    for path in package_files:
        target = package_copy / path.relative_to(repo / "pytest_chaos")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    compileall.compile_dir(package_copy, quiet=1, workers=0)
    package_entries = [
        (p, site_packages / p.relative_to(staging)) for p in sorted(package_copy.rglob("*")) if p.is_file()
    ]

    # Libraries and the interpreter keep their paths: the binary's RPATH and the loader's
    # default directories then find everything without an ld.so.cache.
    unique = dict.fromkeys([(p, p) for p in (executable, *stdlib_list, *libraries)])
    entries = list(unique) + dist_list + package_entries
    etc = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        "etc/group": "root:x:0:\nnogroup:x:65534:\n",
        # Without it glibc asks DNS before /etc/hosts, where Docker writes host.docker.internal.
        "etc/nsswitch.conf": "hosts: files dns\n",
    }

    command = [
        "docker", "import",
        "--change", f'ENTRYPOINT ["{executable}", "-m", "pytest_chaos", "serve"]',
        "--change", 'CMD ["-host=0.0.0.0", "-port=8474"]',
        "--change", "EXPOSE 8474",
        "--change", f"ENV PATH={executable.parent}:/usr/bin:/bin",
        "--change", f"ENV PYTHONPATH={site_packages}",
        "--change", f"LABEL {LABEL}={fingerprint}",
        "--change", 'LABEL org.opencontainers.image.description="pytest-chaos engine, a stand-in'
        ' for the upstream Toxiproxy image"',
    ]
    for key, value in ENTRY_ENV.items():
        command += ["--change", f"ENV {key}={value}"]
    importer = subprocess.Popen([*command, "-", IMAGE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert importer.stdin is not None and importer.stdout is not None
    try:
        with tarfile.open(fileobj=importer.stdin, mode="w|") as tar:
            size = write_root(tar, entries, etc)
        importer.stdin.close()
    except BrokenPipeError:
        size = 0  # docker import gave up; its own message is on stderr
    image_id = importer.stdout.read().decode().strip()
    if importer.wait() != 0:
        sys.exit(f"engine.sh: docker import failed for {IMAGE}")
    if previous and previous != image_id:
        # The image this one replaces, now untagged; kept if a container still uses it.
        subprocess.run(["docker", "image", "rm", previous], capture_output=True, check=False)
finally:
    shutil.rmtree(staging, ignore_errors=True)

print(
    f"engine.sh: built {IMAGE} ({size / 1e6:.0f} MB, {len(entries)} files) in"
    f" {time.monotonic() - started:.1f}s; {LABEL}={fingerprint} {image_id}"
)
PY
