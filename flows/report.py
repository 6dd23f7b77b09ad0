"""The batch's run report and its Prefect artifacts: the one place outcomes are handed over.

:func:`publish_run_report` is the single call site of the QA run report (issue 5):
``pipeline.qa.run_report.write_run_report`` writes ``run_report.html`` and
``run_summary.json`` at the run root from the scenes' ``qa.json`` files and what the
flow knows (failures and their errors, skipped scenes). This module then publishes a
run-summary table (scene, status, duration, main class areas, QA verdict, output paths,
the worker process that ran it),
the QA markdown summary and a link to the HTML report.

A failure while building the report is logged, never raised: the night's segmentations
are on disk and the batch's state must say whether *they* succeeded.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.qa.html_run import verdict_line
from pipeline.qa.run_report import (SceneEntry, load_run_summary, run_artifacts, write_run_report,
                                    write_scene_error)
from pipeline.qa.schema import RUN_REPORT_HTML, QAThresholds

from .scenes import SceneOutcome

log = logging.getLogger(__name__)

TOP_CLASSES = 3  # "main class areas": the largest few classes of each scene
_KEY_BAD = re.compile(r"[^a-z0-9]+")
# Our outcome status -> the run report's row status.
_ROW_STATUS = {"done": "complete", "skipped": "skipped", "failed": "failed"}


def artifact_key(kind: str, run_root: str | Path) -> str:
    """A Prefect artifact key (``^[a-z0-9-]*$``) unique per output root, so each job has its history.

    The root's name makes it readable, a digest of its whole path unique: two jobs whose
    output roots share a name (``/a/results``, ``/b/results``) keep separate histories.
    """
    root = Path(run_root).expanduser().absolute()
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    slug = _KEY_BAD.sub("-", f"segpipe-{kind}-{root.name}".lower()).strip("-")[:90].rstrip("-")
    return f"{slug}-{digest}"


def counts(outcomes: Sequence[SceneOutcome]) -> dict[str, Any]:
    c = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    return {**c, "total": len(outcomes), "qa_fail": sum(o.qa_verdict == "fail" for o in outcomes)}


def publish_run_report(run_root: str | Path, outcomes: Sequence[SceneOutcome], *, run_id: str, job: str,
                       thresholds: QAThresholds | None = None, tz: Any = None) -> dict[str, Any]:
    """Write the run report and publish the artifacts (inside a Prefect run); returns the counts.

    Args:
        run_id: unique per run (the history keeps one entry per run id).
        job: the job's name; drift compares runs of the same job.
        tz: the zone the report shows times in (the job's schedule zone; default: this machine's).
    """
    run_root = Path(run_root)
    summary = None
    try:
        summary = _write_report(run_root, outcomes, run_id, job, thresholds, tz)
    except Exception:  # noqa: BLE001 - see module docstring
        log.exception("%s: could not build the run report", run_root)
    _publish_artifacts(run_root, outcomes, summary)
    c = counts(outcomes)
    c["verdicts"] = verdict_line(summary)[0] if summary is not None else ""  # the run report's own words
    return c


def _write_report(run_root: Path, outcomes: Sequence[SceneOutcome], run_id: str, job: str,
                  thresholds: QAThresholds | None, tz: Any = None) -> Any:
    for o in outcomes:
        if o.status == "failed":
            write_scene_error(o.scene_dir, o.error)  # a rebuilt report (segpipe report) still lists it
    entries = [SceneEntry(o.name, Path(o.scene_dir), _ROW_STATUS[o.status], o.error or None, float(o.duration_s))
               for o in outcomes]
    run_root.mkdir(parents=True, exist_ok=True)
    _, json_path = write_run_report(run_root, entries, run_id=run_id, job=job, thresholds=thresholds, tz=tz)
    return load_run_summary(json_path)


def summary_rows(outcomes: Sequence[SceneOutcome], summary: Any) -> list[dict[str, Any]]:
    """The run-summary table: one row per scene, plain JSON types only."""
    by_scene = {r.scene: r for r in summary.rows} if summary is not None else {}
    rows = []
    for o in outcomes:
        r = by_scene.get(o.name)
        rows.append({
            "scene": o.name, "status": o.status, "duration_s": round(float(o.duration_s), 2),
            "main_classes": r.main_classes(TOP_CLASSES) if r is not None else "",
            "qa_verdict": (r.verdict if r is not None else None) or ("fail" if o.status == "failed" else "-"),
            "error": o.error,
            "outputs": ", ".join(v for k, v in o.outputs.items() if k != "record"),
            "worker": o.worker or "batch process",
        })
    return _plain(rows)


def _publish_artifacts(run_root: Path, outcomes: Sequence[SceneOutcome], summary: Any) -> None:
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    c = counts(outcomes)
    create_table_artifact(
        summary_rows(outcomes, summary), key=artifact_key("run-summary", run_root),
        description=f"{c['done']} done, {c['skipped']} skipped, {c['failed']} failed of {c['total']} ({run_root})")
    if summary is None:
        return
    _, markdown = run_artifacts(summary)
    create_markdown_artifact(markdown, key=artifact_key("qa", run_root), description=f"QA of {run_root}")
    report = run_root / RUN_REPORT_HTML
    if report.exists():
        create_link_artifact(report.resolve().as_uri(), link_text=report.name,
                             key=artifact_key("run-report", run_root), description=f"run report of {run_root}")


def _plain(value: Any) -> Any:
    """Numpy scalars and paths to plain JSON types (Prefect and json refuse numpy.float32)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return float(value) if isinstance(value, np.floating) else value.item()
    if isinstance(value, Path):
        return str(value)
    return value
