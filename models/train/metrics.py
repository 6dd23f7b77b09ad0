"""Per-class IoU and Dice from a confusion matrix accumulated over whole scenes/volumes.

Pure arithmetic on arrays (the validation module does the reading). A pixel the engine left
as nodata where the label has a class counts as a miss of that class (column ``K``), never
as a hit of class 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dataset import IGNORE_INDEX


def confusion(label: np.ndarray, pred: np.ndarray, num_classes: int, pred_nodata: int | None = None) -> np.ndarray:
    """(K, K + 1) counts: rows true class, columns predicted class; column K = no prediction."""
    keep = label != IGNORE_INDEX
    t = label[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if pred_nodata is not None:
        p = np.where(p == pred_nodata, num_classes, p)
    p = np.where((p < 0) | (p > num_classes), num_classes, p)
    t_ok = t < num_classes
    idx = t[t_ok] * (num_classes + 1) + p[t_ok]
    return np.bincount(idx, minlength=num_classes * (num_classes + 1)).reshape(num_classes, num_classes + 1)


@dataclass(frozen=True)
class Scores:
    """Per-class scores; ``None`` for a class absent from both labels and predictions."""

    class_names: tuple[str, ...]
    iou: tuple[float | None, ...]
    dice: tuple[float | None, ...]
    support: tuple[int, ...]  # labelled pixels per class
    accuracy: float

    @property
    def mean_iou(self) -> float:
        vals = [v for v in self.iou if v is not None]
        return float(np.mean(vals)) if vals else 0.0

    @property
    def mean_dice(self) -> float:
        vals = [v for v in self.dice if v is not None]
        return float(np.mean(vals)) if vals else 0.0

    def to_dict(self) -> dict:
        return {
            "mean_iou": self.mean_iou, "mean_dice": self.mean_dice, "pixel_accuracy": self.accuracy,
            "per_class": {n: {"iou": i, "dice": d, "support": s}
                          for n, i, d, s in zip(self.class_names, self.iou, self.dice, self.support)},
        }


def scores(cm: np.ndarray, class_names: Sequence[str]) -> Scores:
    k = cm.shape[0]
    tp = np.diag(cm[:, :k]).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)  # true pixels (misses included)
    predicted = cm[:, :k].sum(axis=0).astype(np.float64)
    union = support + predicted - tp
    iou = tuple(float(tp[c] / union[c]) if union[c] > 0 else None for c in range(k))
    dice = tuple(float(2 * tp[c] / (support[c] + predicted[c])) if union[c] > 0 else None for c in range(k))
    total = support.sum()
    return Scores(tuple(class_names), iou, dice, tuple(int(s) for s in support),
                  float(tp.sum() / total) if total else 0.0)
