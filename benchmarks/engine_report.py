"""The report of engine_bench.py: each section is built once as a table (headers and rows of
cells) and printed either as aligned text or as the markdown of the README's Performance
section, so that the README can be regenerated from one run."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine_results import (
    CONN_CLIENTS,
    GOALS,
    LATENCY_MS,
    LOAD_CLIENTS,
    METRICS,
    NOISY_SPREAD,
    TOXIC_SUFFIX,
    Goal,
    LatencyResult,
    Metric,
    Results,
)
from engine_workloads import BANDWIDTH_RATES, BURST_CONNECTS, Extras
from harness import log_tail

if TYPE_CHECKING:
    from engine_bench import Target

ENGINE, UPSTREAM = "engine", "toxiproxy"
IN_PROCESS = "engine (in-process)"
# The issue-15 goals: the engine against upstream Toxiproxy in the same run.
PASSTHROUGH_GOAL = 0.67  # plain throughput, x direct
TOXIC_PATH_GOAL = 0.95  # with the do-nothing toxics, x the plain path ("within a few percent")
BANDWIDTH_TOLERANCE = 0.03  # delivered rate within 3% of the configured one


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            first = f"{cells[0]:<{widths[0]}}"
            rest = (f"{cell:>{width}}" for cell, width in zip(cells[1:], widths[1:], strict=True))
            return "  ".join([first, *rest]).rstrip()

        body = [line(self.headers), "-" * len(line(self.headers))]
        body += [line(row) for row in self.rows]
        return "\n".join([self.title, *body, *self.notes]) + "\n"

    def markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            # A "|" inside a cell (as in "|e| <= 1 ms") would end it.
            return "| " + " | ".join(cell.replace("|", "\\|") or " " for cell in cells) + " |"

        body = [line(self.headers), "|" + " --- |" * len(self.headers)]
        body += [line(row) for row in self.rows]
        return "\n".join([self.title, "", *body, "", *self.notes]).rstrip() + "\n"


# ------------------------------------------------------------------------------ cells
def fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def fmt_rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if unit == "Gbit/s" else f"{value:,.0f}"


def rate_cell(results: Results, name: str, metric: Metric, spread: bool) -> str:
    value = results.median(name, metric.key)
    if value is None:
        return "FAILED" if results.failures(name, metric.key) else "-"
    cell = fmt_rate(value, metric.unit)
    half_range = results.spread(name, metric.key)
    if spread and half_range is not None:
        cell += f" +/-{half_range * 50:.0f}%"
    return cell + ("*" if results.failures(name, metric.key) else "")


def ratio_cell(value: float | None) -> str:
    return fmt(value, ".2f")


def is_noisy(results: Results, target: str, metric: str, base: str = "direct") -> bool:
    spreads = (results.spread(target, metric), results.spread(base, metric))
    return any(spread is not None and spread > NOISY_SPREAD for spread in spreads)


# ----------------------------------------------------------------------------- sections
def rates_table(results: Results, reps: int, *, spread: bool) -> Table:
    table = Table(
        f"Rates: median of {reps} interleaved run{'s' if reps > 1 else ''}"
        + (" (+/- is half the min-max range)" if spread else ""),
        [
            "metric",
            "proxies",
            "direct",
            "engine",
            "upstream",
            "engine/direct",
            "engine/upstream",
            "upstream/direct",
            "toxic/plain engine",
            "toxic/plain upstream",
        ],
    )
    for metric in METRICS:
        for suffix in ("", TOXIC_SUFFIX):
            engine, upstream = ENGINE + suffix, UPSTREAM + suffix
            row = [
                f"{metric.label} ({metric.unit})" if not suffix else "",
                "with do-nothing toxics" if suffix else "plain",
                rate_cell(results, "direct", metric, spread) if not suffix else "",
                rate_cell(results, engine, metric, spread),
                rate_cell(results, upstream, metric, spread),
                ratio_cell(results.ratio(engine, metric.key)),
                ratio_cell(results.ratio(engine, metric.key, upstream)),
                ratio_cell(results.ratio(upstream, metric.key)),
                ratio_cell(results.ratio(engine, metric.key, ENGINE)) if suffix else "",
                ratio_cell(results.ratio(upstream, metric.key, UPSTREAM)) if suffix else "",
            ]
            table.rows.append(row)
    table.notes.append(
        "do-nothing toxics: latency 0 ms, jitter 0, on both streams, on proxies of their own; "
        "* = some runs failed"
    )
    return table


def cpu_table(results: Results) -> Table:
    table = Table(
        "Proxy CPU (user + system, the proxy process's own, median of the runs)",
        [
            "work",
            "unit",
            "engine",
            "upstream",
            "engine/upstream",
            "engine + toxics",
            "upstream + toxics",
            "engine/upstream + toxics",
        ],
    )
    for metric in METRICS:
        unit = "s per GB" if metric.unit == "Gbit/s" else "us per request"
        row = [metric.label, unit]
        for suffix in ("", TOXIC_SUFFIX):
            engine = results.cpu_median(ENGINE + suffix, metric.key)
            upstream = results.cpu_median(UPSTREAM + suffix, metric.key)
            spec = ".2f" if metric.unit == "Gbit/s" else ".1f"
            row += [fmt(engine, spec), fmt(upstream, spec)]
            row.append(fmt(None if engine is None or not upstream else engine / upstream, ".2f"))
        table.rows.append(row)
    return table


def burst_table(extras: Extras, names: Sequence[str], reps: int) -> Table:
    table = Table(
        f"Accept burst: {BURST_CONNECTS:,} connects at once, then a PING on each "
        f"(median of {reps}, seconds from the first connect)",
        ["target", "all connected", "all PINGs answered", "listen overflows", "no PONG"],
    )
    for name in names:
        runs = extras.burst.get(name)
        if not runs:
            if name in extras.burst_errors:
                table.rows.append([name, "FAILED", "", "", ""])
            continue
        table.rows.append(
            [
                name,
                fmt(extras.burst_median(name, "all_connected_s"), ".3f"),
                fmt(extras.burst_median(name, "all_answered_s"), ".3f"),
                "/".join(str(r.overflows) for r in runs),
                str(sum(r.failed for r in runs)),
            ]
        )
    table.notes.append(
        "listen overflows: the machine's TcpExt ListenOverflows during each burst (another "
        "process's listener would count too); a dropped SYN is retried after 1 s"
    )
    return table


def latency_rows(label: str, load: str, res: LatencyResult) -> list[str]:
    return [
        label,
        load,
        f"{res.base_p50:.3f}",
        fmt(res.toxic_p50, ".3f"),
        f"{res.err_p50:+.3f}",
        f"{res.err_p90:+.3f}",
        f"{res.err_p99:+.3f}",
        f"{res.err_max:+.3f}",
        fmt(res.proxy_cpu, ".0%"),
        str(res.samples),
    ]


def latency_table(results: Results) -> Table:
    table = Table(
        f"Latency toxic accuracy: {LATENCY_MS:.0f} ms downstream, jitter 0 (ms)",
        [
            "target",
            "load",
            "base p50",
            "toxic p50",
            "error p50",
            "p90",
            "p99",
            "max",
            "proxy CPU",
            "samples",
        ],
    )
    idle = "idle, busy thread"
    for label, res in results.latency.items():
        table.rows.append(latency_rows(label, idle, res))
    for label, reason in results.latency_skipped.items():
        table.rows.append([label, idle, f"skipped: {reason.splitlines()[0][:80]}"] + [""] * 7)
    loaded = f"{LOAD_CLIENTS} clients"
    for label, res in results.loaded.items():
        table.rows.append(latency_rows(label, loaded, res))
    for label, reason in results.loaded_skipped.items():
        table.rows.append([label, loaded, f"skipped: {reason.splitlines()[0][:80]}"] + [""] * 7)
    table.notes.append(
        f"error = RTT with the toxic - {LATENCY_MS:.0f} ms - median RTT through the same proxy "
        f"without it, measured idle; busy thread: a pure-Python loop in the benchmark process; "
        f"{LOAD_CLIENTS} clients: redis-benchmark PINGs through the same proxy and toxic"
    )
    return table


def bandwidth_table(extras: Extras, reps: int) -> Table:
    table = Table(
        f"Bandwidth toxic accuracy (downstream; median of {reps}): delivered rate / configured "
        "rate, and ms from the request to the first byte",
        [
            "rate (KB/s)",
            "engine delivered",
            "upstream delivered",
            "engine first byte",
            "upstream first byte",
        ],
    )
    for rate in BANDWIDTH_RATES:
        table.rows.append(
            [
                f"{rate:,}",
                fmt(extras.bandwidth_median(ENGINE, rate, "delivered"), ".4f"),
                fmt(extras.bandwidth_median(UPSTREAM, rate, "delivered"), ".4f"),
                fmt(extras.bandwidth_median(ENGINE, rate, "first_byte_ms"), ".1f"),
                fmt(extras.bandwidth_median(UPSTREAM, rate, "first_byte_ms"), ".1f"),
            ]
        )
    table.notes.append(
        "delivered = bytes / (last byte - request sent) / rate, 1 KB = 1000 bytes; "
        "a transfer is the rate's worth of the configured seconds"
    )
    return table


def memory_table(extras: Extras) -> Table:
    table = Table(
        "Memory: resident set of each proxy process (MB)",
        ["process", "at start", "before bandwidth", "at end", "peak"],
    )

    def mb(value: int | None) -> str:
        return fmt(None if value is None else value / 1024, ".1f")

    for name, samples in extras.memory.items():
        rss = [samples.get(when, {}).get("VmRSS") for when in ("start", "before bandwidth", "end")]
        table.rows.append([name, *map(mb, rss), mb(samples.get("end", {}).get("VmHWM"))])
    table.notes.append(
        "at start: its proxies created, before any traffic; before bandwidth: after the rates, "
        "bursts and latency; at end: after the bandwidth transfers too"
    )
    return table


# -------------------------------------------------------------------------------- goals
def goal_value(results: Results, target: str, goal: Goal) -> float | None:
    if goal.kind == "ratio":
        return results.ratio(target, goal.key)
    latency = results.latency.get(target)
    return None if latency is None else float(getattr(latency, goal.key))


def goal_status(goal: Goal, value: float | None) -> str:
    if value is None:
        return "n/a"
    if goal.kind == "ratio":
        return "PASS" if value >= goal.limit else "MISS"
    # Latency error counts in either direction: too early is as wrong as too late.
    return "PASS" if abs(value) <= goal.limit else "MISS"


def evaluate_goals(results: Results, rows: Sequence[str]) -> list[dict[str, Any]]:
    """The README's targets, against direct, for every proxy row."""
    verdicts = []
    for goal in GOALS:
        for row in rows:
            if goal.kind == "ratio" and row not in results.runs and row not in results.errors:
                continue  # the in-process row has only latency figures
            if goal.kind == "ms" and row not in results.latency:
                continue
            value = goal_value(results, row, goal)
            verdict: dict[str, Any] = {"target": row, "goal": goal.key, "label": goal.label}
            verdict |= {"limit": goal.limit, "value": value, "status": goal_status(goal, value)}
            verdict["noisy"] = goal.kind == "ratio" and is_noisy(results, row, goal.key)
            verdicts.append(verdict)
    return verdicts


