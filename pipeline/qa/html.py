"""Self-contained HTML for ``qa.html`` (this module) and ``run_report.html`` (``html_run``).

One file each: inline CSS and SVG, images as data URIs, a few lines of inline JS to sort the
run table. No external fonts, scripts or images, so the page opens offline and makes no
network request. Every value from a report is escaped. Times are shown in the zone given
(default: this machine's); the JSON documents keep UTC.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from .charts import histogram_svg, spark_svg
from .schema import QAReport
from .thumbs import Legend, Picture

CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1d232b;background:#f6f7f9}main{max-width:1180px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #d8dce2;
padding-bottom:3px}h3{font-size:14px;margin:14px 0 6px}.sub{color:#5b6470}.badge{display:inline-block;
padding:2px 10px;border-radius:10px;font-weight:600;color:#fff;text-transform:uppercase;font-size:12px;
letter-spacing:.04em}.pass,.complete{background:#2e7d32}.warn{background:#c77700}.fail,.failed{background:#c62828}
.info,.skipped{background:#607080}.skip,.none,.no-qa{background:#8a94a0}
ul.reasons{padding-left:0;list-style:none}ul.reasons li{margin:3px 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}th,td{padding:4px 8px;
border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}th{background:#eef0f3;position:sticky;top:0;
white-space:nowrap}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}
.grid{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;background:#fff;padding:8px;border:1px solid #e0e3e8;
border-radius:6px;flex:1 1 330px;max-width:560px}.pic{position:relative;display:block;width:fit-content;
max-width:100%;margin:0 auto}.pic img{display:block;max-width:100%;max-height:460px;image-rendering:pixelated;
background:repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 0 0/16px 16px}
.mk{position:absolute;color:#fff;background:rgba(0,0,0,.6);font:600 12px/1 ui-monospace,monospace;padding:3px 5px;
border-radius:3px}.mk.l{left:3px;top:50%;transform:translateY(-50%)}.mk.r{right:3px;top:50%;transform:translateY(-50%)}
.mk.t{top:3px;left:50%;transform:translateX(-50%)}.mk.b{bottom:3px;left:50%;transform:translateX(-50%)}
figcaption{color:#5b6470;font-size:12px;margin-top:4px}.sw{display:inline-block;width:12px;height:12px;
border:1px solid #999;vertical-align:-1px;margin-right:4px}.ramp{height:10px;border:1px solid #999;margin-top:4px}
.ticks{position:relative;height:14px;font-size:11px;color:#5b6470}
.ticks span{position:absolute;white-space:nowrap;transform:translateX(-50%)}
.ticks span:first-child{transform:none}.nowrap{white-space:nowrap}.ticks span:last-child{transform:translateX(-100%)}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #e0e3e8;border-radius:6px;
padding:8px 14px;min-width:120px}.card b{display:block;font-size:20px}svg.chart{width:100%;max-width:760px;
background:#fff;border:1px solid #e0e3e8;display:block}.note{color:#5b6470}details{margin:8px 0}
summary{cursor:pointer;font-weight:600}pre{white-space:pre-wrap;word-break:break-all;background:#fff;
border:1px solid #e0e3e8;padding:8px;font-size:12px}th.sortable{cursor:pointer;user-select:none}
th.sortable:after{content:" \\2195";color:#9aa3ad}.err{color:#8b1a1a;font-family:ui-monospace,monospace;font-size:12px}
.banner{margin:12px 0;padding:12px 16px;border-radius:6px;color:#fff;font-size:18px;font-weight:600}
.banner small{display:block;font-size:13px;font-weight:400;opacity:.92}img.thumb{width:64px;height:auto;
max-height:64px;object-fit:contain;image-rendering:pixelated;display:block;
background:repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 0 0/8px 8px}
"""


# -- shared helpers ---------------------------------------------------------------------------
def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def pct_small(v: float | None) -> str:
    """A share that may be tiny: '0%', '0.03%', '12.5%' (a 0.0% beside 334 pixels reads as none)."""
    if v is None:
        return "–"
    if v == 0:
        return "0%"
    return "< 0.01%" if v < 1e-4 else f"{100 * v:.2f}%" if v < 0.01 else f"{100 * v:.1f}%"


