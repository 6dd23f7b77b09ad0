"""Confidence statistics from the streamed (class x confidence byte) counts (compute).

Confidence arrives as uint8 p x 254 (``pipeline.engine.bands.PROB_SCALE``; 255 is nodata), so
:class:`~pipeline.qa.stats.SceneQA` keeps one (K, 256) table of pixels per class and byte;
everything here is derived from it exactly, without a pass over the pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.bands import PROB_SCALE
from .schema import ConfidenceStats

_CONF_SCALE = float(PROB_SCALE)
HIST_BINS = 20
_P = np.minimum(np.arange(256), 254) / _CONF_SCALE  # the probability each byte stands for


def bins(per_byte: np.ndarray, n: int = HIST_BINS) -> list[int]:
    """Pixels per confidence byte (256) -> pixels per equal-width bin of [0, 1]."""
    which = np.minimum((_P * n).astype(np.int64), n - 1)
    return np.bincount(which, weights=per_byte, minlength=n).astype(np.int64).tolist()


def class_confidence(joint: np.ndarray | None, k: int, low: float, n_bins: int) -> list[dict[str, Any]]:
    """Per class: mean confidence, share below ``low`` and histogram (empty for a class with no pixel)."""
    if joint is None:
        return [{} for _ in range(k)]
    low_bytes = np.arange(256) < low * _CONF_SCALE
    out = []
    for c in range(k):
        h = joint[c]
        n = int(h.sum())
        out.append({"mean_confidence": float(h @ _P / n), "low_confidence_fraction": float(h[low_bytes].sum() / n),
                    "confidence_histogram": bins(h, n_bins)} if n else {})
    return out


def confidence_stats(joint: np.ndarray | None, valid_pixels: int, low: float, n_bins: int,
                     mean_entropy: float | None) -> ConfidenceStats | None:
    """The whole scene's confidence summary; None without confidence or valid pixels."""
    if joint is None or valid_pixels == 0:
        return None
    h = joint.sum(axis=0)
    n = int(h.sum())
    return ConfidenceStats(mean=float(h @ _P / n), histogram=bins(h, n_bins), low_threshold=low,
                           low_fraction=float(h[np.arange(256) < low * _CONF_SCALE].sum() / n),
                           mean_entropy=mean_entropy)
