"""Turn raw band values into model input, exactly as the checkpoint says.

Per-image statistics (``percentile``) come from a sample of the whole scene
(``StripReader.sample``: its overviews, or full-resolution windows spread over a file
without them), computed once before tiling, so every tile of a scene is normalised
identically.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .spec import Normalization


@dataclass(frozen=True)
class NormStats:
    """Per-channel affine map: model input = clip((x - offset) * scale, lower, upper).

    ``lower``/``upper`` are per channel; empty means no clipping.
    """

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()


def stats_for(norm: Normalization, channels: int, sample: np.ndarray | None = None,
              sample_valid: np.ndarray | None = None) -> NormStats:
    """Resolve ``norm`` to per-channel affine stats. ``sample`` (C, h, w) is needed for per-image kinds."""
    if norm.kind == "none":
        return NormStats((0.0,) * channels, (1.0,) * channels)
    if norm.kind == "meanstd":
        mean = norm.mean * channels if len(norm.mean) == 1 else norm.mean
        std = norm.std * channels if len(norm.std) == 1 else norm.std
        return NormStats(tuple(mean), tuple(1.0 / s for s in std))
    if norm.kind == "scale":
        # x * factor + offset == (x - (-offset / factor)) * factor
        return NormStats((-norm.offset / norm.factor,) * channels, (norm.factor,) * channels)
    if norm.kind == "ct_window":
        lo, hi = norm.window_low, norm.window_high
        return NormStats((lo,) * channels, (1.0 / (hi - lo),) * channels, (0.0,) * channels, (1.0,) * channels)
    if sample is None:
        raise ValueError(f"{norm.kind} normalization needs a sample of the image")
    offs, scales, lows, highs = [], [], [], []
    for c in range(channels):
        v = sample[c][sample_valid] if sample_valid is not None else sample[c].ravel()
        st = robust_stats(v[np.isfinite(v)].astype(np.float64), norm)
        offs.append(st["offset"])
        scales.append(1.0 / st["divisor"])
        lows.append(st["lower"])
        highs.append(st["upper"])
    return NormStats(tuple(offs), tuple(scales), tuple(lows), tuple(highs))


# Below this a standard deviation (or percentile range) is treated as 0 and the scale as 1.
EPS = 1e-8


def robust_stats(v: np.ndarray, norm: Normalization) -> dict[str, float]:
    """Per-image statistics of ``percentile``/``zscore`` normalisation from finite sample values.

    Returns offset, divisor, lower, upper (model input = clip((x - offset) / divisor,
    lower, upper)) and the percentile values they came from (plus mean/std for zscore).
    Scenes (per band) and volumes share this, so both normalise identically.
    """
    lo, hi = (float(q) for q in np.percentile(v, [norm.low, norm.high])) if v.size else (0.0, 1.0)
    if norm.kind == "percentile":
        width = hi - lo if hi - lo > EPS else 1.0
        return dict(offset=lo, divisor=width, lower=0.0, upper=(hi - lo) / width, low_value=lo, high_value=hi)
    # zscore of the values clipped to the percentiles
    clipped = np.clip(v, lo, hi) if v.size else np.zeros(1)
    mean, sd = float(clipped.mean()), float(clipped.std())
    div = sd if sd > EPS else 1.0
    return dict(offset=mean, divisor=div, lower=(lo - mean) / div, upper=(hi - mean) / div, low_value=lo,
                high_value=hi, mean=mean, std=sd)


def apply_torch(x: torch.Tensor, stats: NormStats) -> torch.Tensor:
    """Normalise a (N, C, H, W) float tensor in place on its device and return it."""
    off, sc, lo, hi = _stat_tensors(stats, x.shape[1], x.dtype, x.device)
    x.sub_(off).mul_(sc)
    if lo is not None:
        x.clamp_(lo, hi)
    return x


@functools.lru_cache(maxsize=16)
def _stat_tensors(stats: NormStats, c: int, dtype: torch.dtype, device: torch.device) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The statistics as (1, C, 1, 1) tensors on ``device``, made once per scene and device.

    Made per batch they would cost a copy from pageable host memory each, which on a GPU
    waits for the stream to drain: the host would stop feeding the model every batch.
    """

    def t(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values[:c], dtype=dtype, device=device).view(1, c, 1, 1)

    if not stats.lower:
        return t(stats.offset), t(stats.scale), None, None
    return t(stats.offset), t(stats.scale), t(stats.lower), t(stats.upper)
