"""Turn raw input values into model input, exactly as the checkpoint says: one map for every input.

Every normalisation kind reduces to one elementwise map with per-channel numbers,

    model input = clip((x - offset) / divisor, lower, upper)      (``scale``: (x - offset) * factor)

plus, for ``zscore`` with ``nonzero``, voxels that are exactly 0 stay 0 (nnU-Net's mask
normalisation, for skull-stripped MR with a zero background). Dividing by the exact width
or spread maps a window's top to exactly 1.0, which multiplying by its rounded reciprocal
does not; the ``scale`` kind is defined by its factor and multiplies by it.

The numbers (:class:`NormStats`) are made once per input: from the checkpoint alone, or,
for per-image kinds (``percentile``, ``zscore``), from a sample of the input's valid
pixels: a scene's overviews or full-resolution windows (``readers.geotiff``), a volume's
strided subsample (:func:`volume_sample`). The map itself runs on the model's device, on
each batch of tiles (:func:`normalise`); training uses the same map (:func:`normalise_array`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..spec import Normalization

# Below this a standard deviation (or percentile range) is treated as 0 and the divisor as 1.
EPS = 1e-8
# Per-volume statistics come from a strided subsample of at most this many voxels: a regular
# grid of ~2 million voxels gives percentiles and moments within a small fraction of a percent
# of the full volume's for CT/MR (s = 1, exact, for volumes up to that size).
SAMPLE_VOXELS = 1 << 21


@dataclass(frozen=True)
class NormStats:
    """The map's numbers, per channel (one value: every channel). ``lower``/``upper`` empty: no clip.

    ``details`` is what the record keeps about where they came from (percentile values,
    sample size); it takes no part in the map.
    """

    kind: str
    offset: tuple[float, ...]
    divisor: tuple[float, ...]
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()
    nonzero: bool = False
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def multiplies(self) -> bool:
        return self.kind == "scale"

    def to_record(self) -> dict[str, Any]:
        """JSON-ready: kind, offset, scale (= 1 / divisor), divisor, lower, upper, nonzero, details."""
        one = len(self.offset) == 1

        def v(t: tuple[float, ...]) -> Any:
            return (t[0] if one else list(t)) if t else None

        scale = tuple(d if self.multiplies else 1.0 / d for d in self.divisor)
        divisor = tuple(1.0 / d if self.multiplies else d for d in self.divisor)
        return {"kind": self.kind, "offset": v(self.offset), "scale": v(scale), "divisor": v(divisor),
                "lower": v(self.lower), "upper": v(self.upper), "nonzero": self.nonzero, **self.details}


def stats_for(norm: Normalization, channels: int, sample: np.ndarray | None = None,
              sample_valid: np.ndarray | None = None) -> NormStats:
    """Resolve ``norm`` for ``channels`` channels. ``sample`` (C, ...) is needed for per-image kinds."""
    kind = norm.kind
    if kind == "none":
        return NormStats(kind, (0.0,), (1.0,))
    if kind == "scale":
        if norm.factor == 0:
            raise ConfigError("scale normalization needs a non-zero factor")
        # x * factor + offset == (x - (-offset / factor)) * factor
        return NormStats(kind, (-norm.offset / norm.factor,), (norm.factor,))
    if kind == "meanstd":
        mean = norm.mean * channels if len(norm.mean) == 1 else norm.mean
        std = norm.std * channels if len(norm.std) == 1 else norm.std
        return NormStats(kind, tuple(mean), tuple(std))
    if kind == "ct_window":
        lo, hi = norm.window_low, norm.window_high
        return NormStats(kind, (lo,), (hi - lo,), (0.0,), (1.0,))
    if sample is None:
        raise ValueError(f"{kind} normalization needs a sample of the image")
    per, counts = [], []
    for c in range(channels):
        v = sample[c][sample_valid] if sample_valid is not None else sample[c].ravel()
        v = v[np.isfinite(v)].astype(np.float64)
        v = v[v != 0] if norm.nonzero else v
        per.append(robust_stats(v, norm))
        counts.append(int(v.size))
    details: dict[str, Any] = {}
    if channels == 1:  # a volume's: what the record shows next to the numbers
        details = {k: per[0][k] for k in ("mean", "std", "low_value", "high_value") if k in per[0]}
        details["n_samples"] = counts[0]
    return NormStats(kind, tuple(p["offset"] for p in per), tuple(p["divisor"] for p in per),
                     tuple(p["lower"] for p in per), tuple(p["upper"] for p in per), norm.nonzero, details)


def robust_stats(v: np.ndarray, norm: Normalization) -> dict[str, float]:
    """``percentile``/``zscore`` numbers from finite sample values (offset, divisor, lower, upper, ...)."""
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


def sample_stride(shape: tuple[int, ...], max_voxels: int = SAMPLE_VOXELS) -> int:
    """Smallest stride s with prod(ceil(n / s)) <= max_voxels."""
    s = max(1, int(math.floor((math.prod(shape) / max_voxels) ** (1 / len(shape)))))
    while math.prod(-(-n // s) for n in shape) > max_voxels:
        s += 1
    return s


def volume_stats(data: np.ndarray, norm: Normalization, valid: np.ndarray | None = None,
                 *, max_voxels: int = SAMPLE_VOXELS) -> NormStats:
    """A volume's numbers: per-volume kinds from ``data[::s, ::s, ::s]`` (valid voxels only)."""
    if norm.kind == "meanstd" and len(norm.mean) != 1:
        raise ConfigError(f"a volume has one channel; meanstd needs one mean/std, got {norm.mean}")
    if not norm.per_image:
        return stats_for(norm, 1)
    s = sample_stride(data.shape, max_voxels)
    sl = tuple(slice(None, None, s) for _ in data.shape)
    stats = stats_for(norm, 1, data[sl][None], None if valid is None else valid[sl])
    return replace(stats, details={**stats.details, "stride": s})


