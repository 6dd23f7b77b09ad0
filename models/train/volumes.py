"""Volumes as training planes: 2D/2.5D slices cut exactly as the volume engine cuts them.

Image and label are read into canonical RAS+ order with ``pipeline.readers.nifti.read_volume``,
normalised per volume with the engine's statistics and map (``pipeline.engine.normalize``),
and sliced with ``pipeline.readers.nifti.slab`` along the same axis (default: coarsest spacing) and
with the same 2.5D context, so the model sees slices the way inference feeds them.
"""

from __future__ import annotations

import numpy as np

from pipeline.engine.normalize import normalise_array, volume_stats
from pipeline.readers.nifti import default_slice_axis, read_volume, slab, slab_valid
from pipeline.spec import Normalization

from .dataset import IGNORE_INDEX, Pair, check_volume_pair
from .stats import Plane


def volume_normalization(kind: str, ct_window: tuple[float, float]) -> Normalization:
    if kind == "zscore":
        return Normalization(kind="zscore", low=0.5, high=99.5)
    return Normalization(kind="ct_window", window_low=ct_window[0], window_high=ct_window[1])


def volume_planes(pair: Pair, norm: Normalization, context: int, slice_axis: int | None) -> list[Plane]:
    """Every slice of the volume as a (context, H, W) plane with its (H, W) labels."""
    check_volume_pair(pair)
    vol = read_volume(pair.image)
    labels = read_volume(pair.label).data
    lab = np.rint(labels)
    lab = np.where((lab < 0) | (lab > IGNORE_INDEX), IGNORE_INDEX, lab).astype(np.uint8)
    axis = default_slice_axis(vol.zooms) if slice_axis is None else slice_axis
    normed = normalise_array(vol.data, volume_stats(vol.data, norm, vol.valid))
    n = vol.shape[axis]
    idx = np.arange(n)
    images = slab(normed, axis, idx, context)  # (n, context, H, W)
    valid = slab_valid(vol.valid, vol.shape, axis, idx)
    lab_slices = np.moveaxis(lab, axis, 0).copy()
    lab_slices[~valid] = IGNORE_INDEX
    images *= valid[:, None]
    return [Plane(images[i], lab_slices[i], f"{pair.name}[{i}]") for i in range(n)]
