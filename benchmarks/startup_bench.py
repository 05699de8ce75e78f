#!/usr/bin/env python3
"""What it costs to start a service: "session start to first query" for Redis and PostgreSQL,
run by the plugin from a local binary or as a Docker container.

Run from the project root with the project's virtualenv:

    .venv/bin/python benchmarks/startup_bench.py [--runs N] [--quick] [--json PATH]

1. Whole pytest session: `python -m pytest -q -p no:cacheprovider` in a fresh subprocess, on a
   generated project (conftest.py declaring the service with `service_fixture`, pytest.ini
   choosing the provider, one test that runs one real query through the service's proxied
   url: redis-py PING + GET, psycopg SELECT 1). Wall time from spawning pytest to its exit,
   against a baseline from the same run: the same session with the service external
   (`CHAOS_EXTERNAL_<NAME>` = the machine's own server, so nothing is started, but the engine,
   the proxy, the client and the query are all there). The generated conftest also stamps
   the session start, the fixture set-ups and the first query, which separates pytest's own
   start-up from the service's.
2. In-process: `open_service(definition, providers=..., images=...)` + `start()` until ready,
   the first query, `restart()`, `kill()` + `start()` (what a process fault costs a test) and
   `close()`, in a helper interpreter (this script with `_inprocess`).

Runs are interleaved (every variant once per round) so that drift on the machine hits all of
them alike. A provider whose prerequisite is missing (client library, binary, Docker, image)
is skipped with the reason. Only 127.0.0.1 is contacted; the machine's Redis and PostgreSQL
are only queried (PING, GET of an absent key, SELECT 1). Everything started is found again
at the end and must be gone: processes (by an environment token), containers (by the
session labels of the runs), temporary directories (children get their own TMPDIR).
Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness.py, also under `python -m`
import harness
from harness import BenchError, log, median

HOST = "127.0.0.1"
SERVICES = ("redis", "postgres")
PROVIDERS = ("local", "container")
TITLES = {"redis": "Redis", "postgres": "PostgreSQL"}
PROVIDER_TITLES = {"local": "local binary", "container": "container", "external": "external"}
CLIENTS = {"redis": "redis", "postgres": "psycopg"}
DEFAULT_IMAGES = {"redis": "pytest-chaos/redis:local", "postgres": "pytest-chaos/postgres:local"}
MACHINE_PORTS = {"redis": 6379, "postgres": 5432}
FULL_RUNS = 7
QUICK_RUNS = 2
PYTEST_TIMEOUT = 120.0
INPROCESS_TIMEOUT = 300.0
REAPER_GRACE = 10.0  # a container watchdog sweeps 2 s after its pytest exits, then exits
SESSION_LABEL = "pytest-chaos.session"


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """`median (min-max)`, scaled (1000 for ms)."""
    if not values:
        return "-"
    lo, mid, hi = min(values) * scale, median(values) * scale, max(values) * scale
    return f"{mid:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


# ------------------------------------------------------------------------------- queries
def first_query(service: str, url: str) -> None:
    """One real query with a fresh connection: what a test does first."""
    if service == "redis":
        import redis

        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
        try:
            if not client.ping():
                raise BenchError(f"Redis at {url} did not answer PING")
            client.get("pytest-chaos-startup-bench")
        finally:
            client.close()
    else:
        import psycopg

        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            row = conn.execute("SELECT 1").fetchone()
        if row != (1,):
            raise BenchError(f"PostgreSQL at {url} answered SELECT 1 with {row!r}")


# ------------------------------------------------------------------------- prerequisites
def client_missing(service: str) -> str | None:
    module = CLIENTS[service]
    try:
        __import__(module)
    except ImportError:
        return f"the {module} client is not installed (pip install -e '.[dev]')"
    return None


def local_missing(service: str) -> str | None:
    """Why the built-in recipe cannot run here (its binaries are looked up as LocalProcess
    does: PATH, then the recipe's search path)."""
    from pytest_chaos.services import postgres_recipe, redis_recipe

    recipe = redis_recipe() if service == "redis" else postgres_recipe()
    for binary in [recipe.command[0], *(step[0] for step in recipe.init)]:
        found = shutil.which(binary) or any(
            shutil.which(binary, path=directory)
            for pattern in recipe.search_path
            for directory in glob.glob(pattern)
        )
        if not found:
            where = f" or in {', '.join(recipe.search_path)}" if recipe.search_path else ""
            return f"no {binary} binary on PATH{where}"
    return None


def container_missing(image: str) -> str | None:
    from pytest_chaos._docker import docker_unavailable_reason, image_present

    reason = docker_unavailable_reason()
    if reason is not None:
        return reason
    if not image_present(image):
        return f"image {image} is not present locally (scripts/docker-setup.sh builds it)"
    return None


def machine_service_missing(service: str) -> str | None:
    """Why the machine's own server cannot serve as the external baseline."""
    address = f"{HOST}:{MACHINE_PORTS[service]}"
    url = (
        f"redis://{address}/0"
        if service == "redis"
        else f"postgresql://postgres@{address}/postgres"
    )
    try:
        first_query(service, url)
    except Exception as error:
        return f"{url} does not answer the query ({' '.join(str(error).split())[:120]})"
    return None


# ------------------------------------------------------------------- process supervision
class ServiceSupervisor(harness.TokenSupervisor):
    """Also remembers the container sessions of our runs (a container watchdog carries the
    token and names its session in its arguments) and removes their containers at the end."""

    end_grace = 10.0  # pytest stops its services on SIGTERM
    patience = REAPER_GRACE  # container watchdogs finish their sweep

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.session_ids: set[str] = set()  # container session labels of our runs

    def token_processes(self) -> dict[int, list[bytes]]:
        found = super().token_processes()
        prefix = f"{SESSION_LABEL}=".encode()
        for cmdline in found.values():
            for arg in cmdline:
                if arg.startswith(prefix):
                    self.session_ids.add(arg.decode().split("=", 1)[1])
        return found

    def stop_all(self) -> list[str]:
        forced = super().stop_all()
        removed = remove_containers(self.session_ids)
        if removed:
            forced.append(f"{removed} container(s) labelled {SESSION_LABEL}=<one of our runs>")
        return forced


def remove_containers(session_ids: set[str]) -> int:
    """Remove the containers of our own runs (by their session label); how many there were."""
    from pytest_chaos._docker import remove_containers as remove_labelled

    removed = 0
    for session_id in session_ids:
        with contextlib.suppress(Exception):  # no Docker: no containers of ours either
            removed += remove_labelled(f"{SESSION_LABEL}={session_id}")
    return removed


# ---------------------------------------------------------------- 1. whole pytest session
CONFTEST = '''\
"""Generated by benchmarks/startup_bench.py: stamps the session's milestones (time.time())."""

import json
import os
import sys
import time

import pytest

MARKS = {{}}
TIMED_FIXTURES = ("toxiproxy", {service!r})
{declaration}

def pytest_sessionstart(session):
    MARKS["session_start"] = time.time()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    name = fixturedef.argname
    if name not in TIMED_FIXTURES:
        return (yield)
    MARKS[name + "_setup_start"] = time.time()
    try:
        return (yield)
    finally:
        MARKS[name + "_setup_end"] = time.time()


@pytest.fixture
def bench_marks():
    return MARKS


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session):
    try:
        return (yield)
    finally:
        MARKS["session_finish"] = time.time()
        docker = sys.modules.get("pytest_chaos._docker")
        with open(os.environ["BENCH_OUT"], "w") as handle:
            session_id = getattr(docker, "SESSION_ID", None)
            json.dump({{"marks": MARKS, "session_id": session_id}}, handle)
'''

DECLARATION = """
from pytest_chaos.services import {service}_service, service_fixture

{service} = service_fixture({service}_service())
"""

TESTS = {
    "redis": """\
import time

import redis as redis_py


def test_first_query(redis, bench_marks):
    client = redis_py.Redis.from_url(redis.url, socket_timeout=10, socket_connect_timeout=10)
    try:
        assert client.ping()
        client.get("pytest-chaos-startup-bench")
    finally:
        client.close()
    bench_marks["query_done"] = time.time()
    bench_marks["provider"] = redis.provider
""",
    "postgres": """\
import time

import psycopg


def test_first_query(postgres, bench_marks):
    with psycopg.connect(postgres.url, connect_timeout=10, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    bench_marks["query_done"] = time.time()
    bench_marks["provider"] = postgres.provider
""",
    "none": """\
import time


def test_first_query(bench_marks):
    bench_marks["query_done"] = time.time()
    bench_marks["provider"] = "none"
""",
}


@dataclass
class Variant:
    """One kind of pytest session: a service (or none) and who runs it."""

    key: str
    label: str
    service: str  # "redis", "postgres" or "none"
    provider: str  # "local", "container", "external" or "none"
    baseline: str | None = None  # key of the variant it is compared with
    runs: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None


def write_project(directory: Path, variant: Variant, images: dict[str, str]) -> None:
    directory.mkdir(parents=True)
    declaration = DECLARATION.format(service=variant.service) if variant.service in SERVICES else ""
    (directory / "conftest.py").write_text(
        CONFTEST.format(service=variant.service, declaration=declaration), encoding="utf-8"
    )
    ini = ["[pytest]"]
    if variant.provider in PROVIDERS:
        ini.append(f"chaos_services = {variant.provider}")
    if variant.provider == "container":
        ini += ["chaos_images ="] + [f"    {name} = {image}" for name, image in images.items()]
    (directory / "pytest.ini").write_text("\n".join(ini) + "\n", encoding="utf-8")
    (directory / "test_startup.py").write_text(TESTS[variant.service], encoding="utf-8")


def run_session(
    supervisor: ServiceSupervisor, directory: Path, variant: Variant, child_tmp: Path
) -> dict[str, float]:
    """One pytest session; wall time and the conftest's milestones, relative to the spawn."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_EXTERNAL_")}
    env["TMPDIR"] = str(child_tmp)
    if variant.provider == "external":
        name = variant.service
        env[f"CHAOS_EXTERNAL_{name.upper()}"] = f"{HOST}:{MACHINE_PORTS[name]}"
    done = harness.run_pytest(
        supervisor, directory, ["test_startup.py"], env, PYTEST_TIMEOUT, f"{variant.label}: pytest"
    )
    wall, spawned, data = done.wall, done.spawned, done.data
    if data.get("session_id"):
        supervisor.session_ids.add(data["session_id"])
    marks = data["marks"]
    expected = variant.provider if variant.service in SERVICES else "none"
    if marks.get("provider") != expected:
        raise BenchError(f"{variant.label}: the service ran as {marks.get('provider')!r}")
    run = {
        "wall": wall,
        "pytest_start": marks["session_start"] - spawned,
        "to_first_query": marks["query_done"] - marks["session_start"],
        "teardown": marks["session_finish"] - marks["query_done"],
        "exit": wall - (marks["session_finish"] - spawned),
    }
    if "toxiproxy_setup_end" in marks:
        run["engine_fixture"] = marks["toxiproxy_setup_end"] - marks["toxiproxy_setup_start"]
    service_start = f"{variant.service}_setup_start"
    if service_start in marks:
        # The engine is a dependency of the service fixture: leave its set-up out if nested.
        began = max(marks[service_start], marks.get("toxiproxy_setup_end", 0.0))
        run["service_fixture"] = marks[f"{variant.service}_setup_end"] - began
    return run


def session_variants(
    available: dict[tuple[str, str], str | None],
    baselines: dict[str, str | None],
) -> list[Variant]:
    variants = [Variant("none", "pytest, plain test (no service)", "none", "none")]
    for service in SERVICES:
        title = TITLES[service]
        wanted = [p for p in PROVIDERS if available.get((service, p)) is None]
        if not wanted:
            continue
        baseline = "none"
        if baselines[service] is None:
            baseline = f"{service}/external"
            variants.append(Variant(baseline, f"{title}, external (baseline)", service, "external"))
        for provider in wanted:
            label = f"{title}, {PROVIDER_TITLES[provider]}"
            if baseline == "none":
                label += " (vs plain)"
            variants.append(Variant(f"{service}/{provider}", label, service, provider, baseline))
    return variants


def bench_sessions(
    supervisor: ServiceSupervisor,
    workdir: Path,
    child_tmp: Path,
    variants: list[Variant],
    images: dict[str, str],
    runs: int,
    warmup: bool,
) -> None:
    for variant in variants:
        write_project(workdir / variant.key.replace("/", "-"), variant, images)

    def once(variant: Variant) -> dict[str, float] | None:
        if variant.error is not None:
            return None
        try:
            return run_session(
                supervisor, workdir / variant.key.replace("/", "-"), variant, child_tmp
            )
        except BenchError as error:
            variant.error = str(error)
            log(f"  error: {error}")
            return None

    if warmup:
        # pytest's and the plugin's bytecode, and the page cache.
        log("  warm-up: one plain session")
        once(variants[0])
    for round_ in range(runs):
        # Rotate the order, so that no variant always follows the same one.
        shift = round_ % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            run = once(variant)
            if run is not None:
                variant.runs.append(run)
        log(
            f"  round {round_ + 1}/{runs}: "
            + ", ".join(f"{v.key} {v.runs[-1]['wall']:.2f}s" for v in variants if v.runs)
        )


# ------------------------------------------------------------------------ 2. in-process
INPROCESS_STEPS = ("start", "first_query", "restart", "kill", "start_after_kill", "close")


def timed(action: Callable[..., object], *args: Any) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def inprocess_child(argv: Sequence[str]) -> int:
    """`startup_bench.py _inprocess SERVICE PROVIDER IMAGE RUNS`: time the service's lifecycle
    RUNS + 1 times (the first is the cold one: imports, Docker probe, watchdog); print JSON."""
    service, provider, image, runs = argv[0], argv[1], argv[2], int(argv[3])
    from pytest_chaos.services import open_service, postgres_service, redis_service

    definition = redis_service() if service == "redis" else postgres_service()
    assert definition.url is not None
    __import__(CLIENTS[service])  # the client library is not what is measured
    samples: dict[str, list[float]] = {step: [] for step in INPROCESS_STEPS}
    session_id = None
    for _ in range(runs + 1):
        times: dict[str, float] = {}
        server = open_service(definition, providers=provider, images={service: image})
        try:
            times["start"] = timed(server.start)
            url = definition.url.format(host=server.host, port=server.port)
            times["first_query"] = timed(first_query, service, url)
            times["restart"] = timed(server.restart)
            first_query(service, url)  # it serves again (not timed)
            times["kill"] = timed(server.kill)
            times["start_after_kill"] = timed(server.start)
            first_query(service, url)
        finally:
            times["close"] = timed(server.close)
        docker = sys.modules.get("pytest_chaos._docker")
        session_id = getattr(docker, "SESSION_ID", None) if provider == "container" else None
        for step, value in times.items():
            samples[step].append(value)
    print(json.dumps({"samples": samples, "session_id": session_id}))
    return 0


def bench_inprocess(
    supervisor: ServiceSupervisor,
    child_tmp: Path,
    service: str,
    provider: str,
    image: str,
    runs: int,
) -> dict[str, Any]:
    env = dict(os.environ, TMPDIR=str(child_tmp))
    argv = [sys.executable, __file__, "_inprocess", service, provider, image, str(runs)]
    done = supervisor.run(argv, INPROCESS_TIMEOUT, env=env)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BenchError(
            f"in-process {service}/{provider} failed (exit {done.returncode}):\n{tail}"
        )
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if data.get("session_id"):
        supervisor.session_ids.add(data["session_id"])
    samples: dict[str, list[float]] = data["samples"]
    # The first cycle is the cold one; the rows use the others.
    return {
        "cold": {step: values[0] for step, values in samples.items()},
        "warm": {step: values[1:] for step, values in samples.items()},
    }


# ------------------------------------------------------------------------------- report
def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": harness.cpu_model() or platform.processor() or "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_1m": os.getloadavg()[0],
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        argv = ["redis-server", "--version"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        info["redis"] = " ".join(done.stdout.split()[:3])
    with contextlib.suppress(Exception):
        docker: Any = importlib.import_module("docker")  # no type information
        client = docker.from_env(timeout=5)
        try:
            info["docker"] = f"Docker engine {client.version()['Version']}"
        finally:
            client.close()
    return info


def render_sessions(variants: list[Variant], runs: int) -> list[str]:
    by_key = {v.key: v for v in variants}
    header = (
        f"{'variant':<34}{'wall, median (min-max)':>24}{'extra':>9}{'ratio':>7}"
        f"{'pytest up':>11}{'start->query':>14}{'service fix.':>14}{'engine fix.':>13}"
        f"{'teardown':>10}{'exit':>7}"
    )
    lines = [
        "",
        f"1. whole pytest session, seconds (median of {runs} runs; extra and ratio against the"
        " baseline of the same round)",
        header,
        "-" * len(header),
    ]
    for variant in variants:
        if variant.error is not None or not variant.runs:
            lines.append(f"{variant.label:<34}  FAILED: {(variant.error or '').splitlines()[0]}")
            continue
        walls = [r["wall"] for r in variant.runs]
        extra = ratio = ""
        base = by_key.get(variant.baseline or "")
        if base is not None and base.runs and base.error is None:
            pairs = list(zip(walls, (r["wall"] for r in base.runs), strict=False))
            extra = f"{median([a - b for a, b in pairs]):+.2f}"
            ratio = f"x{median(walls) / median([r['wall'] for r in base.runs]):.2f}"

        def col(name: str, runs_: list[dict[str, float]] = variant.runs) -> str:
            values = [r[name] for r in runs_ if name in r]
            return f"{median(values):.2f}" if values else "-"

        lines.append(
            f"{variant.label:<34}{spread(walls):>24}{extra:>9}{ratio:>7}{col('pytest_start'):>11}"
            f"{col('to_first_query'):>14}{col('service_fixture'):>14}"
            f"{col('engine_fixture'):>13}{col('teardown'):>10}{col('exit'):>7}"
        )
    lines += [
        "  extra: median over rounds of (variant - baseline); ratio: median wall / baseline's",
        "  pytest up: spawn -> pytest_sessionstart; start->query: pytest_sessionstart -> first",
        "  query done; service/engine fix.: set-up of the service fixture (engine excluded) and",
        "  of the toxiproxy fixture it requests (medians); teardown: first query done ->",
        "  pytest_sessionfinish (service closed, engine stopped); exit: the rest, to process exit",
    ]
    return lines


def render_inprocess(results: dict[str, dict[str, Any]], runs: int) -> list[str]:
    if not results:
        return []
    keys = list(results)
    width = 22
    header = f"{'ms, median (min-max)':<24}" + "".join(
        f"{TITLES[k.split('/')[0]] + ' ' + k.split('/')[1]:>{width}}" for k in keys
    )
    labels = {
        "start": "open + start (ready)",
        "first_query": "first query",
        "start_to_query": "= start to first query",
        "restart": "restart()",
        "kill": "kill()",
        "start_after_kill": "start() after kill",
        "kill_start": "= kill() + start()",
        "close": "close()",
    }
    lines = [
        "",
        f"2. in-process, ms (median (min-max) of {runs} cycles after a cold one; first query"
        " direct, fresh connection)",
        header,
        "-" * len(header),
    ]
    for step, label in labels.items():
        cells = []
        for key in keys:
            warm = results[key]["warm"]
            if step == "start_to_query":
                values = [a + b for a, b in zip(warm["start"], warm["first_query"], strict=True)]
            elif step == "kill_start":
                values = [
                    a + b for a, b in zip(warm["kill"], warm["start_after_kill"], strict=True)
                ]
            else:
                values = warm[step]
            digits = 1 if max(values) < 0.1 else 0
            cells.append(f"{spread(values, 1000, digits):>{width}}")
        lines.append(f"{label:<24}" + "".join(cells))
    lines.append(
        f"{'cold first start':<24}"
        + "".join(f"{results[k]['cold']['start'] * 1000:>{width}.0f}" for k in keys)
    )
    lines.append(
        "  cold first start: the first open + start in a fresh interpreter (imports testcontainers"
    )
    lines.append("  and docker, probes Docker, starts the watchdog); pytest always pays this one")
    return lines


@dataclass
class Report:
    """Everything a run found, for the text report and the JSON file."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    skipped: list[str]
    variants: list[Variant]
    inprocess: dict[str, dict[str, Any]]
    errors: list[str]
    cleanup: list[str]

    def render(self) -> str:
        machine, settings, cleanup = self.machine, self.settings, self.cleanup
        lines = [
            "pytest-chaos service start-up",
            f"{machine['date']}; nproc={machine['nproc']}, {machine['cpu_model']}, Python"
            f" {machine['python']}, {machine['platform']}",
            f"{machine.get('redis', 'redis-server ?')}; {machine.get('docker', 'docker ?')};"
            f" images {', '.join(settings['images'].values())}",
            f"load average (1 min) at start {machine['loadavg_1m']:.2f}"
            + harness.busy_warning(machine["loadavg_1m"], machine["nproc"]),
        ]
        lines += [f"skipped: {reason}" for reason in self.skipped]
        if self.variants:
            lines += render_sessions(self.variants, settings["runs"])
        lines += render_inprocess(self.inprocess, settings["runs"])
        lines += [""] + [f"ERROR (figures missing): {error}" for error in self.errors]
        lines.append(
            "left behind: nothing"
            if not cleanup
            else "left behind, removed by the clean-up: " + "; ".join(cleanup)
        )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "skipped": self.skipped,
            "sessions_s": {
                v.key: {"label": v.label, "baseline": v.baseline, "error": v.error, "runs": v.runs}
                for v in self.variants
            },
            "inprocess_s": self.inprocess,
            "errors": self.errors,
            "left_behind": self.cleanup,
        }


