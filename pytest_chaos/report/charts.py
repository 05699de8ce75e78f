"""The HTML report's charts: one static SVG per test, drawn with matplotlib's SVG backend
(no pyplot, so no global state and no display), from the test's JSON record alone.

The upper panel is the latency of each load's calls over time (points; failed calls as red
crosses, hung ones as black triangles) with p50 and p99 lines, the lower one the connections
open at each proxy; both carry the test's faults as shaded bands. Every drawn element has an
id (`chart<N>-band-<i>`, `chart<N>-calls`, `chart<N>-errors`, `chart<N>-p99`, ...) so that a
browser test, or a reader's own script, can find it.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

BAND_COLOURS = ("#f4a261", "#e76f51", "#2a9d8f", "#8e7dbe", "#e9c46a", "#90a955")
LOAD_COLOURS = ("#1d3557", "#457b9d", "#6a4c93", "#2b9348")
ERROR_COLOUR = "#d62828"
# Percentile lines: one point per bucket of the load's time, about this many buckets.
PERCENTILE_BUCKETS = 40
MIN_BUCKET_SECONDS = 0.05
# A latency axis spanning more than this ratio is drawn on a log scale.
LOG_SCALE_RATIO = 30.0
WIDTH_INCHES = 10.0


def render_chart(record: dict[str, Any], index: int) -> str | None:
    """The SVG of one test's record (None when it has neither a load nor a connection)."""
    loads: list[dict[str, Any]] = record.get("loads") or []
    connections = open_connections(record.get("events") or [])
    if not loads and not connections:
        return None
    panels = (1 if loads else 0) + (1 if connections else 0)
    ratios = [3, 1.3] if panels == 2 else [1]
    height = 1.4 + (2.6 if loads else 0) + (1.3 if connections else 0)
    end = _end_of(record)
    with chart_settings():
        figure = Figure(figsize=(WIDTH_INCHES, height))
        # Fixed margins (in inches, made fractions): a layout engine would measure every tick
        # label, which costs more than drawing the chart.
        figure.subplots_adjust(
            left=0.8 / WIDTH_INCHES,
            right=1 - 0.15 / WIDTH_INCHES,
            top=1 - 0.35 / height,
            bottom=0.55 / height,
            hspace=0.12,
        )
        grid = figure.subplots(panels, 1, sharex=True, squeeze=False, height_ratios=ratios)
        axes: list[Axes] = [row[0] for row in grid]
        top = axes[0]
        if loads:
            _latency_panel(top, loads, f"chart{index}")
        if connections:
            _connections_panel(axes[-1], connections, f"chart{index}", end)
        for panel in axes:
            _fault_bands(panel, record.get("faults") or [], end, f"chart{index}", panel is top)
            panel.set_xlim(0, end)
            panel.grid(True, color="#e5e5e5", linewidth=0.6)
            panel.set_axisbelow(True)
        axes[-1].set_xlabel("seconds from the start of the test")
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
    return _inline(buffer.getvalue(), f"chart{index}")


_settings_depth = 0


@contextlib.contextmanager
def chart_settings() -> Iterator[None]:
    """matplotlib's settings for the report's charts: text kept as text in the SVG (smaller,
    and readable in the DOM), small fonts. Entered once around all charts (see
    `html.render`): each entry copies every setting of matplotlib, which costs more than
    some charts; nested entries are free."""
    global _settings_depth
    if _settings_depth:
        yield
        return
    _settings_depth += 1
    try:
        with rc_context({"svg.fonttype": "none", "font.size": 9}):
            yield
    finally:
        _settings_depth -= 1


def _end_of(record: dict[str, Any]) -> float:
    ends = [0.1]
    for load in record.get("loads") or []:
        ends.append(load["stopped_at"])
        starts, latencies = load["calls"]["start"], load["calls"]["latency"]
        ends += [start + latency for start, latency in zip(starts, latencies, strict=True)]
    for fault in record.get("faults") or []:
        ends.append(fault["reverted_at"] if fault["reverted_at"] is not None else 0.0)
        ends.append(fault["applied_at"])
    ends += [event["offset"] for event in record.get("events") or []]
    return max(ends) * 1.02


