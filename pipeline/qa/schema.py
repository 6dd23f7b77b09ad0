"""The QA documents other tools read: ``qa.json`` per scene, ``run_summary.json`` per run.

pydantic models with a ``schema_version``; a reader checks the version before trusting
the fields. Adding optional fields keeps the version; renaming or removing bumps it.
``QAThresholds`` is the job-config block that decides verdicts.

Conventions: fractions are in [0, 1] of *valid* pixels/voxels; areas are m2 and ha
(projected CRS, or approximated from degrees and flagged), volumes mL; confidence is
the max class probability in [0, 1].
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
QA_JSON = "qa.json"
QA_HTML = "qa.html"
RUN_SUMMARY_JSON = "run_summary.json"
RUN_REPORT_HTML = "run_report.html"

Severity = Literal["info", "warn", "fail"]
VerdictStatus = Literal["pass", "warn", "fail"]
CheckStatus = Literal["pass", "fail", "skip"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QAThresholds(_Model):
    """When a scene is ``warn`` or ``fail``. Every limit can be set to null to switch it off.

    The job config holds one of these (``qa:``); unknown keys are errors, so a typo
    fails at load time with the field's name.
    """

    min_mean_confidence: float | None = Field(0.6, ge=0, le=1, description="warn when the mean confidence is lower")
    low_confidence: float = Field(0.5, ge=0, le=1, description="a pixel below this confidence counts as low")
    max_low_confidence_fraction: float | None = Field(
        0.5, ge=0, le=1, description="warn when more valid pixels than this are low-confidence")
    class_fraction: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="class name -> [min, max] fraction of valid pixels; warn outside")
    max_nodata_fraction: float | None = Field(0.5, ge=0, le=1, description="warn when more of the scene is nodata")
    empty_mask: Severity = Field("fail", description="severity when no pixel is valid")
    no_foreground: Severity = Field("info", description="severity when every valid pixel is class 0")
    max_seam_score: float | None = Field(2.0, gt=0, description="warn when the seam score is higher")
    max_mean_entropy: float | None = Field(None, ge=0, description="warn when the mean entropy (nats) is higher")
    failed_check: Severity = Field("fail", description="severity of a failed output check")
    drift_sigma: float = Field(3.0, gt=0, description="drift: flag a fraction outside mean +- sigma x sd")
    drift_min_runs: int = Field(3, ge=1, description="drift: earlier runs needed before flagging")
    drift_min_sd: float = Field(0.01, ge=0, description="drift: floor on the historical sd (stable classes)")
    drift: Severity = Field("warn", description="severity of a drift flag in the run report")

    @field_validator("class_fraction")
    @classmethod
    def _ranges(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for name, (lo, hi) in v.items():
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"class_fraction[{name!r}] = [{lo}, {hi}]: need 0 <= min <= max <= 1")
        return v


class Reason(_Model):
    code: str
    severity: Severity
    message: str


class Verdict(_Model):
    status: VerdictStatus
    reasons: list[Reason] = Field(default_factory=list)


class CheckResult(_Model):
    name: str
    status: CheckStatus
    detail: str = ""


class InputFacts(_Model):
    path: str
    kind: Literal["scene", "volume"] = "scene"
    width: int
    height: int
    depth: int | None = None
    bands: list[int] = Field(default_factory=list)
    band_count: int | None = None
    dtype: str | None = None
    crs_wkt: str | None = None
    crs_name: str | None = None
    transform: list[float] | None = None
    pixel_size: list[float] | None = Field(None, description="(x, y) in CRS units, or voxel spacing (mm)")
    orientation: str | None = None
    qform_code: int | None = Field(None, description="volumes: the NIfTI header's qform_code (0 = none)")
    sform_code: int | None = Field(None, description="volumes: the NIfTI header's sform_code (0 = none)")
    nodata: float | None = None
    valid_pixels: int
    total_pixels: int
    valid_fraction: float


class ModelFacts(_Model):
    path: str
    sha256: str
    class_names: list[str]
    class_colors: list[list[int]] = Field(default_factory=list)


class AreaInfo(_Model):
    unit: Literal["m2", "ml", "pixel"]
    per_pixel: float | None = Field(None, description="m2 per pixel, or mL per voxel")
    approximate: bool = False
    note: str = ""


class ClassStats(_Model):
    index: int
    name: str
    color: list[int] = Field(default_factory=list)
    pixels: int
    fraction: float
    area_m2: float | None = None
    area_ha: float | None = None
    volume_ml: float | None = None
    components: int | None = Field(None, description="connected components (None: not counted)")
    largest_component: int | None = Field(None, description="pixels/voxels of the largest connected component")
    components_step: int | None = Field(None, description="components counted on every n-th row/column "
                                        "(1: exact; >1: large scene, small objects may be missed)")
    largest_touches_border: bool | None = None
    touches_border: bool = Field(description="some pixel of the class lies on the image edge (may be truncated)")
    touches_nodata: bool = Field(description="some pixel of the class borders nodata (may be truncated)")
    mean_confidence: float | None = None
    low_confidence_fraction: float | None = None
    confidence_histogram: list[int] | None = Field(
        None, description="this class's pixels per equal-width confidence bin of [0, 1] (as ConfidenceStats)")


class ConfidenceStats(_Model):
    mean: float
    histogram: list[int] = Field(description="valid pixels per equal-width bin of [0, 1]")
    low_threshold: float
    low_fraction: float
    mean_entropy: float | None = None


class SeamStats(_Model):
    score: float | None = Field(description="border over interior disagreement rate; ~1 clean; None: one tile")
    border_rate: float
    interior_rate: float
    border_pairs: int
    interior_pairs: int


class Performance(_Model):
    stages_s: dict[str, float] = Field(default_factory=dict)
    total_s: float | None = None
    qa_s: float | None = None
    mpix_per_s: float | None = None
    slices_per_s: float | None = None
    peak_rss_mb: float | None = None
    peak_rss_scope: Literal["scene", "sampled", "process"] | None = Field(
        None, description="scene: peak resident memory while this scene ran (the kernel's high-water mark, "
        "reset at its start); sampled: the same, sampled every 20 ms where the mark cannot be reset; "
        "process: the process's high-water mark (records written before segpipe measured per scene)")
    rss_start_mb: float | None = Field(None, description="resident memory when the scene started (MiB)")
    peak_gpu_mb: float | None = None
    device: str | None = None
    precision: str | None = None
    precision_reason: str | None = None  # why that precision ran (auto: what the device has)
    tiles_total: int | None = None
    tiles_skipped: int | None = None


class QAReport(_Model):
    """Everything ``qa.json`` holds for one scene or volume."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["scene", "volume"] = "scene"
    scene: str
    created: str
    input: InputFacts
    model: ModelFacts
    settings: dict[str, Any] = Field(default_factory=dict)
    area: AreaInfo
    classes: list[ClassStats]
    confidence: ConfidenceStats | None = None
    mean_entropy: float | None = None
    seams: SeamStats | None = None
    checks: list[CheckResult] = Field(default_factory=list)
    performance: Performance = Field(default_factory=Performance)
    outputs: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    verdict: Verdict
    thumbnail: str | None = Field(None, description="a small picture of the mask (data URI) for the run report")