# --------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, help=f"repetitions per figure (default {FULL_RUNS})")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_RUNS} runs, no warm-up session (a smoke test)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all figures as JSON")
    parser.add_argument("--skip-session", action="store_true", help="leave out view 1 (pytest)")
    parser.add_argument("--skip-inprocess", action="store_true", help="leave out view 2")
    for service in SERVICES:
        parser.add_argument(
            f"--{service}-image",
            default=DEFAULT_IMAGES[service],
            help=f"{TITLES[service]} image (default {DEFAULT_IMAGES[service]}; never pulled)",
        )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def check_prerequisites(
    images: dict[str, str],
) -> tuple[dict[tuple[str, str], str | None], dict[str, str | None], list[str]]:
    """Which (service, provider) pairs can run, whether the machine's servers can be the
    baselines, and the skip notes to print."""
    available: dict[tuple[str, str], str | None] = {}
    baselines: dict[str, str | None] = {}
    skipped: list[str] = []
    for service in SERVICES:
        title = TITLES[service]
        client = client_missing(service)
        for provider in PROVIDERS:
            reason = client or (
                local_missing(service)
                if provider == "local"
                else container_missing(images[service])
            )
            available[(service, provider)] = reason
            if reason:
                skipped.append(f"{title}, {PROVIDER_TITLES[provider]}: {reason}")
        baselines[service] = client or machine_service_missing(service)
        if baselines[service] and not client:
            skipped.append(
                f"{title} external baseline: {baselines[service]}; its sessions are compared"
                " with the plain-test session instead (which also has no engine start)"
            )
    return available, baselines, skipped


