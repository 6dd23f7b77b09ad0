"""QA without ground truth: per-scene ``qa.json`` + ``qa.html`` and a per-run report.

Statistics are gathered while the engine streams its output (:class:`SceneQA` is a
row observer; volumes feed it slice by slice), so QA never needs the whole output in
memory. At the end of a scene :func:`finalize_scene_qa` checks the written files,
draws thumbnails, decides ``pass | warn | fail`` from :class:`QAThresholds` and writes
the two files; :func:`write_run_report` gathers a whole run.

    stats.py / components.py / seams.py / area.py   streaming accumulators (compute)
    verdict.py / drift.py / build.py / thumbs.py / html.py   decisions, pictures, pages (compute)
    planes.py / charts.py                                 volume planes, histograms (compute)
    checks.py / read.py                                    output checks, decimated reads (I/O)
    scene_report.py / run_report.py                       the two entry points (write files)
    schema.py                                             the versioned JSON documents

The names below are imported on first use (PEP 562): ``pipeline.qa.schema`` is what the
CLI and job configs need to build their parsers, and it must not pull in torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS = {
    "PixelArea": "area", "pixel_area": "area", "voxel_volume": "area",
    "CHECKS": "checks", "CheckContext": "checks", "run_checks": "checks",
    "StreamingComponents": "components",
    "SceneEntry": "run_report", "collect_scene_entries": "run_report", "load_run_summary": "run_report",
    "run_artifacts": "run_report", "write_run_report": "run_report", "write_scene_error": "run_report",
    "QAResult": "scene_report", "finalize_scene_qa": "scene_report",
    "SCHEMA_VERSION": "schema", "CheckResult": "schema", "QAReport": "schema", "QAThresholds": "schema",
    "RunSummary": "schema", "Verdict": "schema",
    "SeamAccumulator": "seams", "SceneQA": "stats", "RULES": "verdict", "decide": "verdict",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .area import PixelArea, pixel_area, voxel_volume
    from .checks import CHECKS, CheckContext, run_checks
    from .components import StreamingComponents
    from .run_report import (SceneEntry, collect_scene_entries, load_run_summary, run_artifacts, write_run_report,
                             write_scene_error)
    from .scene_report import QAResult, finalize_scene_qa
    from .schema import SCHEMA_VERSION, CheckResult, QAReport, QAThresholds, RunSummary, Verdict
    from .seams import SeamAccumulator
    from .stats import SceneQA
    from .verdict import RULES, decide
