"""pass | warn | fail, with the reasons, from a report and the job's thresholds.

Each rule is a small function in ``RULES`` (name -> rule) that looks at the report
and returns reasons. The verdict is the worst severity among them (``info`` reasons
are shown but never change it). Because the verdict is decided from the report
alone, a run report can re-decide old ``qa.json`` files with new thresholds.
"""

from __future__ import annotations

from collections.abc import Callable

from .schema import QAReport, QAThresholds, Reason, Verdict

Rule = Callable[[QAReport, QAThresholds], list[Reason]]
_RANK = {"info": 0, "warn": 1, "fail": 2}
# Verdicts from best to worst (a run report's row, a series' worst volume).
VERDICT_RANK = {"pass": 0, "warn": 1, "fail": 2}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _empty(r: QAReport, t: QAThresholds) -> list[Reason]:
    if r.input.valid_pixels == 0:
        return [Reason(code="empty_mask", severity=t.empty_mask,
                       message="no valid pixel: the input is all nodata, so the mask is empty")]
    if r.classes and r.classes[0].pixels == r.input.valid_pixels:
        return [Reason(code="no_foreground", severity=t.no_foreground,
                       message=f"every valid pixel is {r.classes[0].name!r}: no other class found")]
    return []


def _nodata(r: QAReport, t: QAThresholds) -> list[Reason]:
    nodata = 1.0 - r.input.valid_fraction
    if t.max_nodata_fraction is None or r.input.valid_pixels == 0 or nodata <= t.max_nodata_fraction:
        return []
    return [Reason(code="nodata", severity="warn",
                   message=f"{_pct(nodata)} of the scene is nodata (limit {_pct(t.max_nodata_fraction)})")]


def _confidence(r: QAReport, t: QAThresholds) -> list[Reason]:
    c = r.confidence
    if c is None:
        return [Reason(code="no_confidence", severity="info",
                       message="confidence was not recorded for this scene; confidence checks skipped")
                ] if r.input.valid_pixels else []
    out = []
    if t.min_mean_confidence is not None and c.mean < t.min_mean_confidence:
        out.append(Reason(code="low_confidence", severity="warn",
                          message=f"mean confidence {c.mean:.2f} is below {t.min_mean_confidence:.2f}"))
    if t.max_low_confidence_fraction is not None and c.low_fraction > t.max_low_confidence_fraction:
        out.append(Reason(code="low_confidence_fraction", severity="warn",
                          message=f"{_pct(c.low_fraction)} of valid pixels have confidence below "
                                  f"{c.low_threshold:.2f} (limit {_pct(t.max_low_confidence_fraction)})"))
    return out


def _entropy(r: QAReport, t: QAThresholds) -> list[Reason]:
    if t.max_mean_entropy is None or r.mean_entropy is None or r.mean_entropy <= t.max_mean_entropy:
        return []
    return [Reason(code="high_entropy", severity="warn",
                   message=f"mean entropy {r.mean_entropy:.3f} nats is above {t.max_mean_entropy:.3f}")]


def _class_fractions(r: QAReport, t: QAThresholds) -> list[Reason]:
    if r.input.valid_pixels == 0:
        return []
    by_name = {c.name: c for c in r.classes}
    out = []
    for name, (lo, hi) in t.class_fraction.items():
        c = by_name.get(name)
        if c is None:
            out.append(Reason(code="unknown_class", severity="info",
                              message=f"threshold for class {name!r}, which this model does not have"))
        elif not lo <= c.fraction <= hi:
            out.append(Reason(code="class_fraction", severity="warn",
                              message=f"class {name!r} covers {_pct(c.fraction)} of valid pixels, "
                                      f"outside [{_pct(lo)}, {_pct(hi)}]"))
    return out


def _seams(r: QAReport, t: QAThresholds) -> list[Reason]:
    s = r.seams
    if t.max_seam_score is None or s is None or s.score is None or s.score <= t.max_seam_score:
        return []
    return [Reason(code="seams", severity="warn",
                   message=f"seam score {s.score:.2f} is above {t.max_seam_score:.2f}: predictions change "
                           f"along tile borders {s.score:.1f}x as often as elsewhere (blending/overlap?)")]


def _checks(r: QAReport, t: QAThresholds) -> list[Reason]:
    return [Reason(code=f"check_{c.name}", severity=t.failed_check, message=f"check {c.name} failed: {c.detail}")
            for c in r.checks if c.status == "fail"]


def _notes(r: QAReport, t: QAThresholds) -> list[Reason]:
    out = []
    if r.area.approximate and r.area.note:
        out.append(Reason(code="area_approximate", severity="info", message=r.area.note))
    edge = [c.name for c in r.classes[1:] if c.touches_border or c.touches_nodata]
    if edge:
        out.append(Reason(code="touches_border", severity="info",
                          message=f"class(es) {', '.join(edge)} touch the image edge or nodata: "
                                  "objects there may be cut off"))
    return out


RULES: dict[str, Rule] = {
    "empty": _empty, "nodata": _nodata, "confidence": _confidence, "entropy": _entropy,
    "class_fraction": _class_fractions, "seams": _seams, "checks": _checks, "notes": _notes,
}


def decide(report: QAReport, thresholds: QAThresholds) -> Verdict:
    """The verdict for ``report`` under ``thresholds`` (its own ``verdict`` is ignored)."""
    reasons = [reason for rule in RULES.values() for reason in rule(report, thresholds)]
    reasons.sort(key=lambda x: -_RANK[x.severity])
    worst = max((_RANK[x.severity] for x in reasons), default=0)
    status = "fail" if worst == 2 else "warn" if worst == 1 else "pass"
    return Verdict(status=status, reasons=reasons)
