"""Per run: ``run_report.html`` + ``run_summary.json`` at the run's output root.

Built from the per-scene ``qa.json`` files (so ``segpipe report RUN_DIR`` can rebuild
it at any time) plus the entries the batch flow knows about (failed scenes and their
errors). Each build records the run's class fractions in a history file, replacing
an earlier entry of the same run, and compares every scene with the earlier runs of
the same job (drift).

Prefect publishing lives in ``flows``; :func:`run_artifacts` gives it prefect-free
rows (plain floats and strings) and a markdown summary.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ..files import RECORD_NAME, STATE, FileLock, remove_partials, write_json_atomic, write_text_atomic
from .drift import HistoryEntry, baseline, drift_flags, earlier_runs
from .html_run import run_html
from .read import read_json
from .schema import (QA_HTML, QA_JSON, RUN_REPORT_HTML, RUN_SUMMARY_JSON, SCHEMA_VERSION, QAReport, QAThresholds,
                     RunRow, RunSummary, RunTotals)
from .verdict import VERDICT_RANK, decide

log = logging.getLogger(__name__)

ERROR_JSON = "error.json"
HISTORY = Path(STATE) / "history.jsonl"
REPORT_LOCK_WAIT_S = 600.0  # another run writing the same report: it takes seconds


@dataclass(frozen=True)
class SceneEntry:
    """A scene as the batch flow saw it: where its outputs are, or why it failed."""

    scene: str
    scene_dir: Path | None = None
    status: Literal["complete", "failed", "skipped"] = "complete"
    error: str | None = None
    duration_s: float | None = None


def error_path(scene_dir: Path) -> Path:
    """Where a failed scene's last error is kept: beside its folder, which stays as it was."""
    return scene_dir.parent / STATE / "errors" / f"{scene_dir.name}.json"