def exact(values: Iterable[float] | None, single: bool = False) -> str | None:
    """Numbers as stored, in the shortest form that reads back to the same value, never in
    exponent form (``5300040``, not ``5.30004e+06``). ``single``: the values are float32
    (NIfTI header fields), so 1.2 shows as 1.2, not as 1.2000000476837158."""
    if values is None:
        return None
    kind = np.float32 if single else np.float64
    return ", ".join(np.format_float_positional(kind(x), unique=True, trim="-") for x in values)


def zone(tz: tzinfo | str | None) -> tzinfo | None:
    """A tzinfo from a zone object or IANA name; None: this machine's local zone."""
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def local_time(iso: str | None, tz: tzinfo | str | None = None, short: bool = False) -> str:
    """'2026-05-03 02:14:07 CEST (UTC+02:00)' from an ISO time, in ``tz`` (default: local);
    ``short``: '2026-05-03 02:14 CEST'."""
    if not iso:
        return "–"
    try:
        t = datetime.fromisoformat(iso).astimezone(zone(tz))
    except ValueError:
        return iso
    name = t.tzname() or ""
    if short:
        return f"{t:%Y-%m-%d %H:%M} {name}".strip()
    off = t.strftime("%z")
    offset = "" if name == "UTC" else f" (UTC{off[:3]}:{off[3:]})"
    return f"{t:%Y-%m-%d %H:%M:%S} {name}{offset}".strip()


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (), tid: str = "") -> str:
    """Cells are values (escaped, formatted) or (html, sort key) pairs."""
    num = set(numeric)
    th = "".join(f'<th class="n">{escape(h)}</th>' if i in num else f"<th>{escape(h)}</th>" for i, h in enumerate(head))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            html, sort = cell if isinstance(cell, tuple) else (escape(fmt(cell)), cell)
            cls = ' class="n"' if i in num else ""
            cells.append(f'<td{cls} data-v="{escape(str(sort if sort is not None else ""))}">{html}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{tid}"' if tid else ""
    return f"<table{ident}><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    return table(("", ""), ((k, v) for k, v in pairs))


def page(title: str, body: str, script: str = "") -> str:
    js = f"<script>{script}</script>" if script else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>{body}</main>{js}</body></html>")


def badge(status: str | None) -> str:
    s = status or "none"
    return f'<span class="badge {escape(s)}">{escape(status or "n/a")}</span>'


def swatch(color: Sequence[int]) -> str:
    if len(color) < 3:
        return ""
    r, g, b = (int(x) for x in color[:3])
    return f'<span class="sw" style="background:rgb({r},{g},{b})"></span>'


# -- scene ----------------------------------------------------------------------------------
def scene_html(r: QAReport, pictures: Sequence[Picture], tz: tzinfo | str | None = None) -> str:
    """``qa.html`` for one scene or volume."""
    parts = [
        f"<h1>{escape(r.scene)} {badge(r.verdict.status)}</h1>",
        f'<div class="sub">{escape(r.kind)} · {escape(r.input.path)} · '
        f"report {escape(local_time(r.created, tz))}</div>",
        _reasons(r), _pictures(r, pictures), "<h2>Classes</h2>", _classes(r), _confidence(r), _seams(r),
        "<h2>Checks</h2>",
        table(("check", "result", "detail"), ((c.name, (badge(c.status), c.status), c.detail) for c in r.checks)),
        "<h2>Performance</h2>", _performance(r), "<h2>Input</h2>", _input(r), "<h2>Model and settings</h2>",
        _model(r), _warnings(r),
    ]
    return page(f"QA {r.scene}: {r.verdict.status}", "".join(parts))


def _reasons(r: QAReport) -> str:
    if not r.verdict.reasons:
        return "<p>No findings: every check and threshold passed.</p>"
    items = "".join(f"<li>{badge(x.severity)} {escape(x.message)}</li>" for x in r.verdict.reasons)
    return f'<h2>Findings</h2><ul class="reasons">{items}</ul>'


def legend_html(g: Legend) -> str:
    ticks = "".join(f'<span style="left:{100 * t:.0f}%">{escape(label)}</span>' for t, label in g.ticks)
    return (f'<div class="ramp" style="background:{g.gradient}"></div><div class="ticks">{ticks}</div>'
            f'<div class="note" style="font-size:12px">{escape(g.note)}</div>')


def figure(p: Picture) -> str:
    marks = "" if p.markers is None else "".join(
        f'<span class="mk {side}">{escape(letter)}</span>' for side, letter in zip("lrtb", p.markers))
    legend = legend_html(p.legend) if p.legend is not None else ""
    return (f'<figure><div class="pic"><img alt="{escape(p.caption)}" src="{p.uri}">{marks}</div>'
            f"<figcaption>{escape(p.caption)}</figcaption>{legend}</figure>")


def _pictures(r: QAReport, pictures: Sequence[Picture]) -> str:
    if not pictures:
        return ""
    legend = " ".join(f"{swatch(c.color)}{escape(c.name)}" for c in r.classes)
    note = ("<p class=\"note\">Planes through the volume's centre as radiology viewers show them: the patient's "
            "right on the image's left, anterior on the left of the sagittal plane; pixels are square in mm.</p>"
            if r.kind == "volume" else "")
    return f'<h2>Pictures</h2>{note}<div class="grid">{"".join(map(figure, pictures))}</div><p>{legend}</p>'


def _classes(r: QAReport) -> str:
    vol = r.area.unit == "ml"
    size_head = "volume mL" if vol else "area ha"
    unit = "voxels" if r.kind == "volume" else "pixels"
    head = ("class", unit, "fraction", size_head, "components", f"largest ({unit})", "on image edge",
            "next to nodata")
    rows = [((f"{swatch(c.color)}{escape(c.name)}", c.name), c.pixels, (pct(c.fraction), c.fraction),
             c.volume_ml if vol else c.area_ha, c.components, c.largest_component,
             ("yes" if c.touches_border else "no", int(c.touches_border)),
             ("yes" if c.touches_nodata else "no", int(c.touches_nodata)))
            for c in r.classes]
    note = ('<p class="note">"On image edge" / "next to nodata": objects there may be cut off, so their '
            "size is a lower bound (information, not a failure).</p>")
    area = f'<p class="note">{escape(r.area.note)}</p>' if r.area.note else ""
    return table(head, rows, numeric=(1, 2, 3, 4, 5)) + note + area


def _confidence(r: QAReport) -> str:
    c = r.confidence
    unit = "voxels" if r.kind == "volume" else "pixels"
    if c is None:
        ent = f" Mean entropy {fmt(r.mean_entropy)} nats." if r.mean_entropy is not None else ""
        return f"<h2>Confidence</h2><p>Not recorded for this scene.{escape(ent)}</p>"
    below = sum(n for i, n in enumerate(c.histogram) if (i + 1) / len(c.histogram) <= c.low_threshold + 1e-9)
    cards = "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>' for k, v in (
        ("mean confidence", f"{c.mean:.3f}"),
        (f"{unit} below {c.low_threshold:.2f}", f"{below:,} ({pct_small(c.low_fraction)})"),
        ("mean entropy (nats)", fmt(c.mean_entropy)),
    ))
    chart = histogram_svg(c.histogram, low=c.low_threshold, unit=unit, title="confidence histogram")
    rows = [((f"{swatch(k.color)}{escape(k.name)}", k.name), k.pixels, k.mean_confidence,
             (pct_small(k.low_confidence_fraction), k.low_confidence_fraction),
             (spark_svg(k.confidence_histogram, low=c.low_threshold, unit=unit)
              if k.confidence_histogram else "–", k.mean_confidence))
            for k in r.classes]
    per_class = table(("class", unit, "mean confidence", f"below {c.low_threshold:.2f}", "histogram (log)"),
                      rows, numeric=(1, 2, 3))
    return (f'<h2>Confidence</h2><div class="cards">{cards}</div><p class="sub">Max class probability of every '
            f"valid {unit[:-1]}, log scale: {below:,} {unit} lie in the bins below {c.low_threshold:.2f} "
            f"(orange).</p>{chart}<h3>By class</h3>{per_class}")


