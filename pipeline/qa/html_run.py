"""``run_report.html``: the night at a glance (compute: strings only).

A banner says in one sentence what needs a look ("2 scenes failed, 1 QA fail"); the table
lists failures first, then QA fails and warnings, each row with a small mask picture, the
reasons (a failed scene's error), the main classes other than background in ha or mL, and
when it finished, in the job's time zone.
"""

from __future__ import annotations

from datetime import tzinfo
from html import escape

from .html import badge, fmt, local_time, page, pct, table
from .schema import RunRow, RunSummary

SORT_JS = """
(function(){var t=document.getElementById('scenes');if(!t){return;}var hs=t.tHead.rows[0].cells;
for(var i=0;i<hs.length;i++){(function(c){hs[c].classList.add('sortable');hs[c].addEventListener('click',function(){
var b=t.tBodies[0],rs=Array.prototype.slice.call(b.rows),d=hs[c].getAttribute('data-dir')==='asc'?-1:1;
rs.sort(function(x,y){var a=x.cells[c].getAttribute('data-v'),z=y.cells[c].getAttribute('data-v');
var na=parseFloat(a),nz=parseFloat(z);if(!isNaN(na)&&!isNaN(nz)){return (na-nz)*d;}return a.localeCompare(z)*d;});
rs.forEach(function(r){b.appendChild(r);});hs[c].setAttribute('data-dir',d===1?'asc':'desc');});})(i);}
document.documentElement.setAttribute('data-ready','1');})();
"""

# Row order: what needs a look first. A failed scene, then QA fail, warn, no QA, pass / skipped.
_ATTENTION = {"failed": 0, "fail": 1, "warn": 2, "no-qa": 3}


def attention(r: RunRow) -> int:
    if r.status in ("failed", "no-qa"):
        return _ATTENTION[r.status]
    return _ATTENTION.get(r.verdict or "", 4)


def verdict_line(s: RunSummary) -> tuple[str, str]:
    """(the banner's sentence, its colour class): '2 scenes failed, 1 QA fail, 3 QA warn'."""
    t = s.totals
    no_qa = sum(r.status == "no-qa" for r in s.rows)
    parts = [f"{t.failed} scene{'s' if t.failed != 1 else ''} failed" if t.failed else "",
             f"{t.verdicts.get('fail', 0)} QA fail" if t.verdicts.get("fail") else "",
             f"{t.verdicts.get('warn', 0)} QA warn" if t.verdicts.get("warn") else "",
             f"{no_qa} without a QA report" if no_qa else "",
             f"{t.drifted} drift flag{'s' if t.drifted != 1 else ''}" if t.drifted else ""]
    parts = [p for p in parts if p]
    if not parts:
        said = {0: "No scenes in this run", 1: "The scene passed QA"}.get(t.scenes, f"All {t.scenes} scenes passed QA")
        return said, "pass"
    cls = "fail" if t.failed or t.verdicts.get("fail") else "warn"
    return ", ".join(parts), cls


def run_html(s: RunSummary, tz: tzinfo | str | None = None) -> str:
    """The page: banner, totals, the scene table (failures first), failures, drift."""
    t = s.totals
    sentence, cls = verdict_line(s)
    ok = t.verdicts.get("pass", 0)
    banner = (f'<div class="banner {cls}">{escape(sentence)}<small>{t.scenes} scene(s): {t.complete} complete, '
              f"{sum(r.status == 'skipped' for r in s.rows)} up to date (skipped), {t.failed} failed; "
              f"{ok} passed QA</small></div>")
    cards = [("scenes", t.scenes), ("complete", t.complete), ("failed", t.failed)]
    cards += [(f"QA {k}", t.verdicts.get(k, 0)) for k in ("pass", "warn", "fail")]
    cards += [("drift flags", t.drifted), ("duration", f"{t.duration_s:,.0f} s"), ("Mpix", f"{t.mpix:,.1f}")]
    card_html = "".join(f'<div class="card">{escape(k)}<b>{escape(fmt(v))}</b></div>' for k, v in cards)
    parts = [f"<h1>Run {escape(s.run_id)}</h1>",
             f'<div class="sub">job {escape(s.job)} · built {escape(local_time(s.created, tz))} · '
             f"{s.history_runs} earlier run(s) in the drift history</div>", banner,
             f'<div class="cards" style="margin-top:10px">{card_html}</div>',
             "<h2>Scenes</h2><p class=\"sub\">What needs a look comes first. Click a column to sort.</p>",
             _scene_table(s, tz), _failures(s), _drift(s)]
    return page(f"Run {s.run_id}: {sentence}", "".join(parts), SORT_JS)


def _scene_table(s: RunSummary, tz: tzinfo | str | None) -> str:
    rows = []
    for r in sorted(s.rows, key=lambda r: (attention(r), r.scene)):
        thumb = f'<img class="thumb" alt="mask of {escape(r.scene)}" src="{r.thumbnail}">' if r.thumbnail else ""
        name = f'<a href="{escape(r.qa_html)}">{escape(r.scene)}</a>' if r.qa_html else escape(r.scene)
        reasons = [escape(x) for x in r.reasons + [f"drift: {d}" for d in r.drift]]
        if r.error:
            reasons.insert(0, f'<span class="err">{escape(r.error)}</span>')
        main = r.main_classes()
        finished = f'<span class="nowrap">{escape(local_time(r.finished, tz, short=True))}</span>'
        rows.append(((thumb, r.scene), (name, r.scene), (badge(r.status), r.status),
                     (badge(r.verdict) if r.verdict else "–", attention(r)),
                     ("<br>".join(reasons) or "–", len(reasons)),
                     (escape(main) or "–", main), (finished, r.finished or ""),
                     (fmt(r.duration_s, 1), r.duration_s)))
    return table(("mask", "scene", "status", "verdict", "reasons", "main classes", "finished", "duration s"), rows,
                 numeric=(7,), tid="scenes")


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
    rows = [(k, b.runs, b.samples, (pct(b.mean), b.mean), (pct(b.sd), b.sd), (pct(b.low), b.low),
             (pct(b.high), b.high)) for k, b in s.baseline.items()]
    return ("<h2>Drift</h2><p>Per-class fraction of valid pixels in earlier runs; a scene outside "
            "[low, high] is flagged in the table.</p>"
            + table(("class", "runs", "scenes", "mean", "sd", "low", "high"), rows, numeric=(1, 2, 3, 4, 5, 6)))