def goals_table(verdicts: Sequence[dict[str, Any]]) -> Table:
    rows = list(dict.fromkeys(v["target"] for v in verdicts))
    table = Table("Summary against the README's targets", ["goal", "wanted", *rows])
    for goal in GOALS:
        wanted = (
            f">= {goal.limit:.2f}x direct" if goal.kind == "ratio" else f"|e| <= {goal.limit:g} ms"
        )
        line = [goal.label, wanted]
        for row in rows:
            found = [v for v in verdicts if v["target"] == row and v["goal"] == goal.key]
            cell = ""
            if found:
                value = found[0]["value"]
                shown = (
                    "-"
                    if value is None
                    else (f"{value:.3f}x" if goal.kind == "ratio" else f"{value:+.3f} ms")
                )
                cell = f"{shown} {found[0]['status']}" + (" (noisy)" if found[0]["noisy"] else "")
            line.append(cell)
        table.rows.append(line)
    if any(v["noisy"] for v in verdicts):
        table.notes.append(
            f"(noisy) = the runs behind that ratio spread wider than +/-{NOISY_SPREAD * 50:.0f}%: "
            "re-run before acting on its verdict"
        )
    return table


def upstream_goals(results: Results) -> list[dict[str, Any]]:
    """Issue 15's goals: the engine against upstream Toxiproxy (and direct) in the same run.
    Each has the engine's figure and, for comparison, upstream's."""
    goals: list[dict[str, Any]] = []

    def add(
        label: str,
        wanted: str,
        value: float | None,
        spec: str,
        reference: float | None,
        ok: Callable[[float], bool],
    ) -> None:
        status = "n/a" if value is None else ("PASS" if ok(value) else "MISS")
        goals.append(
            {
                "goal": label,
                "wanted": wanted,
                "value": value,
                "upstream": reference,
                "shown": (fmt(value, spec), fmt(reference, spec)),
                "status": status,
            }
        )

    for metric in METRICS:
        for suffix, how in (("", "plain"), (TOXIC_SUFFIX, "do-nothing toxics")):
            ratio = results.ratio(ENGINE + suffix, metric.key, UPSTREAM + suffix)
            add(
                f"{metric.label}, {how}", "engine/upstream >= 1", ratio, ".2f", None, _at_least(1.0)
            )
    for key in ("tput_up", "tput_down"):
        label = next(m.label for m in METRICS if m.key == key)
        add(
            f"passthrough, {label}",
            f"x direct >= {PASSTHROUGH_GOAL}",
            results.ratio(ENGINE, key),
            ".2f",
            results.ratio(UPSTREAM, key),
            _at_least(PASSTHROUGH_GOAL),
        )
    for metric in METRICS:
        add(
            f"toxic path, {metric.label}",
            f"toxic/plain >= {TOXIC_PATH_GOAL}",
            results.ratio(ENGINE + TOXIC_SUFFIX, metric.key, ENGINE),
            ".2f",
            results.ratio(UPSTREAM + TOXIC_SUFFIX, metric.key, UPSTREAM),
            _at_least(TOXIC_PATH_GOAL),
        )
    extras = results.extras
    theirs = extras.burst_median(UPSTREAM, "all_connected_s")
    add(
        f"{BURST_CONNECTS:,} connects: all connected (s)",
        "<= upstream's",
        extras.burst_median(ENGINE, "all_connected_s"),
        ".3f",
        theirs,
        lambda v: theirs is not None and v <= theirs,
    )
    overflows, upstream_overflows = extras.overflows(ENGINE), extras.overflows(UPSTREAM)
    add(
        "listen overflows in the bursts",
        "none",
        None if overflows is None else float(overflows),
        ".0f",
        None if upstream_overflows is None else float(upstream_overflows),
        lambda v: v == 0,
    )
    ours_loaded, theirs_loaded = results.loaded.get(ENGINE), results.loaded.get(UPSTREAM)
    theirs_p99 = None if theirs_loaded is None else theirs_loaded.err_p99
    add(
        f"latency error p99 (ms), {LOAD_CLIENTS} clients loading the proxy",
        "<= upstream's",
        None if ours_loaded is None else ours_loaded.err_p99,
        "+.2f",
        theirs_p99,
        lambda v: theirs_p99 is not None and v <= theirs_p99,
    )
    for rate in BANDWIDTH_RATES:
        add(
            f"bandwidth {rate:,} KB/s: delivered / configured",
            f"within {BANDWIDTH_TOLERANCE:.0%}",
            extras.bandwidth_median(ENGINE, rate, "delivered"),
            ".3f",
            extras.bandwidth_median(UPSTREAM, rate, "delivered"),
            lambda v: abs(v - 1) <= BANDWIDTH_TOLERANCE,
        )
    return goals