def _latency_panel(axes: Axes, loads: list[dict[str, Any]], prefix: str) -> None:
    lowest, highest = math.inf, 0.0
    for number, load in enumerate(loads):
        colour = LOAD_COLOURS[number % len(LOAD_COLOURS)]
        calls = load["calls"]
        points = list(zip(calls["start"], calls["latency"], calls["error"], strict=True))
        label = load["load"] if len(loads) > 1 else "calls"
        ok = [(s, lat * 1000) for s, lat, error in points if error is None]
        failed = [(s, lat * 1000) for s, lat, error in points if error not in (None, "hung")]
        hung = [(s, lat * 1000) for s, lat, error in points if error == "hung"]
        suffix = f"-{number}" if number else ""
        _scatter(axes, ok, f"{prefix}-calls{suffix}", colour, "o", 6, label, 0.55)
        _scatter(axes, failed, f"{prefix}-errors{suffix}", ERROR_COLOUR, "x", 18, "failed", 0.9)
        _scatter(axes, hung, f"{prefix}-hung{suffix}", "black", "^", 24, "hung", 0.9)
        for quantile, style, name in ((0.5, "-", "p50"), (0.99, "--", "p99")):
            xs, ys = rolling_percentile(points, quantile, load["started_at"], load["stopped_at"])
            if xs:
                (line,) = axes.step(
                    xs, ys, where="post", color=colour, linestyle=style, linewidth=1.4, label=name
                )
                line.set_gid(f"{prefix}-{name}{suffix}")
        recovery = load.get("recovery") or {}
        if recovery.get("recovered_at") is not None:
            marker = axes.axvline(recovery["recovered_at"], color="#2b9348", linestyle=":")
            marker.set_gid(f"{prefix}-recovered{suffix}")
        for _, latency in ok + failed + hung:
            if latency > 0:
                lowest, highest = min(lowest, latency), max(highest, latency)
    if highest > 0 and lowest < math.inf and highest / lowest > LOG_SCALE_RATIO:
        axes.set_yscale("log")
        # Milliseconds as numbers (0.5, 10, 300), not powers of ten; no minor ticks, which
        # would cost more to lay out than the points.
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_locator(NullLocator())
    axes.set_ylabel("latency (ms)")
    # Above the panel, where it hides neither points nor the faults' labels.
    axes.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        fontsize=7,
        ncols=8,
        frameon=False,
        borderaxespad=0.2,
    )


def _scatter(
    axes: Axes,
    points: list[tuple[float, float]],
    gid: str,
    colour: str,
    marker: str,
    size: float,
    label: str,
    alpha: float,
) -> None:
    if not points:
        return
    xs, ys = zip(*points, strict=True)
    # A line of markers rather than a scatter: the SVG then holds each point as a bare <use>
    # with one shared style, a third of a scatter's size and time.
    (drawn,) = axes.plot(
        xs,
        ys,
        linestyle="none",
        marker=marker,
        markersize=math.sqrt(size),
        color=colour,
        alpha=alpha,
        markeredgewidth=0.8 if marker == "x" else 0,
        label=label,
    )
    drawn.set_gid(gid)


