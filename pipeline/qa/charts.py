"""Confidence histograms as inline SVG, on a log scale with labelled axes (compute: strings only).

A linear histogram of a good model is one tall bar at 0.95-1.0: tens of thousands of
uncertain pixels vanish into a one-pixel sliver beside it. On a log scale every bin with
a pixel is visible, and bins below the job's low-confidence threshold are drawn in another
colour, so the reviewer sees at once how much of the scene the model doubts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

SURE, UNSURE, AXIS, GRID = "#3b528b", "#d9622b", "#5b6470", "#e4e7eb"


def _log_top(counts: Sequence[int]) -> int:
    """The smallest power of ten >= the largest count (the y axis' top)."""
    return max(1, math.ceil(math.log10(max(max(counts, default=1), 1))))


def histogram_svg(counts: Sequence[int], *, low: float | None = None, unit: str = "pixels",
                  width: int = 640, height: int = 210, title: str = "") -> str:
    """The histogram of ``counts`` over equal bins of [0, 1], y on a log10 scale from 1 pixel.

    ``low``: draw bins below this confidence in the "unsure" colour, with a dashed line there.
    """
    ml, mr, mt, mb = 64, 12, 14, 40  # plot margins: room for the tick labels and axis titles
    pw, ph = width - ml - mr, height - mt - mb
    n, decades = len(counts), _log_top(counts)
    bw = pw / max(n, 1)

    def y(count: float) -> float:
        return mt + ph - ph * math.log10(count) / decades if count >= 1 else mt + ph

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
             f'font-size="11" font-family="system-ui,sans-serif">']
    for d in range(decades + 1):  # y grid and ticks at 1, 10, 100, ...
        yy = y(10 ** d)
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{GRID}"/>'
                     f'<text x="{ml - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="{AXIS}">{_count(10 ** d)}</text>')
    for i, c in enumerate(counts):
        lo, hi = i / n, (i + 1) / n
        colour = UNSURE if low is not None and hi <= low + 1e-9 else SURE
        top = y(c)
        parts.append(f'<rect x="{ml + i * bw + 0.5:.1f}" y="{top:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                     f'height="{mt + ph - top:.1f}" fill="{colour}"><title>{lo:.2f}–{hi:.2f}: {c:,} {unit}'
                     f'</title></rect>')
    for t in (0, 0.25, 0.5, 0.75, 1.0):  # x ticks
        xx = ml + t * pw
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt + ph}" y2="{mt + ph + 4}" stroke="{AXIS}"/>'
                     f'<text x="{xx:.1f}" y="{mt + ph + 16}" text-anchor="middle" fill="{AXIS}">{t:g}</text>')
    if low is not None:
        xx = ml + low * pw
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{mt}" y2="{mt + ph}" stroke="{UNSURE}" '
                     f'stroke-dasharray="4 3"/><text x="{xx + 4:.1f}" y="{mt + 10}" fill="{UNSURE}">'
                     f'low &lt; {low:.2f}</text>')
    parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}" stroke="{AXIS}"/>'
                 f'<line x1="{ml}" x2="{ml}" y1="{mt}" y2="{mt + ph}" stroke="{AXIS}"/>'
                 f'<text x="{ml + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="{AXIS}">'
                 f'confidence (max class probability)</text>'
                 f'<text transform="translate(14 {mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'fill="{AXIS}">{escape(unit)} (log scale)</text></svg>')
    return "".join(parts)


def spark_svg(counts: Sequence[int], *, low: float | None = None, unit: str = "pixels") -> str:
    """A small log-scale histogram for a table cell: same bins and colours, ticks 0 and 1 only."""
    w, h, mb = 150, 44, 12
    n, decades = len(counts), _log_top(counts)
    bw = w / max(n, 1)
    parts = [f'<svg class="spark" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
             f'font-size="9" font-family="system-ui,sans-serif">'
             f'<line x1="0" x2="{w}" y1="{h - mb}" y2="{h - mb}" stroke="{AXIS}"/>']
    for i, c in enumerate(counts):
        if c < 1:
            continue
        bar = (h - mb - 2) * max(math.log10(c), 0.05) / decades
        colour = UNSURE if low is not None and (i + 1) / n <= low + 1e-9 else SURE
        parts.append(f'<rect x="{i * bw:.1f}" y="{h - mb - bar:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                     f'height="{bar:.1f}" fill="{colour}"><title>{i / n:.2f}–{(i + 1) / n:.2f}: {c:,} {unit}'
                     f'</title></rect>')
    parts.append(f'<text x="0" y="{h - 1}" fill="{AXIS}">0</text><text x="{w}" y="{h - 1}" text-anchor="end" '
                 f'fill="{AXIS}">1</text></svg>')
    return "".join(parts)


def _count(v: int) -> str:
    for div, suffix in ((10 ** 9, "G"), (10 ** 6, "M"), (10 ** 3, "k")):
        if v >= div:
            return f"{v // div}{suffix}"
    return str(v)
