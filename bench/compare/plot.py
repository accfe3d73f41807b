"""Overlaid latency-by-percentile plots: one SVG per scenario, every server's curve on it.

Input: the `.hgrm` files the harness writes (HdrHistogram's `outputPercentileDistribution`
format, microseconds). The x axis is HdrHistogram's: `log10(1/(1-percentile))`, so 0%, 90%, 99%,
99.9% ... are evenly spaced. The y axis is logarithmic too (unlike HdrHistogram's plotter),
because the servers compared differ by orders of magnitude and a linear axis would flatten the
fast ones. Each repetition is one thin line in its server's colour, so the spread is visible.

Plain SVG text from the standard library; nothing is interpolated or smoothed.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

#: Canvas size in SVG pixels.
WIDTH_PX, HEIGHT_PX = 1000.0, 560.0
#: Plot area margins: left (y labels), right (legend), top (title), bottom (x labels).
LEFT_PX, RIGHT_PX, TOP_PX, BOTTOM_PX = 80.0, 240.0, 50.0, 60.0
#: Most decades on the x axis (99.9999%).
DECADES_MAX = 6
#: One colour per server, in the driver's order (colour-blind-safe Okabe-Ito, then greys).
COLOURS = ("#000000", "#e69f00", "#56b4e9", "#009e73", "#d55e00", "#0072b2", "#cc79a7", "#999999")


@dataclasses.dataclass
class PercentileRow:
    """One row of an .hgrm file."""

    #: Latency at this percentile, microseconds.
    value_us: float
    #: Quantile in [0, 1].
    quantile: float
    #: Samples at or below the value.
    total_count: int


def parse_hgrm(text: str) -> list[PercentileRow]:
    """Rows of an .hgrm text (header, blank and '#' lines skipped)."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or line.lstrip().startswith("#"):
            continue
        try:
            rows.append(PercentileRow(float(fields[0]), float(fields[1]), int(fields[2])))
        except ValueError:
            continue  # the header line
    return rows


def x_decades(quantile: float, decades: int) -> float:
    """`log10(1/(1-q))`, capped so q = 1 lands at the right edge."""
    tail = max(1.0 - quantile, 10.0 ** -decades)
    return min(-math.log10(tail), float(decades))


def percentile_label(decade: int) -> str:
    """'0%', '90%', '99%', '99.9%' ... for decade 0, 1, 2, 3 ..."""
    if decade == 0:
        return "0%"
    if decade == 1:
        return "90%"
    return "99" + ("." + "9" * (decade - 2) if decade > 2 else "") + "%"


def y_ticks_ms(low_ms: float, high_ms: float) -> list[float]:
    """1-2-5 ticks covering [low, high] on a log axis."""
    ticks = []
    for exponent in range(math.floor(math.log10(low_ms)), math.ceil(math.log10(high_ms)) + 1):
        for factor in (1, 2, 5):
            value = factor * 10.0 ** exponent
            if low_ms <= value <= high_ms:
                ticks.append(value)
    return ticks


def escape(text: str) -> str:
    """Escapes text for SVG."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_overlay(title: str, series: list[tuple[str, list[list[PercentileRow]]]]) -> str:
    """SVG of every (server, [rows of each repetition]) curve; latency in ms on a log axis."""
    all_rows = [row for _, runs in series for rows in runs for row in rows]
    if not all_rows:
        raise ValueError("no latency rows to plot")
    values_ms = [max(row.value_us / 1000.0, 1e-3) for row in all_rows]
    low_ms = 10.0 ** math.floor(math.log10(min(values_ms)))
    high_ms = 10.0 ** math.ceil(math.log10(max(values_ms) * 1.05))
    count_max = max(rows[-1].total_count for _, runs in series for rows in runs if rows)
    decades = min(max(math.ceil(math.log10(max(count_max, 1))), 3), DECADES_MAX)
    plot_width = WIDTH_PX - LEFT_PX - RIGHT_PX
    plot_height = HEIGHT_PX - TOP_PX - BOTTOM_PX

    def to_x(decade: float) -> float:
        return LEFT_PX + decade / decades * plot_width

    def to_y(value_ms: float) -> float:
        span = math.log10(high_ms) - math.log10(low_ms)
        fraction = (math.log10(max(value_ms, low_ms)) - math.log10(low_ms)) / span
        return TOP_PX + plot_height * (1.0 - fraction)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX:.0f}" height="{HEIGHT_PX:.0f}" '
           'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{LEFT_PX + plot_width / 2:.1f}" y="28" text-anchor="middle" font-size="15">{escape(title)}</text>']
    for decade in range(decades + 1):
        x = to_x(decade)
        out.append(f'<line x1="{x:.1f}" y1="{TOP_PX}" x2="{x:.1f}" y2="{TOP_PX + plot_height}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP_PX + plot_height + 18:.1f}" text-anchor="middle">{percentile_label(decade)}</text>')
    for tick in y_ticks_ms(low_ms, high_ms):
        y = to_y(tick)
        out.append(f'<line x1="{LEFT_PX}" y1="{y:.1f}" x2="{LEFT_PX + plot_width}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT_PX - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    out.append(f'<text x="{LEFT_PX + plot_width / 2:.1f}" y="{HEIGHT_PX - 18:.1f}" text-anchor="middle">Percentile</text>')
    out.append(f'<text x="22" y="{TOP_PX + plot_height / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 22 {TOP_PX + plot_height / 2:.1f})">publish -&gt; receive latency (ms, log scale)</text>')
    for index, (name, runs) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        for rows in runs:
            points = " ".join(f"{to_x(x_decades(row.quantile, decades)):.1f},{to_y(row.value_us / 1000.0):.1f}"
                              for row in rows)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" stroke-opacity="0.8" points="{points}"/>')
        legend_y = TOP_PX + 10 + 18 * index
        legend_x = LEFT_PX + plot_width + 14
        out.append(f'<line x1="{legend_x:.1f}" y1="{legend_y - 4:.1f}" x2="{legend_x + 22:.1f}" y2="{legend_y - 4:.1f}" '
                   f'stroke="{colour}" stroke-width="3"/>')
        out.append(f'<text x="{legend_x + 28:.1f}" y="{legend_y:.1f}">{escape(name)} ({len(runs)} run{"s" if len(runs) != 1 else ""})</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_overlay(path: Path, title: str, series: list[tuple[str, list[Path]]]) -> bool:
    """Reads each server's .hgrm files and writes the overlay; False when there is nothing to plot."""
    loaded = []
    for name, files in series:
        runs = [rows for rows in (parse_hgrm(file.read_text()) for file in files if file.is_file()) if rows]
        if runs:
            loaded.append((name, runs))
    if not loaded:
        return False
    path.write_text(render_overlay(title, loaded))
    return True
