"""QA without ground truth: per-scene ``qa.json`` + ``qa.html`` and a per-run report.

Statistics are gathered while the engine streams its output (:class:`SceneQA` is a
row observer; volumes feed it slice by slice), so QA never needs the whole output in
memory. At the end of a scene :func:`finalize_scene_qa` checks the written files,
draws thumbnails, decides ``pass | warn | fail`` from :class:`QAThresholds` and writes
the two files; :func:`write_run_report` gathers a whole run.

    stats.py / components.py / seams.py / area.py   streaming accumulators (compute)
    verdict.py / drift.py / build.py / thumbs.py / html.py   decisions, pictures, pages (compute)
    checks.py / read.py                                    output checks, decimated reads (I/O)
    scene_report.py / run_report.py                       the two entry points (write files)
    schema.py                                             the versioned JSON documents
"""

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

__all__ = [
    "CHECKS", "RULES", "SCHEMA_VERSION", "CheckContext", "CheckResult", "PixelArea", "QAReport", "QAResult",
    "QAThresholds", "RunSummary", "SceneEntry", "SceneQA", "SeamAccumulator", "StreamingComponents", "Verdict",
    "collect_scene_entries", "decide", "finalize_scene_qa", "load_run_summary", "pixel_area", "run_artifacts",
    "run_checks", "voxel_volume", "write_run_report", "write_scene_error",
]