def _at_least(limit: float) -> Callable[[float], bool]:
    return lambda value: value >= limit


def upstream_goals_table(goals: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        "Summary against issue 15's goals (the verdict is the engine's; upstream for comparison)",
        ["goal", "wanted", "engine", "upstream", "status"],
    )
    for goal in goals:
        table.rows.append([goal["goal"], goal["wanted"], *goal["shown"], goal["status"]])
    return table


# ------------------------------------------------------------------------------- output
def print_header(info: dict[str, str], tools: dict[str, str]) -> None:
    print(f"Machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}")
    print(f"Python:  {info['python']} ({sys.executable})")
    print(f"Load:    {info['cpu_busy_before']} of all CPUs busy just before the run")
    print("Tools:   " + "; ".join(f"{name}: {version}" for name, version in tools.items()))
    print()


def sections(
    results: Results, names: Sequence[str], reps: int, bw_reps: int, *, spread: bool
) -> list[Table]:
    return [
        rates_table(results, reps, spread=spread),
        cpu_table(results),
        burst_table(results.extras, names, reps),
        latency_table(results),
        bandwidth_table(results.extras, bw_reps),
        memory_table(results.extras),
    ]


def print_server_logs(targets: Sequence[Target]) -> None:
    """Show what a proxy server complained about: errors often explain a MISS."""
    for target in targets:
        tail = log_tail(target.logfile) if target.logfile and not target.toxic else ""
        if tail:
            print(f"{target.name} output (last lines of its log):")
            print("\n".join(f"  | {line[:200]}" for line in tail.splitlines()))
            print()


