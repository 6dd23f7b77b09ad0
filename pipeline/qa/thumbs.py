"""Report pictures from small arrays: stretch, overlay, colour ramp, PNG, base64.

Compute only: arrays in, PNG bytes out (a tiny zlib PNG encoder, so no imaging library
is needed). The arrays come from decimated reads (:mod:`pipeline.qa.read`), from the
streaming thumbnails of :class:`~pipeline.qa.stats.SceneQA`, or, for volumes, from
slices the volume path hands over.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

# Confidence ramp anchors (viridis, low -> high); nodata is transparent.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def png_bytes(img: np.ndarray) -> bytes:
    """Encode an (h, w) grey, (h, w, 3) RGB or (h, w, 4) RGBA uint8 array as PNG."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    color_type = {1: 0, 3: 2, 4: 6}[c]
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), img.reshape(h, w * c)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


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


def confidence_image(conf: np.ndarray) -> np.ndarray:
    """(h, w) confidence in [0, 1], NaN = nodata -> (h, w, 4) RGBA on a viridis-like ramp."""
    x = np.clip(np.nan_to_num(conf, nan=0.0), 0, 1) * (len(_RAMP) - 1)
    i = np.minimum(x.astype(np.int64), len(_RAMP) - 2)
    f = (x - i)[..., None]
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    alpha = np.where(np.isfinite(conf), 255, 0)[..., None]
    return np.concatenate([np.round(rgb), alpha], axis=-1).astype(np.uint8)


def ramp_css() -> str:
    """The confidence ramp as a CSS gradient, for the legend."""
    stops = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in _RAMP)
    return f"linear-gradient(to right, {stops})"


def plane_overlays(planes: Mapping[str, tuple[np.ndarray, np.ndarray]], colors: Sequence[Sequence[int]],
                   alpha: float = 0.45) -> dict[str, str]:
    """Volumes: plane name -> data URI of (grey image, labels) slices with the mask overlaid."""
    out = {}
    for name, (image, labels) in planes.items():
        valid = np.isfinite(image) if image.dtype.kind == "f" else np.ones(image.shape, dtype=bool)
        base = stretch(image[None], valid, 0.5, 99.5)
        out[name] = data_uri(png_bytes(overlay(base, labels, colors, alpha)))
    return out
