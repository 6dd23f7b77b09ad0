"""Report pictures from small arrays: stretch, overlays, colour ramps, WebP, data URIs.

Compute only: arrays in, WebP bytes out (Pillow). Photographic pictures (the input with the
mask over it, heat maps) are lossy WebP; class maps are lossless WebP, whose colours stay
exact. Against the PNGs written before, a demo page shrank from 956 KB to about a tenth.
The arrays come from decimated reads (:mod:`pipeline.qa.read`), from the streamed
thumbnails of :class:`~pipeline.qa.stats.SceneQA`, or, for volumes, from its centre planes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Colour ramps (low -> high). VIRIDIS: confidence itself; HEAT: doubt (share of unsure pixels,
# or how far a voxel's confidence is below 1), drawn over a dimmed grey picture.
VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
HEAT = np.array([[255, 237, 160], [254, 178, 76], [252, 78, 42], [210, 14, 32], [128, 0, 38]], dtype=np.float64)
LOSSY_QUALITY = 82


@dataclass(frozen=True)
class Legend:
    """A colour bar: CSS gradient, tick labels at positions in [0, 1], and what it measures."""

    gradient: str
    ticks: tuple[tuple[float, str], ...]
    note: str


@dataclass(frozen=True)
class Picture:
    """One picture of a report page.

    Attributes:
        caption: what it shows.
        uri: the image as a data URI.
        markers: letters shown at its (left, right, top, bottom) edges (volume planes).
        legend: the colour bar shown under it.
    """

    caption: str
    uri: str
    markers: tuple[str, str, str, str] | None = None
    legend: Legend | None = None


def webp(img: np.ndarray, *, lossless: bool) -> bytes:
    """(h, w) grey, (h, w, 3) RGB or (h, w, 4) RGBA uint8 -> WebP bytes."""
    buf = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    if lossless:
        image.save(buf, format="WEBP", lossless=True, quality=100, method=4)
    else:
        image.save(buf, format="WEBP", quality=LOSSY_QUALITY, method=4)
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/webp") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def stretch(data: np.ndarray, valid: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """(B, h, w) any dtype -> (h, w, 3) uint8: each band clipped to its valid percentiles.

    One band is shown grey; three or more as RGB from the first three.
    """
    bands = data[:3] if data.shape[0] >= 3 else data[:1]
    out = np.zeros((*data.shape[1:], len(bands)), dtype=np.uint8)
    for i, band in enumerate(bands.astype(np.float64)):
        vals = band[valid & np.isfinite(band)]
        if vals.size == 0:
            continue
        lo, hi = np.percentile(vals, [low, high])
        scaled = (band - lo) / (hi - lo) if hi > lo else np.zeros_like(band)
        out[:, :, i] = np.round(np.clip(np.nan_to_num(scaled), 0, 1) * 255).astype(np.uint8)
    out[~valid] = 0
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out


def overlay(base: np.ndarray, labels: np.ndarray, colors: Sequence[Sequence[int]], alpha: float = 0.45,
            skip_background: bool = True, nodata: int = 255) -> np.ndarray:
    """Tint ``base`` (h, w, 3) with class colours where ``labels`` (h, w) has a class.

    Class 0 (background) is left untinted by default; nodata stays as the base shows it.
    """
    lut = np.zeros((256, 3), dtype=np.float64)
    lut[: len(colors)] = np.asarray(colors, dtype=np.float64)[:256]
    tint = np.zeros(256, dtype=bool)
    tint[: len(colors)] = True
    tint[nodata] = False
    if skip_background:
        tint[0] = False
    lab = labels.astype(np.int64) & 0xFF
    a = np.where(tint[lab], alpha, 0.0)[:, :, None]
    return np.round(base * (1 - a) + lut[lab] * a).astype(np.uint8)


def label_image(labels: np.ndarray, colors: Sequence[Sequence[int]], nodata: int = 255) -> np.ndarray:
    """(h, w) labels -> (h, w, 4) RGBA class colours, nodata transparent."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[: len(colors), :3] = np.asarray(colors, dtype=np.uint8)[:256]
    lut[: len(colors), 3] = 255
    lut[nodata, 3] = 0
    return lut[labels.astype(np.int64) & 0xFF]


def ramp(values: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> (..., 3) float RGB, linear between the anchors."""
    x = np.clip(np.nan_to_num(values, nan=0.0), 0, 1) * (len(anchors) - 1)
    i = np.minimum(x.astype(np.int64), len(anchors) - 2)
    f = (x - i)[..., None]
    return anchors[i] * (1 - f) + anchors[i + 1] * f


def dim_grey(rgb: np.ndarray) -> np.ndarray:
    """A picture as a dim grey backdrop (40-70 % brightness), so colours drawn over it stand out."""
    luma = rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    grey = 100 + 0.45 * luma
    return np.repeat(grey[..., None], 3, axis=-1)


HEAT_FLOOR = 0.02  # doubt below this is left clear: otherwise every pixel at 0.99 would be tinted


def heat_overlay(backdrop: np.ndarray, doubt: np.ndarray) -> np.ndarray:
    """``doubt`` in [0, 1] (NaN: nothing known) drawn in HEAT over ``backdrop`` (h, w, 3 float).

    Opacity grows with the square root of the doubt, so a cell where 5 % of the pixels are
    unsure is already clearly tinted; below ``HEAT_FLOOR`` the backdrop stays as it is.
    """
    d = np.clip(np.nan_to_num(doubt, nan=0.0), 0, 1)
    a = np.where(d >= HEAT_FLOOR, 0.15 + 0.75 * np.sqrt(d), 0.0)[..., None]
    out = backdrop * (1 - a) + ramp(d, HEAT) * a
    out[np.isnan(doubt)] *= 0.6  # no valid pixel: darker
    return np.round(out).astype(np.uint8)


def ramp_css(anchors: np.ndarray = VIRIDIS) -> str:
    """A ramp as a CSS gradient, for a legend."""
    stops = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in anchors)
    return f"linear-gradient(to right, {stops})"


def small(labels: np.ndarray, side: int = 96) -> np.ndarray:
    """Nearest-neighbour reduction of a label picture to at most ``side`` pixels on its longer side."""
    h, w = labels.shape[:2]
    f = max(1.0, max(h, w) / side)
    rows = np.minimum(((np.arange(max(1, round(h / f))) + 0.5) * f).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(max(1, round(w / f))) + 0.5) * f).astype(np.int64), w - 1)
    return labels[np.ix_(rows, cols)]
