"""The one call at the end of a scene: checks, pictures, verdict, ``qa.json`` + ``qa.html``.

The run (``pipeline.run``) calls :func:`finalize_scene_qa` after the outputs are finished
and before ``record.json`` is written, so a scene with a record always has its QA report
beside it; :func:`failed_scene_qa` writes the report of a scene whose QA failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..files import write_json_atomic, write_text_atomic
from ..readers.vsi import as_input
from .build import build_report
from .checks import CheckContext, ExtraCheck, run_checks
from .html import scene_html
from .pictures import scene_pictures, volume_pictures
from .planes import VIEWS, Plane, orient
from .schema import QA_JSON, AreaInfo, QAReport, QAThresholds, Reason, Verdict
from .stats import QAStats, SceneQA
from .verdict import decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QAResult:
    report: QAReport
    json_path: Path
    html_path: Path

    @property
    def verdict(self) -> str:
        return self.report.verdict.status

    def record_entry(self) -> dict[str, Any]:
        """What ``record.json`` keeps about QA (the full report is in ``qa.json``)."""
        return {"verdict": self.verdict, "reasons": [r.message for r in self.report.verdict.reasons
                                                      if r.severity != "info"],
                "json": self.json_path.name, "html": self.html_path.name}


def finalize_scene_qa(qa: SceneQA, *, scene_dir: str | Path, record: Mapping[str, Any],
                      outputs: Mapping[str, str | Path], thresholds: QAThresholds | None = None,
                      input_path: str | Path | None = None, checks: tuple[str, ...] | None = None,
                      extra_checks: Mapping[str, ExtraCheck] | None = None,
                      planes: Mapping[str, Plane] | None = None, stem: str = Path(QA_JSON).stem,
                      title: str | None = None, tz: Any = None) -> QAResult:
    """Close ``qa``, check the outputs, draw the pictures, decide and write the report.

    Args:
        qa: the accumulator that observed every row band (or slice).
        scene_dir: the scene's output folder; ``qa.json`` and ``qa.html`` go there
            (``<stem>.json`` / ``<stem>.html``: one volume of a series writes ``qa_t3.*``).
        title: the name the report gives the scene (default: the folder's name).
        record: the record as built so far (input, model, settings, timings, facts, warnings).
        outputs: output name -> path (as the run produced them).
        thresholds: the job's ``QAThresholds`` (defaults when None).
        input_path: the input file (default: ``record["input"]["path"]``).
        checks: names from ``pipeline.qa.checks.CHECKS`` to run (default: all).
        extra_checks: further checks, e.g. ``{"nifti_header": fn}`` from the volume path.
        planes: volumes: the centre planes (:func:`pipeline.qa.planes.centre_planes`); the
            confidence of each comes from ``qa`` when it kept it.
        tz: the time zone the page shows times in (a ``tzinfo`` or IANA name; default: this
            machine's); ``qa.json`` keeps UTC.
    """
    t0 = time.perf_counter()
    th = thresholds or QAThresholds()
    scene_dir = Path(scene_dir)
    input_path = as_input(input_path or record.get("input", {}).get("path", ""))  # a GDAL path stays a str
    outs = {k: Path(v) if Path(v).is_absolute() else scene_dir / v for k, v in outputs.items()}
    stats = qa.result(low_confidence=th.low_confidence)
    results = run_checks(CheckContext(input_path, scene_dir, outs), checks, extra_checks)
    colors = qa.colors or record.get("model", {}).get("class_colors", [])
    if planes is None:
        pictures, thumb = scene_pictures(stats, input_path, record, colors)
    else:
        pictures, thumb = volume_pictures(_with_confidence(planes, stats), colors, len(qa.class_names))
    report = build_report(stats, record, results, title or scene_dir.name, outs, 0.0)
    report = report.model_copy(update={"verdict": decide(report, th), "thumbnail": thumb})
    perf = report.performance.model_copy(update={"qa_s": stats.observe_s + time.perf_counter() - t0})
    report = report.model_copy(update={"performance": perf})
    json_path = write_json_atomic(scene_dir / f"{stem}.json", report.model_dump(mode="json"))
    html_path = write_text_atomic(scene_dir / f"{stem}.html", scene_html(report, pictures, tz=tz))
    log.info("%s: QA %s (%d reason(s))", scene_dir.name, report.verdict.status, len(report.verdict.reasons))
    return QAResult(report, json_path, html_path)


def _with_confidence(planes: Mapping[str, Plane], stats: QAStats) -> dict[str, Plane]:
    """The planes with the confidence the streaming pass kept, oriented the same way."""
    if stats.confidence_planes is None:
        return dict(planes)
    out = {}
    for name, p in planes.items():
        conf = stats.confidence_planes.get(VIEWS[name][0])
        if p.confidence is None and conf is not None:
            p = replace(p, confidence=orient(name, conf, p.zooms)[0])
        out[name] = p
    return out


def failed_scene_qa(error: str, *, scene_dir: str | Path, record: Mapping[str, Any],
                    outputs: Mapping[str, str | Path], thresholds: QAThresholds | None = None,
                    stem: str = Path(QA_JSON).stem, title: str | None = None, tz: Any = None) -> QAResult:
    """The report of a scene whose QA could not be completed (``error``): verdict ``fail``.

    The outputs were written; their checks still run, and the facts the record holds are
    shown, but there are no statistics (no classes, confidence or seams).
    """
    scene_dir = Path(scene_dir)
    inp, facts = record.get("input", {}), record.get("facts", {})
    outs = {k: Path(v) if Path(v).is_absolute() else scene_dir / v for k, v in outputs.items()}
    results = run_checks(CheckContext(as_input(inp.get("path", "")), scene_dir, outs))
    total = int(inp.get("width", 0)) * int(inp.get("height", 0)) * int(inp.get("depth") or 1)
    stats = QAStats(kind=record.get("kind", "scene"), valid_pixels=int(facts.get("valid_pixels", 0)),
                    total_pixels=total, area=AreaInfo(unit="pixel", note="QA failed: no statistics"), classes=[],
                    confidence=None, mean_entropy=None, seams=None, label_thumb=None, unsure_thumb=None,
                    observe_s=0.0)
    report = build_report(stats, record, results, title or scene_dir.name, outs, 0.0)
    reason = Reason(code="qa_failed", severity="fail",
                    message=f"QA could not be completed ({error}); the outputs were written and checked, "
                            "but no statistics were gathered")
    report = report.model_copy(update={"verdict": Verdict(status="fail", reasons=[reason])})
    json_path = write_json_atomic(scene_dir / f"{stem}.json", report.model_dump(mode="json"))
    html_path = write_text_atomic(scene_dir / f"{stem}.html", scene_html(report, [], tz=tz))
    log.warning("%s: QA failed (%s); report %s", scene_dir.name, error, html_path.name)
    return QAResult(report, json_path, html_path)