def markdown(
    info: dict[str, str],
    tools: dict[str, str],
    versions: dict[str, str | None],
    results: Results,
    names: Sequence[str],
    reps: int,
    bw_reps: int,
    verdicts: Sequence[dict[str, Any]],
    upstream_build: str,
) -> str:
    """The engine part of the README's Performance section, from this run; `upstream_build`
    says how the upstream binary was obtained."""
    today = datetime.date.today().isoformat()
    upstream = tools.get("toxiproxy-server", "not found")
    if upstream == "not found":
        built = "No upstream Toxiproxy binary was given, so its columns are empty."
    else:
        built = f"Upstream is `{upstream.split(' (')[0]}`, {upstream_build}."
    intro = (
        f"`benchmarks/engine_bench.py`, one run on {today}: {info['nproc']} CPUs "
        f"({info['cpu']}), {info['python']}, uvloop {versions.get('uvloop')}, "
        f"aiohttp {versions.get('aiohttp')}; other processes used "
        f"{info.get('other_load_during_run', '?')} during the run. {built} "
        "iperf3, redis-benchmark and the probes run in their own processes; every ratio is "
        f"between figures of this run. New connections: {CONN_CLIENTS} clients, `-k 0`."
    )
    parts = [intro, ""]
    for table in sections(results, names, reps, bw_reps, spread=False):
        parts += [table.markdown()]
    parts.append(goals_table(verdicts).markdown())
    parts.append(upstream_goals_table(upstream_goals(results)).markdown())
    return "\n".join(parts)