class RunRow(_Model):
    """One scene in the run report."""

    scene: str
    status: Literal["complete", "failed", "skipped", "no-qa"]
    verdict: VerdictStatus | None = None
    reasons: list[str] = Field(default_factory=list)
    class_fractions: dict[str, float] = Field(default_factory=dict)
    class_areas_ha: dict[str, float | None] = Field(default_factory=dict)
    class_volumes_ml: dict[str, float | None] = Field(default_factory=dict)
    background: str | None = Field(None, description="the name of class 0, left out of the main classes")
    thumbnail: str | None = Field(None, description="the scene's mask thumbnail (data URI), from its qa.json")
    finished: str | None = Field(None, description="when the scene's QA report was written (ISO, UTC)")
    duration_s: float | None = None
    mpix: float | None = None
    qa_html: str | None = Field(None, description="path of the scene's qa.html, relative to the run root")
    error: str | None = None
    drift: list[str] = Field(default_factory=list)

    def main_classes(self, n: int = 3) -> str:
        """'water 12.34 ha (41.0%), built 3.10 ha (10.2%)': the largest classes of interest.

        Background (class 0) is left out: it is the largest class of nearly every scene and
        would push the one a reviewer looks for (water, a kidney) off the list. Areas in ha,
        volumes in mL, else the fraction of valid pixels.
        """
        top = sorted(((f, k) for k, f in self.class_fractions.items() if k != self.background and f > 0),
                     reverse=True)[:n]
        parts = []
        for frac, name in top:
            ha, ml = self.class_areas_ha.get(name), self.class_volumes_ml.get(name)
            size = f"{ha:,.2f} ha ({100 * frac:.1f}%)" if ha is not None else \
                f"{ml:,.1f} mL" if ml is not None else f"{100 * frac:.1f}%"
            parts.append(f"{name} {size}")
        return ", ".join(parts)


class ClassBaseline(_Model):
    runs: int
    samples: int
    mean: float
    sd: float
    low: float
    high: float


class RunTotals(_Model):
    scenes: int = 0
    complete: int = 0
    failed: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict)
    drifted: int = 0
    duration_s: float = 0.0
    mpix: float = 0.0
    area_ha: dict[str, float] = Field(default_factory=dict)


class RunSummary(_Model):
    """Everything ``run_summary.json`` holds for one run."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    job: str
    created: str
    totals: RunTotals
    rows: list[RunRow]
    baseline: dict[str, ClassBaseline] = Field(default_factory=dict)
    history_runs: int = 0