def benchmark(args: argparse.Namespace, supervisor: ServiceSupervisor, workdir: Path) -> int:
    runs = args.runs or (QUICK_RUNS if args.quick else FULL_RUNS)
    images = {"redis": args.redis_image, "postgres": args.postgres_image}
    settings = {"runs": runs, "warmup": not args.quick, "images": images}
    machine = machine_info()
    log(f"machine: nproc={machine['nproc']}, {machine['cpu_model']}; load {machine['loadavg_1m']}")
    available, baselines, skipped = check_prerequisites(images)
    for note in skipped:
        log(f"skipped: {note}")
    # Children create their temporary directories in here (LocalProcess data directories);
    # readable by all: a local PostgreSQL runs as the postgres account when we are root.
    child_tmp = workdir / "tmp"
    child_tmp.mkdir()
    workdir.chmod(0o755)
    child_tmp.chmod(0o1777)
    errors: list[str] = []
    variants: list[Variant] = []
    inprocess: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    if not args.skip_session:
        variants = session_variants(available, baselines)
        log(f"1. whole pytest sessions: {len(variants)} variants x {runs} rounds")
        bench_sessions(
            supervisor, workdir / "sessions", child_tmp, variants, images, runs, not args.quick
        )
        errors += [v.error for v in variants if v.error]
    if not args.skip_inprocess:
        log(f"2. in-process: 1 cold + {runs} cycles per service and provider")
        for service in SERVICES:
            for provider in PROVIDERS:
                if available[(service, provider)] is not None:
                    continue
                key = f"{service}/{provider}"
                try:
                    inprocess[key] = bench_inprocess(
                        supervisor, child_tmp, service, provider, images[service], runs
                    )
                    warm = inprocess[key]["warm"]
                    log(f"  {key}: start {median(warm['start']) * 1000:.0f} ms")
                except BenchError as error:
                    log(f"  error: {error}")
                    errors.append(str(error))
    log(f"measured in {time.monotonic() - started:.0f}s; cleaning up")
    machine["loadavg_1m_end"] = os.getloadavg()[0]
    cleanup = supervisor.stop_all()
    leftover_dirs = sorted(p.name for p in child_tmp.iterdir())
    if leftover_dirs:
        cleanup.append(f"temporary directories {', '.join(leftover_dirs)}")
    report = Report(machine, settings, skipped, variants, inprocess, errors, cleanup)
    print(report.render())
    if args.json:
        harness.write_json(args.json, report.to_json())
        log(f"wrote {args.json}")
    return 2 if errors or cleanup else 0


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["_inprocess"]:
        return inprocess_child(argv[1:])
    args = parse_args(argv)
    return harness.run_supervised(
        ServiceSupervisor,
        lambda supervisor, workdir: benchmark(args, supervisor, workdir),
        needs="pytest_chaos.services",
        tmp_prefix="chaos-startup-",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
