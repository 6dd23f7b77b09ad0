"""Reads QA needs: decimated scene thumbnails and per-scene QA documents (I/O only)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

log = logging.getLogger(__name__)


def read_decimated(path: Path, bands: list[int], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """``bands`` of ``path`` at ``shape`` (rows, cols) with their validity, or None if unreadable.

    ``out_shape`` makes GDAL read from overviews when the file has them and decimate
    block by block otherwise: the scene is never held whole at full resolution.
    """
    try:
        with rasterio.open(path) as ds:
            bands = [b for b in bands if 1 <= b <= ds.count] or [1]
            data = ds.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
            mask = ds.read_masks(bands[0], out_shape=shape, resampling=Resampling.nearest)
    except (RasterioError, OSError) as exc:
        log.warning("%s: no thumbnail (%s)", path, exc)
        return None
    valid = mask > 0
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(axis=0)
    return data, valid


def read_json(path: Path) -> dict | None:
    """A JSON document, or None when missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
