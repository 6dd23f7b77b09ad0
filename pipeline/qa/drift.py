"""Drift: is a scene's class mix unlike what earlier runs of the same job produced? (compute)

The history holds, per run, each scene's class fractions (of valid pixels). The
baseline of a class pools every scene of the earlier runs: mean and sd, and the range
``mean +- sigma x max(sd, min_sd)`` clipped to [0, 1]. The floor on sd keeps a class
that was always ~0 from flagging a scene at 0.5 %. No baseline (so no flag) until the
history has ``drift_min_runs`` earlier runs of the job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .schema import ClassBaseline, QAThresholds

HistoryEntry = Mapping[str, Any]  # {"job", "run_id", "created", "scenes": {scene: {class: fraction}}}


def earlier_runs(history: Sequence[HistoryEntry], job: str, run_id: str) -> list[HistoryEntry]:
    """Runs of ``job`` recorded before ``run_id`` (all of them if ``run_id`` is not in the history)."""
    out = []
    for h in history:
        if h.get("job") != job:
            continue
        if h.get("run_id") == run_id:
            break
        out.append(h)
    return out


def baseline(earlier: Sequence[HistoryEntry], t: QAThresholds) -> dict[str, ClassBaseline]:
    """Per-class baseline over the earlier runs, or {} while there are too few of them."""
    if len(earlier) < t.drift_min_runs:
        return {}
    samples: dict[str, list[float]] = {}
    runs: dict[str, set[str]] = {}
    for h in earlier:
        for fractions in h.get("scenes", {}).values():
            for name, f in fractions.items():
                samples.setdefault(name, []).append(float(f))
                runs.setdefault(name, set()).add(str(h.get("run_id")))
    out = {}
    for name, vals in samples.items():
        if len(runs[name]) < t.drift_min_runs:
            continue
        a = np.asarray(vals)
        mean = float(a.mean())
        sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
        half = t.drift_sigma * max(sd, t.drift_min_sd)
        out[name] = ClassBaseline(runs=len(runs[name]), samples=len(a), mean=mean, sd=sd,
                                  low=max(0.0, mean - half), high=min(1.0, mean + half))
    return out


def drift_flags(fractions: Mapping[str, float], base: Mapping[str, ClassBaseline]) -> list[str]:
    """One message per class whose fraction lies outside its historical range."""
    out = []
    for name, f in fractions.items():
        b = base.get(name)
        if b is not None and not b.low <= f <= b.high:
            out.append(f"{name} {100 * f:.1f}% outside [{100 * b.low:.1f}%, {100 * b.high:.1f}%] "
                       f"(mean {100 * b.mean:.1f}% over {b.runs} runs)")
    return out
