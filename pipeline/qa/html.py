"""Self-contained HTML for ``qa.html`` and ``run_report.html`` (compute: strings only).

One file each: inline CSS, images as data URIs, a few lines of inline JS to sort the
run table. No external fonts, scripts or images, so the page opens offline and makes
no network request. Every value from a report is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from .schema import QAReport, RunSummary
from .thumbs import ramp_css

CSS = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1d232b;background:#f6f7f9}main{max-width:1180px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #d8dce2;
padding-bottom:3px}.sub{color:#5b6470}.badge{display:inline-block;padding:2px 10px;border-radius:10px;
font-weight:600;color:#fff;text-transform:uppercase;font-size:12px;letter-spacing:.04em}
.pass{background:#2e7d32}.warn{background:#c77700}.fail{background:#c62828}.info{background:#607080}
.none{background:#9aa3ad}ul.reasons{padding-left:0;list-style:none}ul.reasons li{margin:3px 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}th,td{padding:4px 8px;
border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}th{background:#eef0f3;position:sticky;top:0;
white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafbfc}
.grid{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;background:#fff;padding:8px;border:1px solid #e0e3e8;
border-radius:6px;flex:1 1 340px;max-width:560px}figure img{width:100%;image-rendering:pixelated;display:block;
background:repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 0 0/16px 16px}figcaption{color:#5b6470;font-size:12px;
margin-top:4px}.sw{display:inline-block;width:12px;height:12px;border:1px solid #999;vertical-align:-1px;
margin-right:4px}.ramp{height:10px;border:1px solid #999;margin-top:4px}.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #e0e3e8;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}.hist{display:flex;align-items:flex-end;height:90px;gap:2px;background:#fff;
padding:6px;border:1px solid #e0e3e8}.hist div{flex:1;background:#3b528b;min-height:1px}
.flag{color:#c62828;font-weight:600}details{margin:8px 0}summary{cursor:pointer;font-weight:600}
pre{white-space:pre-wrap;word-break:break-all;background:#fff;border:1px solid #e0e3e8;padding:8px;font-size:12px}
th.sortable{cursor:pointer;user-select:none}th.sortable:after{content:" \\2195";color:#9aa3ad}
.err{color:#8b1a1a;font-family:ui-monospace,monospace;font-size:12px}
"""

