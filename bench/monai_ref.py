"""MONAI's ``sliding_window_inference`` on an input already in memory: the reference to beat.

Same model, tile, overlap, gaussian blend and precision as the engine: the predictor MONAI
calls is the engine's own :class:`pipeline.engine.Predictor` (autocast, channels_last,
softmax), MONAI's gaussian importance map has sigma = tile / 8 (``sigma_scale=0.125``,
the engine's profile) and its overlap fraction gives the engine's stride. MONAI is handed
the normalised input as one tensor on the device and returns the class map there: no
reading, decoding, normalising, writing, overviews or QA, all of which the engine's
end-to-end figure includes. Only the benchmarks import this module (MONAI is the optional
``bench`` extra, never a dependency of ``pipeline/``).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np


def available() -> bool:
    return importlib.util.find_spec("monai") is not None


INSTALL_HINT = "MONAI not installed (pip install -c constraints.txt monai, or the [bench] extra): MONAI skipped"


def scene_input(path: Path, spec, device: str):
    """(1, C, H, W) float32 on the device: the scene's model bands, normalised as the engine does."""
    import rasterio
    import torch

    from pipeline.engine import resolve_device
    from pipeline.engine import normalise, stats_for

    with rasterio.open(path) as ds:
        data = ds.read(list(spec.bands)).astype(np.float32)
    sample = (data, np.ones(data.shape[1:], bool)) if spec.normalization.per_image else ()
    stats = stats_for(spec.normalization, len(spec.bands), *sample)
    x = torch.from_numpy(data)[None].to(resolve_device(device))
    return normalise(x, stats, len(spec.bands))


def volume_input(path: Path, spec, device: str, slice_axis: int = 2):
    """(S, context, H, W) float32 on the device: every slice with its 2.5D neighbours as channels.

    Neighbours past either end repeat the end slice. The stack is built before timing (it
    is what a MONAI user's transforms would hand over).
    """
    import nibabel as nib
    import torch

    from pipeline.engine import resolve_device
    from pipeline.engine import normalise_array, volume_stats

    data = np.moveaxis(np.asarray(nib.load(path).dataobj, dtype=np.float32), slice_axis, 0)
    data = normalise_array(data, volume_stats(data, spec.normalization))
    r = spec.context // 2
    idx = np.clip(np.arange(len(data))[:, None] + np.arange(-r, r + 1)[None], 0, len(data) - 1)
    return torch.from_numpy(np.ascontiguousarray(data[idx], dtype=np.float32)).to(resolve_device(device))


def monai_seconds(x, handle, device: str, precision: str, tile: int, overlap: int, batch: int) -> float:
    """Seconds MONAI takes from ``x`` in memory to the class map (argmax) on the device."""
    import torch
    from monai.inferers import sliding_window_inference

    from pipeline.engine import Predictor, resolve_device

    dev = resolve_device(device)
    pred = Predictor(handle.module, handle.spec, dev, precision)
    roi = (min(tile, x.shape[-2]), min(tile, x.shape[-1]))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.inference_mode():
        probs = sliding_window_inference(x, roi, batch, pred, overlap=overlap / tile, mode="gaussian",
                                         sigma_scale=0.125)
        labels = probs.argmax(1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    del labels, probs
    return dt
