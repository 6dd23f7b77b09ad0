"""Volumes as training planes: 2D/2.5D slices cut exactly as the volume engine cuts them.

Image and label are read into canonical RAS+ order with ``pipeline.volume.read_volume``,
normalised per volume with ``pipeline.volume.normalize`` (the engine's statistics and map),
and sliced with ``pipeline.volume.slab`` along the same axis (default: coarsest spacing) and
with the same 2.5D context, so the model sees slices the way inference feeds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.spec import Normalization
from pipeline.volume import default_slice_axis, read_volume, slab, slab_valid
from pipeline.volume.normalize import apply, volume_stats

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
    normed = apply(vol.data, norm, volume_stats(vol.data, norm, vol.valid))
    n = vol.shape[axis]
    idx = np.arange(n)
    images = slab(normed, axis, idx, context)  # (n, context, H, W)
    valid = slab_valid(vol.valid, vol.shape, axis, idx)
    lab_slices = np.moveaxis(lab, axis, 0).copy()
    lab_slices[~valid] = IGNORE_INDEX
    images *= valid[:, None]
    return [Plane(images[i], lab_slices[i], f"{pair.name}[{i}]") for i in range(n)]


def predict_volume_slices(handle: Any, image: Path, settings: Any) -> np.ndarray:
    """Stand-in for the volume engine while it is not there: whole slices, on-disk order out."""
    import torch

    from pipeline.infer import Predictor, resolve_device
    from pipeline.volume import SliceAssembler

    spec = handle.spec
    vol = read_volume(image)
    axis = default_slice_axis(vol.zooms) if settings.slice_axis is None else settings.slice_axis
    normed = apply(vol.data, spec.normalization, volume_stats(vol.data, spec.normalization, vol.valid))
    device = resolve_device(settings.device)
    predictor = Predictor(handle.module, spec, device)
    out = SliceAssembler(vol.shape, axis)
    for start in range(0, vol.shape[axis], 8):
        idx = np.arange(start, min(start + 8, vol.shape[axis]))
        x = slab(normed, axis, idx, spec.context).reshape(len(idx), -1, *slab(normed, axis, idx[:1], 1).shape[2:])
        h, w = x.shape[2:]
        ph, pw = -h % 32, -w % 32
        x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
        probs = predictor(torch.from_numpy(x).to(device))
        out.put(idx, probs.argmax(1)[:, :h, :w].cpu().numpy().astype(np.uint8))
    return vol.orientation.to_source(out.result())
