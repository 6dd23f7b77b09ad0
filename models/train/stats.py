"""Normalisation statistics from the training data, and the planes the sampler cuts tiles from.

Scenes get ``meanstd`` with per-band mean/std over *valid* pixels of the training scenes
(a random sample, not every pixel). The numbers go into the checkpoint's spec, and the
training tiles are normalised by the engine's own map (``pipeline.engine.normalize``), so
inference applies exactly the same map. Volumes use the per-volume kinds the engine resolves
per volume (``ct_window``, ``zscore``), through the same module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import InputError
from pipeline.engine.normalize import normalise_array, stats_for
from pipeline.spec import Normalization

from .dataset import IGNORE_INDEX, LabelledScene

# std below this (a constant band) would blow values up; such a band gets std 1.
_MIN_STD = 1e-6


@dataclass(frozen=True)
class Plane:
    """One 2D training image: normalised channels (C, H, W) float32 and labels (H, W) uint8.

    Invalid pixels are 0 in ``image`` (as the engine feeds them) and IGNORE_INDEX in ``label``.
    """

    image: np.ndarray
    label: np.ndarray
    name: str


def band_stats(scenes: Sequence[LabelledScene], max_samples: int = 200_000,
               seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std over valid pixels, from at most ``max_samples`` random pixels.

    Each scene contributes in proportion to its valid pixels, so a big scene is not
    under-represented and a tiny one does not dominate.
    """
    rng = np.random.default_rng(seed)
    counts = np.array([int(s.valid.sum()) for s in scenes], dtype=np.int64)
    if counts.sum() == 0:
        raise InputError("no valid pixel in any training scene; cannot compute normalisation statistics")
    quota = np.ceil(counts / counts.sum() * max_samples).astype(np.int64)
    samples = []
    for scene, n in zip(scenes, quota):
        ys, xs = np.nonzero(scene.valid)
        if ys.size == 0:
            continue
        pick = rng.choice(ys.size, size=min(int(n), ys.size), replace=False)
        samples.append(scene.image[:, ys[pick], xs[pick]].astype(np.float64))
    values = np.concatenate(samples, axis=1)
    mean = values.mean(axis=1)
    std = values.std(axis=1)
    std = np.where(std > _MIN_STD, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def scene_normalization(scenes: Sequence[LabelledScene], max_samples: int, seed: int) -> Normalization:
    mean, std = band_stats(scenes, max_samples, seed)
    return Normalization(kind="meanstd", mean=mean, std=std)


def scene_plane(scene: LabelledScene, norm: Normalization) -> Plane:
    """Normalise a scene with the engine's own code; invalid pixels become 0 as in inference."""
    stats = stats_for(norm, scene.image.shape[0])
    x = normalise_array(scene.image, stats, scene.image.shape[0])
    x *= scene.valid[None]
    return Plane(np.ascontiguousarray(x, dtype=np.float32), scene.label, scene.pair.name)


def class_counts(planes: Sequence[Plane], num_classes: int) -> np.ndarray:
    """Labelled pixels per class over all planes (ignored pixels left out)."""
    total = np.zeros(num_classes, dtype=np.int64)
    for p in planes:
        lab = p.label[p.label != IGNORE_INDEX]
        total += np.bincount(lab.ravel(), minlength=num_classes)[:num_classes]
    return total