def normalise(x: torch.Tensor, stats: NormStats, bands: int) -> torch.Tensor:
    """Normalise a (N, C, H, W) float tensor in place on its device and return it.

    ``C`` is ``bands`` x the 2.5D context; channel ``c`` takes band ``c % bands``'s numbers.
    """
    raw = x.clone() if stats.nonzero else None
    off, div, lo, hi = _tensors(stats, x.shape[1], bands, x.dtype, x.device)
    x.sub_(off)
    if stats.multiplies:
        x.mul_(div)
    else:
        x.div_(div)
    if lo is not None:
        x.clamp_(lo, hi)
    if raw is not None:
        x.masked_fill_(raw == 0, 0.0)
    return x


def normalise_array(a: np.ndarray, stats: NormStats, bands: int = 1) -> np.ndarray:
    """The same map on a host array (training): a new float32 array of ``a``'s shape, (C, ...) or (...)."""
    x = torch.from_numpy(np.array(a, dtype=np.float32, copy=True))
    shape = x.shape
    x = x.reshape(1, bands, -1, 1) if x.ndim > 1 and bands > 1 else x.reshape(1, 1, -1, 1)
    return normalise(x, stats, bands).reshape(shape).numpy()


@functools.lru_cache(maxsize=16)
def _tensors(stats: NormStats, c: int, bands: int, dtype: torch.dtype, device: torch.device) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The numbers as (1, C, 1, 1) tensors on ``device``, made once per input and device.

    Made per batch they would cost a copy from pageable host memory each, which on a GPU
    waits for the stream to drain: the host would stop feeding the model every batch.
    """

    def t(values: tuple[float, ...]) -> torch.Tensor:
        per_band = [values[i % len(values)] for i in range(bands)]
        return torch.tensor([per_band[i % bands] for i in range(c)], dtype=dtype, device=device).view(1, c, 1, 1)

    if not stats.lower:
        return t(stats.offset), t(stats.divisor), None, None
    return t(stats.offset), t(stats.divisor), t(stats.lower), t(stats.upper)
