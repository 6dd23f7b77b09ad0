"""QA reports at the end of a run: written before the record, and never at the cost of the outputs.

QA is best effort twice over. Its streaming observer runs behind the sinks (``sinks.Watched``):
one that raises is switched off and the outputs are still written. Its final step
(:func:`qa_entry`) is recorded, not raised. Either way the scene gets a QA report that says
QA failed and why (verdict ``fail``), and the record keeps the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import write_text_atomic
from ..qa import QAThresholds, SceneQA, finalize_scene_qa
from ..qa.planes import Plane
from ..qa.schema import QA_HTML, QA_JSON
from ..qa.scene_report import failed_scene_qa
from ..qa.verdict import VERDICT_RANK
from ..readers.vsi import InputPath
from ..sinks import Watched

log = logging.getLogger(__name__)

@dataclass
class ImageQA:
    """What one image's QA report needs once the record is complete."""

    qa: SceneQA
    watched: Watched
    outputs: dict[str, Path]
    tag: str = ""  # "" for a scene or a single volume, "t<i>" for volume i of a series
    index: int | None = None
    planes: dict[str, Plane] | None = None
    extra_checks: dict[str, Callable[[], list[str]]] | None = None
    input: InputPath | None = None  # the input as opened (the record keeps a URL without its credentials)


def qa_entry(record: dict[str, Any], item: ImageQA, scene_dir: Path, thresholds: QAThresholds | None,
             stem: str = Path(QA_JSON).stem, title: str | None = None) -> dict[str, Any]:
    """Write one QA report; what the record keeps of it: the verdict, or the error if QA failed."""
    kw = dict(scene_dir=scene_dir, record=record, outputs=item.outputs, thresholds=thresholds, stem=stem, title=title)
    error = item.watched.failure
    if error is None:
        try:
            return finalize_scene_qa(item.qa, extra_checks=item.extra_checks, planes=item.planes,
                                     input_path=item.input, **kw).record_entry()
        except Exception as exc:  # noqa: BLE001 - a bug in QA never loses the segmentation
            log.exception("QA of %s failed", scene_dir)
            error = f"{type(exc).__name__}: {exc}"
    try:
        entry = failed_scene_qa(error, **kw).record_entry()
    except Exception:  # noqa: BLE001 - not even the failure page: the record still says why
        log.exception("QA failure report of %s failed", scene_dir)
        entry = {"verdict": None}
    return {**entry, "error": error}


def attach_qa(record: dict[str, Any], items: Sequence[ImageQA], scene_dir: Path,
              thresholds: QAThresholds | None) -> None:
    """QA of a scene or a volume (one report), or of a series (one per volume, plus the worst).

    A series gets ``qa_t<i>.json``/``.html`` per volume and, as ``qa.json``/``qa.html``, a
    copy of the worst one: the run report shows one row per file, and a reviewer should see
    the volume that needs a look. The record lists every volume's verdict.
    """
    t = time.perf_counter()
    if len(items) == 1 and not items[0].tag:
        record["qa"] = qa_entry(record, items[0], scene_dir, thresholds)
    else:
        entries = [{"volume": it.index, **qa_entry(record, it, scene_dir, thresholds, stem=f"qa_{it.tag}",
                                                   title=f"{scene_dir.name} {it.tag}")} for it in items]
        worst = max(entries, key=lambda e: VERDICT_RANK.get(e["verdict"], len(VERDICT_RANK)))  # None: QA failed
        record["qa"] = {**worst, "volumes": entries}
        if worst.get("json"):
            for src, dst in ((worst["json"], QA_JSON), (worst["html"], QA_HTML)):
                write_text_atomic(scene_dir / dst, (scene_dir / src).read_text(encoding="utf-8"))
            record["qa"].update(json=QA_JSON, html=QA_HTML, worst=worst["json"])
    record["timings"]["qa_s"] = time.perf_counter() - t