def rolling_percentile(
    points: Sequence[tuple[float, float, str | None]], quantile: float, start: float, stop: float
) -> tuple[list[float], list[float]]:
    """(bucket starts, the `quantile` latency in ms of the calls started in each bucket), for
    a step line over the load's time; buckets without calls are left out."""
    width = max(MIN_BUCKET_SECONDS, (stop - start) / PERCENTILE_BUCKETS)
    buckets: dict[int, list[float]] = {}
    for begun, latency, _ in points:
        buckets.setdefault(int((begun - start) // width), []).append(latency * 1000)
    xs, ys = [], []
    for bucket in sorted(buckets):
        values = sorted(buckets[bucket])
        xs.append(start + bucket * width)
        ys.append(values[max(0, math.ceil(quantile * len(values)) - 1)])
    if xs:  # the last step is drawn to the end of its bucket
        xs.append(xs[-1] + width)
        ys.append(ys[-1])
    return xs, ys


def open_connections(events: list[dict[str, Any]]) -> dict[str, list[tuple[float, int]]]:
    """Per proxy: (time, connections open from then on), from its accepted and closed
    events (a connection closed before it was seen opening is not counted)."""
    steps: dict[str, list[tuple[float, int]]] = {}
    open_now: dict[str, set[int]] = {}
    for event in sorted(events, key=lambda e: e["offset"]):
        proxy, kind = event.get("proxy"), event.get("kind")
        if proxy is None or event.get("connection") is None:
            continue
        current = open_now.setdefault(proxy, set())
        if kind == "accepted":
            current.add(event["connection"])
        elif kind == "closed" and event["connection"] in current:
            current.discard(event["connection"])
        else:
            continue
        steps.setdefault(proxy, [(0.0, 0)]).append((event["offset"], len(current)))
    return steps


def _connections_panel(
    axes: Axes, connections: dict[str, list[tuple[float, int]]], prefix: str, end: float
) -> None:
    for number, (proxy, steps) in enumerate(sorted(connections.items())):
        # The count holds until the end of the chart (pooled connections stay open).
        xs, ys = zip(*steps, (end, steps[-1][1]), strict=True)
        (line,) = axes.step(
            xs,
            ys,
            where="post",
            color=LOAD_COLOURS[(number + 1) % len(LOAD_COLOURS)],
            linewidth=1.2,
            label=f"{proxy}",
        )
        line.set_gid(f"{prefix}-connections-{_safe(proxy)}")
    axes.set_ylabel("open\nconnections")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper right", fontsize=7, ncols=6, framealpha=0.8)


def _fault_bands(
    axes: Axes, faults: list[dict[str, Any]], end: float, prefix: str, labelled: bool
) -> None:
    for number, fault in enumerate(faults):
        start = fault["applied_at"]
        stop = fault["reverted_at"] if fault["reverted_at"] is not None else end
        colour = BAND_COLOURS[number % len(BAND_COLOURS)]
        band = axes.axvspan(start, max(stop, start + end * 0.002), color=colour, alpha=0.22, lw=0)
        if labelled:
            band.set_gid(f"{prefix}-band-{number}")
            axes.text(
                start,
                1.0,
                f" {fault['fault']}",
                transform=axes.get_xaxis_transform(),
                fontsize=7,
                va="top",
                ha="left",
                color="#333333",
                gid=f"{prefix}-band-label-{number}",
            )


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


_ID = re.compile(r'(\bid="|url\(#|xlink:href="#)([^")]+)')
_COORDINATES = re.compile(r'( [xy]="| d=")([^"]*)"')
_DECIMALS = re.compile(r"(-?\d+\.\d)\d+")


def _inline(svg: str, prefix: str) -> str:
    """The SVG element alone, to put inside an HTML page that holds other charts: no XML
    prolog or doctype; every id (and every reference to one) given the chart's prefix, as
    matplotlib numbers them from 1 in each figure; coordinates to a tenth of a point, which
    is finer than any screen and shrinks the file by a third."""
    svg = svg[svg.index("<svg") :]

    def own_id(match: re.Match[str]) -> str:
        name = match.group(2)
        return match.group(0) if name.startswith(prefix) else f"{match.group(1)}{prefix}-{name}"

    def rounded(match: re.Match[str]) -> str:
        tenths = _DECIMALS.sub(r"\1", match.group(2))
        return f'{match.group(1)}{tenths}"'

    return _USES.sub(_hoist_style, _COORDINATES.sub(rounded, _ID.sub(own_id, svg)))


# A group of markers (one <use> per point) that all carry the same style.
_USES = re.compile(r"(<g [^>]*)>(\s*)((?:<use [^>]*/>\s*)+)</g>")
_STYLE = re.compile(r' style="([^"]*)"')


def _hoist_style(match: re.Match[str]) -> str:
    """The markers' common style once, on their group (they inherit it), not on each point:
    a third of the size of a chart with many points."""
    head, space, uses = match.groups()
    styles = set(_STYLE.findall(uses))
    if len(styles) != 1 or "style=" in head:
        return match.group(0)
    style = styles.pop()
    bare = uses.replace(f' style="{style}"', "")
    return f'{head} style="{style}">{space}{bare}</g>'
