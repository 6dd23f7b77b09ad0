"""The pictures of a QA page, from the streamed thumbnails or a volume's centre planes (compute).

A scene page shows the input with the mask over it, the mask, and *where the model is
unsure*: per thumbnail cell, the share of its pixels below the low-confidence threshold,
in HEAT over a dim grey input. A volume page shows each centre plane (radiological, square
millimetres, edge letters) with the mask over it, and the same plane's confidence as doubt
in HEAT. Each also yields a small mask picture for the run report's table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .planes import Plane
from .read import read_decimated
from .stats import QAStats
from .thumbs import (HEAT, HEAT_FLOOR, Legend, Picture, data_uri, dim_grey, heat_overlay, label_image, overlay,
                     ramp_css, small, stretch, webp)

Colors = Sequence[Sequence[int]]


def scene_pictures(stats: QAStats, input_path: Path, record: Mapping[str, Any], colors: Colors
                   ) -> tuple[list[Picture], str | None]:
    """(pictures for qa.html, the mask thumbnail for the run report)."""
    if stats.label_thumb is None:
        return [], None
    labels = stats.label_thumb
    bands = list(record.get("input", {}).get("bands") or [1, 2, 3])[:3]
    read = stats.input_thumb or read_decimated(input_path, bands, labels.shape)
    base = stretch(*read) if read is not None else None
    mask = label_image(labels, colors)
    pictures = []
    if base is not None:
        pictures.append(Picture("input with the mask over it", _lossy(overlay(base, labels, colors))))
    pictures.append(Picture("mask", data_uri(webp(mask, lossless=True))))
    if stats.unsure_thumb is not None and stats.unsure_threshold is not None:
        backdrop = dim_grey(base if base is not None else mask[..., :3])
        thr = stats.unsure_threshold
        pictures.append(Picture(f"where the model is unsure (confidence below {thr:.2f})",
                                _lossy(heat_overlay(backdrop, stats.unsure_thumb)), legend=share_legend(thr)))
    return pictures, thumbnail(labels, colors)


def volume_pictures(planes: Mapping[str, Plane], colors: Colors, num_classes: int
                    ) -> tuple[list[Picture], str | None]:
    """Each centre plane with the mask over it, then each plane's confidence (when kept)."""
    pictures, doubts = [], []
    for name, p in planes.items():
        finite = np.isfinite(p.image) if p.image.dtype.kind == "f" else np.ones(p.image.shape, bool)
        base = stretch(p.image[None], finite, 0.5, 99.5)
        pictures.append(Picture(f"{name}: mask over the image", _lossy(overlay(base, p.labels, colors)), p.markers))
        if p.confidence is not None:
            doubts.append(Picture(f"{name}: confidence", _lossy(heat_overlay(dim_grey(base), doubt(p.confidence,
                                                                                                   num_classes))),
                                  p.markers, confidence_legend(num_classes)))
    axial = planes.get("axial")
    return pictures + doubts, thumbnail(axial.labels, colors) if axial is not None else None


def doubt(confidence: np.ndarray, num_classes: int) -> np.ndarray:
    """uint8 confidence (p x 254, 255 none) -> doubt in [0, 1]: 0 at p = 1, 1 at p = 1/K (the least a max can be)."""
    p = np.minimum(confidence, 254) / 254.0
    floor = 1.0 / max(num_classes, 2)
    d = (1.0 - p) / (1.0 - floor)
    return np.where(confidence == 255, np.nan, np.clip(d, 0, 1)).astype(np.float32)


def share_legend(threshold: float) -> Legend:
    return Legend(ramp_css(HEAT), tuple((t, f"{100 * t:.0f} %") for t in (0, 0.25, 0.5, 0.75, 1.0)),
                  f"share of each cell's pixels below {threshold:.2f} · no tint: under 2 % · "
                  "darker grey: no valid pixel")


def confidence_legend(num_classes: int) -> Legend:
    floor = 1.0 / max(num_classes, 2)
    ticks = tuple((t, f"{1 - t * (1 - floor):.2f}") for t in (0, 0.25, 0.5, 0.75, 1.0))
    clear = f"{1 - HEAT_FLOOR * (1 - floor):.3f}".rstrip("0")
    return Legend(ramp_css(HEAT), ticks, f"each voxel's confidence · no tint: {clear} "
                  f"or more · {floor:.2f}: the least with {num_classes} classes · darker grey: no prediction")


def thumbnail(labels: np.ndarray, colors: Colors) -> str:
    return data_uri(webp(label_image(small(labels), colors), lossless=True))


def _lossy(rgb: np.ndarray) -> str:
    return data_uri(webp(rgb, lossless=False))