def _seams(r: QAReport) -> str:
    s = r.seams
    if s is None:
        return ""
    score = "n/a (single tile)" if s.score is None else f"{s.score:.2f}"
    border = f"{s.border_rate:.3f}" if s.border_pairs else "n/a (no pixel pairs across tile borders)"
    interior = f"{s.interior_rate:.3f}" if s.interior_pairs else "n/a (no interior pixel pairs)"
    return ("<h2>Seams</h2><p>Prediction changes across tile borders versus elsewhere; about 1 is clean, "
            "higher means tiles disagree where they meet.</p>" + kv((
                ("seam score", score), ("border disagreement rate", border),
                ("interior disagreement rate", interior), ("border pixel pairs", s.border_pairs),
                ("interior pixel pairs", s.interior_pairs))))


_SCOPE = {"scene": "this scene", "sampled": "this scene, sampled every 20 ms",
          "process": "the process's high-water mark: includes whatever it ran before"}


def _performance(r: QAReport) -> str:
    p = r.performance
    peak = None
    if p.peak_rss_mb is not None:
        rise = f"; {p.peak_rss_mb - p.rss_start_mb:+,.0f} MiB over the {p.rss_start_mb:,.0f} MiB the process " \
            "held at its start" if p.rss_start_mb is not None else ""
        peak = f"{p.peak_rss_mb:,.0f} MiB ({_SCOPE.get(p.peak_rss_scope or '', '?')}{rise})"
    pairs = [(f"stage: {k}", f"{v:.2f} s") for k, v in p.stages_s.items()]
    pairs += [("total", f"{p.total_s:.2f} s" if p.total_s is not None else None),
              ("QA", f"{p.qa_s:.2f} s" if p.qa_s is not None else None),
              ("throughput", f"{p.mpix_per_s:.2f} Mpix/s" if p.mpix_per_s is not None else
               f"{p.slices_per_s:.2f} slices/s" if p.slices_per_s is not None else None),
              ("peak RAM", peak),
              ("peak GPU memory", f"{p.peak_gpu_mb:,.0f} MiB" if p.peak_gpu_mb is not None else None),
              ("device / precision", f"{p.device or '–'} / {p.precision or '–'}"
                                       + (f" ({p.precision_reason})" if p.precision_reason else "")),
              ("tiles (skipped)", f"{fmt(p.tiles_total)} ({fmt(p.tiles_skipped)})")]
    return kv(pairs)


