"""`--chaos-html PATH`: the suite's chaos report as one self-contained HTML file (styles and
charts inline, no script, nothing fetched), from the same records as `--chaos-report`.

At the top, the suite's totals; then, per test that used chaos, its faults, a chart (the
faults as shaded bands over the load's latency and the proxies' open connections, see
`charts.py`) and a table of the load's signals per window (the whole run, before the first
fault, each fault, after the last revert). This module imports matplotlib: only runs that ask
for the report load it.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_chaos.load.signals import format_bytes, format_latency, format_rate
from pytest_chaos.report.charts import chart_settings, render_chart

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2933;
       margin: 0 auto; max-width: 1080px; padding: 24px; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 8px; font-family: ui-monospace, monospace;
     overflow-wrap: anywhere; }
.meta { color: #616e7c; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e7eb; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.signals { width: 100%; }
table.signals td { white-space: nowrap; }
table.signals th.proxies { text-align: left; }
table.signals td.proxies, table.signals td.errors { white-space: normal; font-size: 12px; }
table.signals td.proxies { text-align: left; min-width: 180px; }
caption { text-align: left; padding: 4px 0; }
th { background: #f0f4f8; font-weight: 600; }
.totals td { font-size: 18px; font-weight: 600; text-align: center; }
.totals th { text-align: center; }
section.test { background: white; border: 1px solid #e4e7eb; border-radius: 6px;
               padding: 16px; margin: 16px 0; }
.badge { font: 600 11px system-ui, sans-serif; padding: 2px 8px; border-radius: 10px;
         margin-left: 8px; vertical-align: middle; white-space: nowrap; }
.passed { background: #d3f9d8; color: #2b8a3e; } .failed { background: #ffe3e3; color: #c92a2a; }
.skipped { background: #e9ecef; color: #495057; }
.chart svg { width: 100%; height: auto; display: block; }
ul.faults { margin: 4px 0 8px; padding-left: 20px; font-family: ui-monospace, monospace;
            font-size: 12.5px; }
.bad { color: #c92a2a; font-weight: 600; }
.note { color: #616e7c; font-size: 12.5px; }
nav ol { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
"""


def write_html(path: Path, payload: dict[str, Any]) -> None:
    """Write the report of `payload` (the JSON report's content) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(payload), encoding="utf-8")


def render(payload: dict[str, Any]) -> str:
    """The report of `payload` (the JSON report's content) as one self-contained HTML page."""
    tests: list[dict[str, Any]] = payload.get("tests") or []
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>pytest-chaos report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<header><h1>pytest-chaos report</h1>",
        f'<p class="meta">backend {_e(payload.get("backend"))} · seed {_e(payload.get("seed"))}'
        f" · {_e(generated)}</p>",
        _totals(tests),
        "</header>",
    ]
    if tests:
        parts.append(_index(tests))
    with chart_settings():
        for number, record in enumerate(tests, 1):
            parts.append(_test_section(record, number))
    if not tests:
        parts.append('<p class="note">No test of this run used chaos.</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ------------------------------------------------------------------------------ the suite
def _totals(tests: list[dict[str, Any]]) -> str:
    outcomes = [record.get("outcome") for record in tests]
    loads = [load for record in tests for load in record.get("loads") or []]
    whole = [_whole_run(load) for load in loads]
    calls = sum(window["count"] for window in whole)
    errors = sum(sum(window["errors"].values()) for window in whole)
    hung = sum(window["errors"].get("hung", 0) for window in whole)
    connections = sum(
        1 for record in tests for e in record.get("events") or [] if e.get("kind") == "accepted"
    )
    cells = [
        ("tests", str(len(tests))),
        ("passed", str(outcomes.count("passed"))),
        ("failed", str(outcomes.count("failed"))),
        ("faults injected", str(sum(len(record.get("faults") or []) for record in tests))),
        ("loads", str(len(loads))),
        ("calls", str(calls)),
        ("errors", f"{errors} ({format_rate(errors / calls if calls else 0.0)})"),
        ("hung calls", str(hung)),
        ("connections", str(connections)),
    ]
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in cells)
    body = "".join(
        f'<td class="{"bad" if name == "failed" and value != "0" else ""}">{_e(value)}</td>'
        for name, value in cells
    )
    return f'<table class="totals"><tr>{head}</tr><tr>{body}</tr></table>'