def write_scene_error(scene_dir: str | Path, error: BaseException | str) -> Path:
    """Keep a failed scene's error so a rebuilt report still lists the failure (the next success removes it).

    Not in the scene's folder: a failed re-run leaves the last good outputs exactly as they were.
    """
    path = error_path(Path(scene_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    msg = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return write_json_atomic(path, {"error": msg, "time": _now()})


def collect_scene_entries(run_root: str | Path) -> list[SceneEntry]:
    """Scenes under ``run_root``: folders with a qa.json or record.json, and failures on record.

    A failure on record is the scene's last attempt: it is listed as failed even where the
    folder still holds an earlier run's good outputs.
    """
    run_root = Path(run_root)
    found = {d.name: d for d in run_root.iterdir() if d.is_dir() and not d.name.startswith(".")
             and ((d / QA_JSON).is_file() or (d / RECORD_NAME).is_file() or (d / ERROR_JSON).is_file())}
    found.update({p.stem: run_root / p.stem for p in (run_root / STATE / "errors").glob("*.json")})
    entries = []
    for name, d in sorted(found.items()):
        err = read_json(error_path(d)) or (read_json(d / ERROR_JSON) if not (d / RECORD_NAME).is_file() else None)
        if err is not None:
            entries.append(SceneEntry(name, d, "failed", str(err.get("error", "unknown error"))))
        else:
            entries.append(SceneEntry(name, d, "complete"))
    return entries


def write_run_report(run_root: str | Path, scene_entries: Sequence[SceneEntry] | None = None, *,
                     run_id: str | None = None, job: str = "default", history_path: str | Path | None = None,
                     thresholds: QAThresholds | None = None, update_history: bool = True,
                     redecide: bool = False, tz: Any = None) -> tuple[Path, Path]:
    """Build the run report; returns (run_report.html, run_summary.json).

    Args:
        run_root: the run's output root (scene folders below it).
        scene_entries: what the flow knows (default: scanned from ``run_root``).
        run_id: this run's id (default: the folder name).
        job: the job name; drift compares runs of the same job only.
        history_path: the job's history (default ``run_root/.segpipe/history.jsonl``; pass a
            path shared by the job's runs when each run writes to a new root).
        thresholds: drift settings, and the thresholds to re-decide verdicts with when ``redecide``.
        update_history: add/replace this run's entry in the history.
        tz: the time zone the page shows times in (``tzinfo`` or IANA name, e.g. the job's
            schedule zone; default: this machine's). ``run_summary.json`` keeps UTC.
    """
    run_root = Path(run_root)
    lock = FileLock(run_root / STATE / "locks" / "run_report.lock")
    if lock.acquire(wait_s=REPORT_LOCK_WAIT_S):  # two runs writing the report: one after the other
        remove_partials(run_root)  # left by a killed report write; nobody else writes them now
        remove_partials(run_root / STATE)
    else:
        log.warning("%s: the run report is still locked by %s; writing it anyway", run_root, lock.holder())
    try:
        return _write_run_report(run_root, scene_entries, run_id, job, history_path, thresholds, update_history,
                                 redecide, tz)
    finally:
        lock.release()


def _write_run_report(run_root: Path, scene_entries: Sequence[SceneEntry] | None, run_id: str | None, job: str,
                      history_path: str | Path | None, thresholds: QAThresholds | None, update_history: bool,
                      redecide: bool, tz: Any) -> tuple[Path, Path]:
    entries = list(scene_entries) if scene_entries is not None else collect_scene_entries(run_root)
    run_id = run_id or run_root.name
    th = thresholds or QAThresholds()
    hist_path = Path(history_path) if history_path else run_root / HISTORY
    history = read_history(hist_path)
    rows = [_row(run_root, e, th if redecide else None) for e in entries]
    earlier = earlier_runs(history, job, run_id)
    summary = summarize(rows, run_id=run_id, job=job, earlier=earlier, thresholds=th)
    json_path = write_json_atomic(run_root / RUN_SUMMARY_JSON, summary.model_dump(mode="json"))
    html_path = write_text_atomic(run_root / RUN_REPORT_HTML, run_html(summary, tz))
    if update_history:
        write_history(hist_path, history, history_entry(summary))
    return html_path, json_path


def load_run_summary(path: str | Path) -> RunSummary:
    return RunSummary.model_validate_json(Path(path).read_text())


# -- rows -------------------------------------------------------------------------------------
def _row(run_root: Path, e: SceneEntry, redecide: QAThresholds | None) -> RunRow:
    """A failed scene as the flow reported it; a finished or skipped (up to date) one from its qa.json."""
    report = load_report(e.scene_dir / QA_JSON) if e.scene_dir is not None and e.status != "failed" else None
    if e.status == "skipped" and report is not None:
        return _report_row(run_root, e, report, redecide).model_copy(update={"status": "skipped"})
    if e.status != "complete" or e.scene_dir is None:
        return RunRow(scene=e.scene, status=e.status, error=e.error, duration_s=e.duration_s)
    return _report_row(run_root, e, report, redecide)


def _report_row(run_root: Path, e: SceneEntry, report: QAReport | None, redecide: QAThresholds | None) -> RunRow:
    assert e.scene_dir is not None
    record = read_json(e.scene_dir / RECORD_NAME) or {}
    duration = e.duration_s if e.duration_s is not None else record.get("timings", {}).get("total_s")
    if report is None:
        return RunRow(scene=e.scene, status="no-qa", duration_s=duration,
                      error=None if record else "no qa.json and no record.json")
    if redecide is not None:
        report = report.model_copy(update={"verdict": decide(report, redecide)})
    row = report_row(report, _rel(e.scene_dir / QA_HTML, run_root), duration)
    return row.model_copy(update={"scene": e.scene})  # a series' qa.json is its worst volume's, titled "name t3"


def load_report(path: Path) -> QAReport | None:
    """A scene's qa.json, or None when missing, unreadable or of another schema version."""
    doc = read_json(path)
    if doc is None:
        return None
    if doc.get("schema_version") != SCHEMA_VERSION:
        log.warning("%s: schema_version %s, expected %s; skipped", path, doc.get("schema_version"), SCHEMA_VERSION)
        return None
    try:
        return QAReport.model_validate(doc)
    except ValidationError as exc:
        log.warning("%s: not a valid QA report (%s); skipped", path, exc.error_count())
        return None


def report_row(r: QAReport, qa_html: str | None, duration_s: float | None) -> RunRow:
    """A run-table row from a scene's report (compute)."""
    empty = r.input.valid_pixels == 0
    return RunRow(
        scene=r.scene, status="complete", verdict=r.verdict.status,
        reasons=[x.message for x in r.verdict.reasons if x.severity != "info"],
        class_fractions={} if empty else {c.name: c.fraction for c in r.classes},
        class_areas_ha={c.name: c.area_ha for c in r.classes} if r.area.unit == "m2" else {},
        class_volumes_ml={c.name: c.volume_ml for c in r.classes} if r.area.unit == "ml" else {},
        background=r.classes[0].name if r.classes else None, thumbnail=r.thumbnail, finished=r.created,
        duration_s=duration_s if duration_s is not None else r.performance.total_s,
        mpix=r.input.width * r.input.height * (r.input.depth or 1) / 1e6, qa_html=qa_html,
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.resolve().as_uri()


# -- summary (compute) --------------------------------------------------------------------------
def summarize(rows: list[RunRow], *, run_id: str, job: str, earlier: Sequence[HistoryEntry],
              thresholds: QAThresholds) -> RunSummary:
    """Totals and drift for the rows; a drift flag raises a scene's verdict to ``thresholds.drift``."""
    base = baseline(earlier, thresholds)
    out = []
    for r in rows:
        flags = drift_flags(r.class_fractions, base) if r.status == "complete" else []
        verdict = r.verdict
        if flags and verdict is not None and VERDICT_RANK.get(thresholds.drift, 0) > VERDICT_RANK[verdict]:
            verdict = thresholds.drift
        out.append(r.model_copy(update={"drift": flags, "verdict": verdict}))
    totals = RunTotals(
        scenes=len(out), complete=sum(r.status == "complete" for r in out),
        failed=sum(r.status == "failed" for r in out),
        verdicts={v: sum(r.verdict == v for r in out) for v in ("pass", "warn", "fail")},
        drifted=sum(bool(r.drift) for r in out), duration_s=float(sum(r.duration_s or 0.0 for r in out)),
        mpix=float(sum(r.mpix or 0.0 for r in out)), area_ha=_area_totals(out),
    )
    return RunSummary(run_id=run_id, job=job, created=_now(), totals=totals, rows=out, baseline=base,
                      history_runs=len(earlier))


def _area_totals(rows: Iterable[RunRow]) -> dict[str, float]:
    tot: dict[str, float] = {}
    for r in rows:
        for k, v in r.class_areas_ha.items():
            if v is not None:
                tot[k] = tot.get(k, 0.0) + v
    return tot


def run_artifacts(s: RunSummary, max_rows: int = 50) -> tuple[list[dict[str, Any]], str]:
    """Rows for a Prefect table artifact (plain JSON types) and a markdown summary."""
    rows = [{"scene": r.scene, "status": r.status, "verdict": r.verdict or "",
             "reasons": "; ".join(r.reasons + r.drift),
             "duration_s": float(round(r.duration_s or 0.0, 2)), "qa_html": r.qa_html or "", "error": r.error or ""}
            for r in s.rows]
    t = s.totals
    lines = [f"**Run {s.run_id}** (job `{s.job}`): {t.scenes} scene(s), {t.complete} complete, {t.failed} failed; "
             f"verdicts: {t.verdicts.get('pass', 0)} pass, {t.verdicts.get('warn', 0)} warn, "
             f"{t.verdicts.get('fail', 0)} fail; drift flags: {t.drifted}.", ""]
    attention = [r for r in s.rows if r.status == "failed" or r.verdict in ("warn", "fail")]
    if attention:
        lines += ["| scene | status | verdict | why |", "| --- | --- | --- | --- |"]
        for r in attention[:max_rows]:
            why = "; ".join(r.reasons + r.drift) or (r.error or "")
            lines.append(f"| {_md(r.scene)} | {r.status} | {r.verdict or ''} | {_md(why)} |")
        if len(attention) > max_rows:
            lines.append(f"\n... and {len(attention) - max_rows} more in run_report.html")
    else:
        lines.append("Every scene passed.")
    return rows, "\n".join(lines)


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


# -- history ----------------------------------------------------------------------------------
def history_entry(s: RunSummary) -> dict[str, Any]:
    """This run's class fractions per scene (empty scenes left out: they would skew the baseline)."""
    scenes = {r.scene: r.class_fractions for r in s.rows if r.status == "complete" and r.class_fractions}
    return {"job": s.job, "run_id": s.run_id, "created": s.created, "scenes": scenes}


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                log.warning("%s:%d: unreadable history line skipped", path, n)
    return out


def write_history(path: Path, history: list[dict[str, Any]], entry: dict[str, Any]) -> Path:
    """Replace the entry of the same job and run (a rebuilt report), else append; atomically."""
    key = (entry["job"], entry["run_id"])
    replaced = [entry if (h.get("job"), h.get("run_id")) == key else h for h in history]
    if key not in {(h.get("job"), h.get("run_id")) for h in history}:
        replaced.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, "".join(json.dumps(h) + "\n" for h in replaced))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
