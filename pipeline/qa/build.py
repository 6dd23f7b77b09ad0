"""Assemble a :class:`QAReport` from the streamed statistics, the record and the checks (compute)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rasterio.crs import CRS
from rasterio.errors import CRSError

from .schema import CheckResult, InputFacts, ModelFacts, Performance, QAReport, Verdict
from .stats import QAStats

# Stage timings from record.json, in pipeline order, with the names the report shows.
STAGES = (("read_s", "read (before the first slice)"), ("decode_s", "decode (beside the model)"),
          ("read_wait_s", "read (waiting)"), ("infer_s", "infer"), ("stitch_s", "stitch"),
          ("write_s", "write (+ QA observer)"), ("finalise_s", "finalise (COG / NIfTI)"))


def crs_name(wkt: str | None) -> str | None:
    if not wkt:
        return None
    try:
        crs = CRS.from_wkt(wkt)
    except CRSError:
        return wkt[:80]
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else (crs.to_dict().get("proj") or wkt[:80])


def input_facts(stats: QAStats, inp: Mapping[str, Any]) -> InputFacts:
    t = inp.get("transform")
    pixel = inp.get("spacing") or inp.get("zooms")
    if pixel is None and t and len(t) >= 6:
        pixel = [math.hypot(t[0], t[3]), math.hypot(t[1], t[4])]
    nodata = inp.get("nodata")
    return InputFacts(
        path=str(inp.get("path", "")), kind=stats.kind, width=int(inp.get("width", 0)),
        height=int(inp.get("height", 0)), depth=inp.get("depth"), bands=list(inp.get("bands") or []),
        band_count=inp.get("band_count"), dtype=inp.get("dtype"), crs_wkt=inp.get("crs_wkt"),
        crs_name=crs_name(inp.get("crs_wkt")), transform=list(t) if t else inp.get("affine_flat"),
        pixel_size=[float(x) for x in pixel] if pixel else None, orientation=inp.get("orientation"),
        qform_code=inp.get("qform_code"), sform_code=inp.get("sform_code"),
        nodata=None if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)) else nodata,
        valid_pixels=stats.valid_pixels, total_pixels=stats.total_pixels, valid_fraction=stats.valid_fraction,
    )


def performance(record: Mapping[str, Any], qa_s: float) -> Performance:
    t = record.get("timings", {})
    f = record.get("facts", {})
    return Performance(
        stages_s={label: float(t[k]) for k, label in STAGES if k in t}, total_s=t.get("total_s"), qa_s=qa_s,
        mpix_per_s=t.get("mpix_per_s"), slices_per_s=t.get("slices_per_s"), peak_rss_mb=f.get("peak_rss_mb"),
        peak_rss_scope=f.get("peak_rss_scope", "process" if f.get("peak_rss_mb") is not None else None),
        rss_start_mb=f.get("rss_start_mb"),
        peak_gpu_mb=f.get("peak_gpu_mb"), device=f.get("device"), precision=f.get("precision"),
        precision_reason=f.get("precision_reason"),
        tiles_total=f.get("tiles_total"), tiles_skipped=f.get("tiles_skipped"),
    )


def build_report(stats: QAStats, record: Mapping[str, Any], checks: list[CheckResult], scene: str,
                 outputs: Mapping[str, Path], qa_s: float) -> QAReport:
    """The report without a verdict decided yet (``verdict`` is a placeholder ``pass``)."""
    m = record.get("model", {})
    settings = dict(record.get("settings", {}))
    facts = record.get("facts", {})
    for k in ("device", "precision"):
        if k in facts:
            settings[f"{k}_used"] = facts[k]
    return QAReport(
        kind=stats.kind, scene=scene, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        input=input_facts(stats, record.get("input", {})),
        model=ModelFacts(path=str(m.get("path", "")), sha256=str(m.get("sha256", "")),
                         class_names=list(m.get("class_names") or [c.name for c in stats.classes]),
                         class_colors=[list(c) for c in m.get("class_colors") or []]),
        settings=settings, area=stats.area, classes=stats.classes, confidence=stats.confidence,
        mean_entropy=stats.mean_entropy, seams=stats.seams, checks=checks, performance=performance(record, qa_s),
        outputs={k: Path(p).name for k, p in outputs.items()}, warnings=list(record.get("warnings", [])),
        verdict=Verdict(status="pass"),
    )