SORT_JS = """
(function(){var t=document.getElementById('scenes');if(!t){return;}var hs=t.tHead.rows[0].cells;
for(var i=0;i<hs.length;i++){(function(c){hs[c].classList.add('sortable');hs[c].addEventListener('click',function(){
var b=t.tBodies[0],rs=Array.prototype.slice.call(b.rows),d=hs[c].getAttribute('data-dir')==='asc'?-1:1;
rs.sort(function(x,y){var a=x.cells[c].getAttribute('data-v'),z=y.cells[c].getAttribute('data-v');
var na=parseFloat(a),nz=parseFloat(z);if(!isNaN(na)&&!isNaN(nz)){return (na-nz)*d;}return a.localeCompare(z)*d;});
rs.forEach(function(r){b.appendChild(r);});hs[c].setAttribute('data-dir',d===1?'asc':'desc');});})(i);}
document.documentElement.setAttribute('data-ready','1');})();
"""


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (), tid: str = "") -> str:
    num = set(numeric)
    th = "".join(f'<th class="n">{escape(h)}</th>' if i in num else f"<th>{escape(h)}</th>" for i, h in enumerate(head))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            html, sort = cell if isinstance(cell, tuple) else (escape(_fmt(cell)), cell)
            cls = ' class="n"' if i in num else ""
            cells.append(f'<td{cls} data-v="{escape(str(sort if sort is not None else ""))}">{html}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{tid}"' if tid else ""
    return f"<table{ident}><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    return _table(("", ""), ((k, v) for k, v in pairs))


def _page(title: str, body: str, script: str = "") -> str:
    js = f"<script>{script}</script>" if script else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>{body}</main>{js}</body></html>")


def _badge(status: str | None) -> str:
    s = status or "none"
    return f'<span class="badge {escape(s)}">{escape(status or "n/a")}</span>'


def _swatch(color: Sequence[int]) -> str:
    if len(color) < 3:
        return ""
    r, g, b = (int(x) for x in color[:3])
    return f'<span class="sw" style="background:rgb({r},{g},{b})"></span>'


# -- scene ----------------------------------------------------------------------------------
def scene_html(r: QAReport, images: Mapping[str, str]) -> str:
    """``qa.html`` for one scene; ``images`` maps caption -> data URI."""
    parts = [
        f"<h1>{escape(r.scene)} {_badge(r.verdict.status)}</h1>",
        f'<div class="sub">{escape(r.kind)} · {escape(r.input.path)} · report {escape(r.created)}</div>',
        _reasons(r), _pictures(r, images), "<h2>Classes</h2>", _classes(r), _confidence(r), _seams(r),
        "<h2>Checks</h2>",
        _table(("check", "result", "detail"), ((c.name, (_badge(c.status), c.status), c.detail) for c in r.checks)),
        "<h2>Performance</h2>", _performance(r), "<h2>Input</h2>", _input(r), "<h2>Model and settings</h2>",
        _model(r), _warnings(r),
    ]
    return _page(f"QA {r.scene}: {r.verdict.status}", "".join(parts))


def _reasons(r: QAReport) -> str:
    if not r.verdict.reasons:
        return "<p>No findings: every check and threshold passed.</p>"
    items = "".join(f"<li>{_badge(x.severity)} {escape(x.message)}</li>" for x in r.verdict.reasons)
    return f'<h2>Findings</h2><ul class="reasons">{items}</ul>'


def _pictures(r: QAReport, images: Mapping[str, str]) -> str:
    if not images:
        return ""
    figs = "".join(f'<figure><img alt="{escape(cap)}" src="{uri}"><figcaption>{escape(cap)}</figcaption></figure>'
                   for cap, uri in images.items())
    legend = " ".join(f"{_swatch(c.color)}{escape(c.name)}" for c in r.classes)
    ramp = (f'<div class="sub">confidence 0 → 1</div><div class="ramp" style="background:{ramp_css()}"></div>'
            if r.confidence else "")
    return f'<h2>Pictures</h2><div class="grid">{figs}</div><p>{legend}</p><div style="max-width:340px">{ramp}</div>'


def _classes(r: QAReport) -> str:
    vol = r.area.unit == "ml"
    size_head = "volume mL" if vol else "area ha"
    unit = "voxels" if r.kind == "volume" else "pixels"
    head = ("class", unit, "fraction", size_head, "components", f"largest ({unit})", "edge", "nodata edge",
            "mean conf.", "low conf.")

    def flag(v: bool) -> tuple[str, int]:
        return ('<span class="flag">touches</span>' if v else "no", int(v))

    rows = [((f"{_swatch(c.color)}{escape(c.name)}", c.name), c.pixels, (_pct(c.fraction), c.fraction),
             c.volume_ml if vol else c.area_ha, c.components, c.largest_component, flag(c.touches_border),
             flag(c.touches_nodata), c.mean_confidence, (_pct(c.low_confidence_fraction), c.low_confidence_fraction))
            for c in r.classes]
    note = f'<p class="sub">{escape(r.area.note)}</p>' if r.area.note else ""
    return _table(head, rows, numeric=(1, 2, 3, 4, 5, 8, 9)) + note


def _confidence(r: QAReport) -> str:
    c = r.confidence
    ent = f"mean entropy {_fmt(r.mean_entropy)} nats" if r.mean_entropy is not None else ""
    if c is None:
        return f"<h2>Confidence</h2><p>Not recorded for this scene. {escape(ent)}</p>"
    top = max(c.histogram) or 1
    bars = "".join(f'<div title="{i / len(c.histogram):.2f}–{(i + 1) / len(c.histogram):.2f}: {n:,}" '
                   f'style="height:{100 * n / top:.1f}%"></div>' for i, n in enumerate(c.histogram))
    cards = "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>' for k, v in (
        ("mean confidence", f"{c.mean:.3f}"), (f"below {c.low_threshold:.2f}", _pct(c.low_fraction)),
        ("mean entropy", _fmt(c.mean_entropy)),
    ))
    return (f'<h2>Confidence</h2><div class="cards">{cards}</div><p class="sub">Histogram of the max class '
            f'probability, 0 → 1</p><div class="hist">{bars}</div>')


def _seams(r: QAReport) -> str:
    s = r.seams
    if s is None:
        return ""
    score = "n/a (single tile)" if s.score is None else f"{s.score:.2f}"
    return ("<h2>Seams</h2><p>Prediction changes across tile borders versus elsewhere; about 1 is clean, "
            "higher means tiles disagree where they meet.</p>" + _kv((
                ("seam score", score), ("border disagreement rate", s.border_rate),
                ("interior disagreement rate", s.interior_rate), ("border pixel pairs", s.border_pairs),
                ("interior pixel pairs", s.interior_pairs))))


def _performance(r: QAReport) -> str:
    p = r.performance
    pairs = [(f"stage: {k}", f"{v:.2f} s") for k, v in p.stages_s.items()]
    pairs += [("total", f"{p.total_s:.2f} s" if p.total_s is not None else None),
              ("QA", f"{p.qa_s:.2f} s" if p.qa_s is not None else None),
              ("throughput", f"{p.mpix_per_s:.2f} Mpix/s" if p.mpix_per_s is not None else
               f"{p.slices_per_s:.2f} slices/s" if p.slices_per_s is not None else None),
              ("peak RAM", f"{p.peak_rss_mb:,.0f} MiB" if p.peak_rss_mb is not None else None),
              ("peak GPU memory", f"{p.peak_gpu_mb:,.0f} MiB" if p.peak_gpu_mb is not None else None),
              ("device / precision", f"{p.device or '–'} / {p.precision or '–'}"
                                       + (f" ({p.precision_reason})" if p.precision_reason else "")),
              ("tiles (skipped)", f"{_fmt(p.tiles_total)} ({_fmt(p.tiles_skipped)})")]
    return _kv(pairs)