def _index(tests: list[dict[str, Any]]) -> str:
    items = "".join(
        f'<li><a href="#test-{number}">{_e(record["nodeid"])}</a>'
        f"{_badge(record.get('outcome'))}</li>"
        for number, record in enumerate(tests, 1)
    )
    return f"<nav><ol>{items}</ol></nav>"


# ------------------------------------------------------------------------------- one test
def _test_section(record: dict[str, Any], number: int) -> str:
    outcome = record.get("outcome")
    parts = [
        f'<section class="test" id="test-{number}">',
        f"<h2>{_e(record['nodeid'])}{_badge(outcome)}</h2>",
    ]
    faults = record.get("faults") or []
    if faults:
        parts.append('<ul class="faults">')
        parts += [f"<li>{_fault_line(fault)}</li>" for fault in faults]
        parts.append("</ul>")
    chart = render_chart(record, number)
    if chart is not None:
        parts.append(f'<div class="chart" id="chart-{number}">{chart}</div>')
    for load in record.get("loads") or []:
        parts.append(_signals_table(load))
    if not faults and chart is None:
        parts.append('<p class="note">No fault, no load and no connection recorded.</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _fault_line(fault: dict[str, Any]) -> str:
    applied = f"+{fault['applied_at']:.2f}s"
    reverted = fault["reverted_at"]
    until = f"+{reverted:.2f}s" if reverted is not None else "the end of the test"
    return f"{_e(fault['fault'])} from {applied} to {until}"


def _signals_table(load: dict[str, Any]) -> str:
    head = (
        "<tr><th>window</th><th>time</th><th>calls</th><th>calls/s</th><th>errors</th>"
        '<th>p50</th><th>p90</th><th>p99</th><th>max</th><th class="proxies">proxies</th></tr>'
    )
    rows = [_window_row(window) for window in load["windows"]]
    recovery = load.get("recovery")
    caption = f"load {_e(load['load'])}"
    if recovery is not None:
        took = recovery["time"]
        caption += (
            f" · recovered {took:.2f}s after the last revert"
            if took is not None
            else ' · <span class="bad">not recovered when the load stopped</span>'
        )
    shown = load["calls"]
    if shown["shown"] < shown["count"]:
        caption += f" · chart shows {shown['shown']} of {shown['count']} calls"
    note = load.get("proxies_note")
    tail = f'<p class="note">{_e(note)}</p>' if note else ""
    return f'<table class="signals"><caption>{caption}</caption>{head}{"".join(rows)}</table>{tail}'


def _window_row(window: dict[str, Any]) -> str:
    errors: dict[str, int] = window["errors"]
    failed = sum(errors.values())
    error_text = "0"
    if failed:
        kinds = ", ".join(f"{name} {n}" for name, n in errors.items())
        share = format_rate(window["error_rate"])
        error_text = f'<span class="bad">{failed} ({share}): {_e(kinds)}</span>'
    spans = window.get("spans") or []
    when = ", ".join(f"+{a:.2f}..+{b:.2f}s" for a, b in spans)
    return (
        f"<tr><td>{_e(window['window'])}</td><td>{_e(when)}</td><td>{window['count']}</td>"
        f'<td>{window["throughput"]:.1f}</td><td class="errors">{error_text}</td>'
        + "".join(f"<td>{format_latency(window[q])}</td>" for q in ("p50", "p90", "p99", "max"))
        + f'<td class="proxies">{_e(_proxies(window["proxies"].items()))}</td></tr>'
    )


def _proxies(views: Iterable[tuple[str, dict[str, int]]]) -> str:
    return "; ".join(
        f"{name}: {view['connections']} conn, {format_bytes(view['bytes_up'])} up,"
        f" {format_bytes(view['bytes_down'])} down, {view['resets']} resets,"
        f" {view['refused']} refused"
        for name, view in views
    )


# ---------------------------------------------------------------------------- formatting
def _whole_run(load: dict[str, Any]) -> dict[str, Any]:
    window: dict[str, Any] = load["windows"][0]
    return window


def _badge(outcome: object) -> str:
    kind = str(outcome or "unknown")
    return f'<span class="badge {_e(kind)}">{_e(kind)}</span>'


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