def _input(r: QAReport) -> str:
    i = r.input
    size = " x ".join(str(x) for x in (i.width, i.height, i.depth) if x is not None)
    if r.kind == "scene":
        pairs = [("size", size), ("bands", ", ".join(map(str, i.bands)) or None), ("dtype", i.dtype),
                 ("CRS", i.crs_name), ("transform", exact(i.transform)), ("pixel size", exact(i.pixel_size))]
    else:
        pairs = [("size", size), ("dtype", i.dtype), ("voxel spacing (mm)", exact(i.pixel_size, single=True)),
                 ("orientation (voxel axes)", i.orientation)]
        if i.transform:
            pairs.append(("affine (row-major)", exact(i.transform)))
    if i.qform_code is not None or i.sform_code is not None:
        pairs.append(("qform_code / sform_code", f"{fmt(i.qform_code)} / {fmt(i.sform_code)}"))
    unit = "pixels" if r.kind == "scene" else "voxels"
    if r.kind == "scene":
        pairs.append(("nodata", i.nodata))
    pairs += [("valid fraction", pct(i.valid_fraction)), (f"valid {unit}", i.valid_pixels)]
    return kv(pairs)


def _model(r: QAReport) -> str:
    m = r.model
    s = r.settings
    keys = ("tile", "overlap", "blend", "tta", "precision", "device", "batch_size", "confidence")
    return kv([("checkpoint", m.path), ("sha256", m.sha256), ("classes", ", ".join(m.class_names))]
              + [(k, s.get(k)) for k in keys if k in s]) + (
        f"<details><summary>All settings</summary><pre>{escape(json.dumps(s, indent=2, default=str))}</pre></details>")


def _warnings(r: QAReport) -> str:
    if not r.warnings:
        return ""
    return "<h2>Warnings</h2><ul>" + "".join(f"<li>{escape(w)}</li>" for w in r.warnings) + "</ul>"