def _input(r: QAReport) -> str:
    i = r.input
    size = " x ".join(str(x) for x in (i.width, i.height, i.depth) if x is not None)
    return _kv((("size", size), ("bands", ", ".join(map(str, i.bands)) or None), ("dtype", i.dtype),
                ("CRS", i.crs_name), ("transform", ", ".join(f"{x:g}" for x in i.transform) if i.transform else None),
                ("pixel size / spacing", ", ".join(f"{x:g}" for x in i.pixel_size) if i.pixel_size else None),
                ("orientation", i.orientation), ("nodata", i.nodata), ("valid fraction", _pct(i.valid_fraction)),
                ("valid pixels", i.valid_pixels)))


def _model(r: QAReport) -> str:
    m = r.model
    s = r.settings
    keys = ("tile", "overlap", "blend", "tta", "precision", "device", "batch_size", "confidence")
    return _kv([("checkpoint", m.path), ("sha256", m.sha256), ("classes", ", ".join(m.class_names))]
               + [(k, s.get(k)) for k in keys if k in s]) + (
        f"<details><summary>All settings</summary><pre>{escape(json.dumps(s, indent=2, default=str))}</pre></details>")


def _warnings(r: QAReport) -> str:
    if not r.warnings:
        return ""
    return "<h2>Warnings</h2><ul>" + "".join(f"<li>{escape(w)}</li>" for w in r.warnings) + "</ul>"


# -- run ------------------------------------------------------------------------------------
def run_html(s: RunSummary) -> str:
    """``run_report.html``: totals, the sortable scene table, failures and drift."""
    t = s.totals
    cards = [("scenes", t.scenes), ("complete", t.complete), ("failed", t.failed)]
    cards += [(k, t.verdicts.get(k, 0)) for k in ("pass", "warn", "fail")]
    cards += [("drift flags", t.drifted), ("duration", f"{t.duration_s:,.0f} s"), ("Mpix", f"{t.mpix:,.1f}")]
    card_html = "".join(f'<div class="card">{escape(k)}<b>{escape(_fmt(v))}</b></div>' for k, v in cards)
    parts = [f"<h1>Run {escape(s.run_id)}</h1>",
             f'<div class="sub">job {escape(s.job)} · built {escape(s.created)} · '
             f"{s.history_runs} earlier run(s) in the drift history</div>",
             f'<div class="cards" style="margin-top:10px">{card_html}</div>',
             "<h2>Scenes</h2><p class=\"sub\">Click a column to sort.</p>", _scene_table(s), _failures(s),
             _drift(s)]
    return _page(f"Run {s.run_id}", "".join(parts), SORT_JS)


_VRANK = {"fail": 0, "warn": 1, "pass": 2, None: 3}


def _scene_table(s: RunSummary) -> str:
    rows = []
    for r in s.rows:
        name = (f'<a href="{escape(r.qa_html)}">{escape(r.scene)}</a>' if r.qa_html else escape(r.scene), r.scene)
        reasons = r.reasons + [f"drift: {d}" for d in r.drift]
        main = sorted(((v, k) for k, v in r.class_areas_ha.items() if v is not None), reverse=True)[:3]
        areas = ", ".join(f"{k} {v:,.2f} ha" for v, k in main) or ", ".join(
            f"{k} {100 * v:.1f}%" for k, v in sorted(r.class_fractions.items(), key=lambda kv: -kv[1])[:3])
        rows.append((name, r.status, (_badge(r.verdict), _VRANK[r.verdict]),
                     ("<br>".join(escape(x) for x in reasons) or "–", len(reasons)),
                     (escape(areas) or "–", areas), r.duration_s))
    return _table(("scene", "status", "verdict", "reasons", "main classes", "duration s"), rows,
                  numeric=(5,), tid="scenes")


def _failures(s: RunSummary) -> str:
    failed = [r for r in s.rows if r.status == "failed"]
    if not failed:
        return ""
    items = "".join(f'<li><b>{escape(r.scene)}</b>: <span class="err">{escape(r.error or "unknown error")}</span></li>'
                    for r in failed)
    return f"<h2>Failed scenes</h2><ul>{items}</ul>"


def _drift(s: RunSummary) -> str:
    if not s.baseline:
        return ("<h2>Drift</h2><p>Not enough history yet: class fractions are compared with earlier runs "
                "of this job once there are enough of them.</p>")
    rows = [(k, b.runs, b.samples, (_pct(b.mean), b.mean), (_pct(b.sd), b.sd), (_pct(b.low), b.low),
             (_pct(b.high), b.high)) for k, b in s.baseline.items()]
    return ("<h2>Drift</h2><p>Per-class fraction of valid pixels in earlier runs; a scene outside "
            "[low, high] is flagged in the table.</p>"
            + _table(("class", "runs", "scenes", "mean", "sd", "low", "high"), rows, numeric=(1, 2, 3, 4, 5, 6)))
