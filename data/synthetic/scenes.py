"""Synthetic GeoTIFF scenes with ground truth, streamed: memory does not grow with the height.

Every pixel is a pure function of its *global* (row, col), the scene size and the seed, so a
scene is rendered and written in row bands and any band height gives the same pixels. Region
shapes come from hashed-lattice value noise (``noise``), built areas from a seeded grid of
cells, and pixel noise from one random generator per fixed 16-row strip.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window

from pipeline.errors import ConfigError

from .noise import _fbm, _hash_unit, _mix, _noise_1d, _value_noise

log = logging.getLogger(__name__)

# Label value = index. Order is part of the contract (masks, checkpoints, QA all use it).
CLASS_NAMES: tuple[str, ...] = ("background", "water", "vegetation", "built")
# RGB display colours, same order; written as the mask's colour table.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = ((166, 128, 84), (33, 102, 172), (77, 175, 74), (215, 48, 39))
MASK_NODATA = 255

SCENE_DTYPES: tuple[str, ...] = ("uint8", "uint16", "float32")
DEFAULT_ORIGIN = (399960.0, 5300040.0)  # UTM 33N upper-left, ~47.9 N 13.7 E (a Sentinel-2 tile corner)
NOISE_TABLE = 1 << 22  # values in the per-scene pool that pixel noise is sliced from
CELL = 37  # built-up grid cell (px): one roof, its street margin and its shadow per cell. Prime, so
#   cell edges never line up with every tile border (tile strides are multiples of 32): aligned
#   structure would read as seams to the QA seam score.

# Reflectance at Sentinel-2-like anchors B2, B3, B4, B5 (red edge), B8 (NIR), B11 (SWIR).
# Materials 0-2 are classes 0-2; materials 3-6 all belong to class ``built``.
_ANCHORS = np.array([
    [0.100, 0.130, 0.170, 0.190, 0.240, 0.320],  # 0 bare soil
    [0.070, 0.060, 0.040, 0.030, 0.015, 0.006],  # 1 water
    [0.030, 0.070, 0.035, 0.120, 0.380, 0.180],  # 2 vegetation
    [0.190, 0.200, 0.210, 0.220, 0.240, 0.270],  # 3 grey roof
    [0.090, 0.100, 0.210, 0.230, 0.260, 0.300],  # 4 red-tile roof
    [0.080, 0.085, 0.090, 0.095, 0.100, 0.120],  # 5 asphalt street
    [0.036, 0.038, 0.040, 0.043, 0.045, 0.054],  # 6 shadow
], dtype=np.float64)
_BAND_PICKS = {2: [2, 4], 3: [0, 1, 2], 4: [0, 1, 2, 4]}  # R+NIR, RGB, RGB+NIR
_PANCHROMATIC = np.array([0.16, 0.04, 0.10, 0.36, 0.32, 0.26, 0.09])  # one band: distinct brightness
_MATERIAL_CLASS = np.array([0, 1, 2, 3, 3, 3, 3], dtype=np.uint8)
# Texture amplitude per material: fine (4 px) mottling and mid-scale (24 px) patches.
_AMP_FINE = np.array([0.05, 0.00, 0.16, 0.03, 0.03, 0.02, 0.0], dtype=np.float32)
_AMP_MID = np.array([0.10, 0.03, 0.12, 0.00, 0.00, 0.00, 0.0], dtype=np.float32)
_NOISE_REL, _NOISE_ABS = 0.04, 0.003  # pixel noise sigma = rel * value + abs (reflectance)
# Reflectance -> stored value, and the range valid pixels are clipped to.
_DTYPE_SCALE = {"uint8": (500.0, 0.0, 255.0), "uint16": (10000.0, 0.0, 10000.0), "float32": (1.0, 0.0, 1.0)}


@dataclass(frozen=True)
class SceneInfo:
    """What :func:`write_scene` wrote: the scene (and mask) path and its grid (``crs`` a rasterio CRS)."""

    path: Path
    mask_path: Path | None
    height: int
    width: int
    bands: int
    dtype: str
    crs: CRS
    transform: Affine
    nodata: float | None
    class_names: tuple[str, ...] = CLASS_NAMES



# ---------------------------------------------------------------- scene layout


@dataclass(frozen=True)
class _Layout:
    """Everything about a scene that is decided once, before any row is rendered."""

    height: int
    width: int
    seed: int
    scale: float  # region size (px): grows with the scene, capped
    veg_threshold: float
    lake_threshold: float
    rivers: tuple[tuple[int, float, float, float], ...]  # (key, centre col, meander amplitude, half width)
    district: np.ndarray  # (cells_y, cells_x) bool: built-up cells
    cells: np.ndarray  # (6, cells_y, cells_x) per cell: top, bottom, left, right, roof material, brightness
    spectra: np.ndarray  # (7 materials, bands) reflectance
    cols: np.ndarray  # pixel-centre columns
    noise: np.ndarray  # NOISE_TABLE standard normals

    def key(self, name: str) -> int:
        return _key(self.seed, name)


def _key(seed: int, name: str) -> int:
    """Stable key of one named field of one seed (no Python ``hash``: it is salted per process)."""
    return _mix(seed, int.from_bytes(name.encode(), "little"))


def _band_spectra(bands: int) -> np.ndarray:
    """(7, bands) reflectance: B,G,R,NIR for 2-4 bands, a smooth resampling of the anchors beyond."""
    if bands == 1:
        return _PANCHROMATIC[:, None].copy()
    if bands <= 4:
        return _ANCHORS[:, _BAND_PICKS[bands]]
    pos = np.linspace(0.0, _ANCHORS.shape[1] - 1, bands)
    return np.stack([np.interp(pos, np.arange(_ANCHORS.shape[1]), row) for row in _ANCHORS])


def _make_layout(height: int, width: int, bands: int, seed: int) -> _Layout:
    scale = float(np.clip(min(height, width) / 3, 96, 1024))
    # Thresholds from a coarse whole-scene sample, so class shares hold for every seed and size.
    stride = max(8, math.ceil(math.sqrt(height * width / 250_000)))
    rs, cs = np.arange(stride / 2, height, stride), np.arange(stride / 2, width, stride)
    veg_t = float(np.quantile(_fbm(_key(seed, "veg"), rs, cs, scale, 3), 0.62))
    lake_t = float(np.quantile(_fbm(_key(seed, "lake"), rs, cs, scale * 1.5, 2), 0.95))
    n_rivers = max(1, round(width / 6000))
    spacing = width / n_rivers
    half_width = float(np.clip(spacing * 0.012, 5, 25))
    rivers = tuple((_key(seed, f"river{k}"), (k + 0.5) * spacing, 0.15 * spacing, half_width) for k in range(n_rivers))
    district, cells = _make_cells(height, width, seed, scale)
    return _Layout(height, width, seed, scale, veg_t, lake_t, rivers, district, cells, _band_spectra(bands),
                   np.arange(width, dtype=np.float64) + 0.5, _noise_table(seed))


def _make_cells(height: int, width: int, seed: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Built-up districts (a low-frequency field plus per-cell jitter) and each cell's roof."""
    cy = np.arange(-(-height // CELL))
    cx = np.arange(-(-width // CELL))
    field = _fbm(_key(seed, "urban"), (cy + 0.5) * CELL, (cx + 0.5) * CELL, scale * 0.8, 2)
    field += np.float32(0.35) * _hash_unit(_key(seed, "urban-jitter"), cy[:, None], cx[None, :])
    district = field > np.quantile(field, 0.8)
    u = [_hash_unit(_key(seed, f"cell{k}"), cy[:, None], cx[None, :]) for k in range(6)]
    top, left = 3 + np.floor(u[0] * 7), 3 + np.floor(u[1] * 7)
    bottom, right = CELL - 4 - np.floor(u[2] * 7), CELL - 4 - np.floor(u[3] * 7)
    material = 3 + (u[4] > 0.6)
    bright = 0.85 + 0.35 * u[5]
    return district, np.stack([top, bottom, left, right, material, bright]).astype(np.float32)


def _valid(lay: _Layout, rows: np.ndarray) -> np.ndarray:
    """Swath-like footprint: a slanted edge on the left, a ragged edge on the right (~10% nodata)."""
    h, w = lay.height, lay.width
    slant = w * (0.14 - 0.16 * rows / h)
    ragged = w * (0.035 + 0.015 * _noise_1d(lay.key("edge"), rows, h / 5)) + 4 * _noise_1d(lay.key("jag"), rows, 6.0, 1)
    return (lay.cols[None, :] >= slant[:, None]) & (lay.cols[None, :] < (w - np.maximum(ragged, 1.0))[:, None])


def _materials(lay: _Layout, r0: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Material index per pixel (see ``_ANCHORS``) and a per-pixel roof brightness factor."""
    cols = lay.cols
    mat = np.where(_fbm(lay.key("veg"), rows, cols, lay.scale, 3) > lay.veg_threshold, 2, 0).astype(np.uint8)
    cy = (r0 + np.arange(rows.size)) // CELL
    cx = np.arange(lay.width) // CELL
    built = lay.district[cy][:, cx]
    bright = np.ones(mat.shape, np.float32)
    rr, cc = np.nonzero(built)
    if rr.size:
        p = lay.cells[:, cy[rr], cx[cc]]
        ly, lx = (r0 + rr) % CELL, cc % CELL
        roof = (ly >= p[0]) & (ly < p[1]) & (lx >= p[2]) & (lx < p[3])
        shadow = ~roof & (ly >= p[0] + 2) & (ly < p[1] + 3) & (lx >= p[2] + 2) & (lx < p[3] + 3)
        mat[rr, cc] = np.where(roof, p[4], np.where(shadow, 6, 5)).astype(np.uint8)
        bright[rr, cc] = np.where(roof, p[5], 1.0)
    water = _fbm(lay.key("lake"), rows, cols, lay.scale * 1.5, 2) > lay.lake_threshold
    meander_scale = float(np.clip(lay.height / 3, 100, 2000))
    for key, centre, amp, half in lay.rivers:
        axis = centre + amp * _noise_1d(key, rows, meander_scale, 3)
        width = half * (1 + 0.3 * _noise_1d(_mix(key, 1), rows, 300.0))
        water |= np.abs(cols[None, :] - axis[:, None]) < width[:, None]
    mat[water] = 1
    return mat, bright


def _noise_table(seed: int) -> np.ndarray:
    """A per-scene pool of standard normal values; pixel noise is read from it row by row."""
    return np.random.Generator(np.random.PCG64([seed, 0x5E9])).standard_normal(NOISE_TABLE, dtype=np.float32)


def _pixel_noise(lay: _Layout, bands: int, r0: int, r1: int) -> np.ndarray:
    """Noise (bands, r1-r0, W): each (band, global row) reads the pool from a hashed offset.

    Copying slices costs ~10x less than drawing normals, and a row's noise depends only on
    its own global index, so it is the same however the rows are banded.
    """
    table, width = lay.noise, lay.width
    rows = np.arange(r0, r1)
    reps = -(-width // table.size)
    pool = np.tile(table, reps + 1) if reps > 1 else table
    span = pool.size - width + 1
    out = np.empty((bands, r1 - r0, width), np.float32)
    for b in range(bands):
        start = (_hash_unit(_key(lay.seed, f"noise{b}"), rows, np.zeros(1, np.int64)) * span).astype(np.int64)
        for i, s in enumerate(np.minimum(start, span - 1)):
            out[b, i] = pool[s:s + width]
    return out


def _render(lay: _Layout, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflectance (bands, n, W) float32, labels (n, W) uint8 and validity for rows [r0, r1)."""
    rows = np.arange(r0, r1, dtype=np.float64) + 0.5
    mat, bright = _materials(lay, r0, rows)
    fine = _value_noise(lay.key("fine"), rows, lay.cols, 4.0)
    mid = _value_noise(lay.key("mid"), rows, lay.cols, 24.0)
    gain = (np.float32(1.0) + _AMP_FINE[mat] * fine + _AMP_MID[mat] * mid) * bright
    noise = _pixel_noise(lay, lay.spectra.shape[1], r0, r1)
    spectra = lay.spectra.astype(np.float32)
    out = np.empty(noise.shape, np.float32)
    for b in range(out.shape[0]):
        v = spectra[:, b][mat] * gain
        out[b] = v + (np.float32(_NOISE_REL) * v + np.float32(_NOISE_ABS)) * noise[b]
    return out, _MATERIAL_CLASS[mat], _valid(lay, rows)


def _encode(refl: np.ndarray, valid: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """Reflectance -> stored values; nodata where invalid, and never nodata where valid."""
    scale, lo, hi = _DTYPE_SCALE[dtype]
    vals = np.clip(refl * np.float32(scale), lo, hi)
    out = vals.astype(dtype) if dtype == "float32" else np.rint(vals).astype(dtype)
    if nodata is None:
        return out
    if not math.isnan(nodata) and lo <= nodata <= hi:
        step = 1 if nodata + 1 <= hi else -1
        clash = (out == nodata) & valid
        out[clash] = nodata + step if dtype != "float32" else np.float32(nodata + step * 1e-4)
    out[:, ~valid] = nodata
    return out


# ---------------------------------------------------------------- scene writer


def _check_scene_args(height: int, width: int, bands: int, dtype: str, nodata: float | None, nodata_border: bool,
                      block: int) -> None:
    if height < 1 or width < 1 or bands < 1:
        raise ConfigError(f"write_scene: got height={height}, width={width}, bands={bands}; all must be >= 1.")
    if dtype not in SCENE_DTYPES:
        raise ConfigError(f"write_scene: dtype {dtype!r} is not supported; use one of {SCENE_DTYPES}.")
    if block < 16 or block % 16:
        raise ConfigError(f"write_scene: block={block} must be a positive multiple of 16 (GeoTIFF tiles), e.g. 512.")
    if nodata is None:
        if nodata_border:
            raise ConfigError("write_scene: nodata_border=True needs a nodata value; "
                              "pass nodata=0 or nodata_border=False.")
        return
    if dtype == "float32":
        if not (math.isnan(nodata) or abs(nodata) < 3.4e38):
            raise ConfigError(f"write_scene: nodata={nodata} does not fit float32; use NaN or a finite number.")
        return
    info = np.iinfo(dtype)
    if math.isnan(nodata) or nodata != int(nodata) or not info.min <= nodata <= info.max:
        raise ConfigError(f"write_scene: nodata={nodata} does not fit {dtype} ({info.min}..{info.max}); "
                          f"use an integer in that range, e.g. 0.")


def _profile(height: int, width: int, count: int, dtype: str, crs: CRS, transform: Affine, nodata: float | None,
             block: int, compress: str, **extra) -> dict:
    predictor = 3 if dtype == "float32" else 2
    return dict(driver="GTiff", height=height, width=width, count=count, dtype=dtype, crs=crs, transform=transform,
                nodata=nodata, tiled=True, blockxsize=block, blockysize=block, compress=compress,
                predictor=predictor, bigtiff="IF_SAFER", num_threads="ALL_CPUS", interleave="pixel", **extra)


def write_scene(path: str | os.PathLike, height: int, width: int, *, bands: int = 4, dtype: str = "uint16",
                seed: int = 0, crs: str | CRS = "EPSG:32633", transform: Affine | None = None,
                nodata: float | None = 0, nodata_border: bool = True, block: int = 512,
                mask_path: str | os.PathLike | None = None, compress: str = "deflate",
                progress: Callable[[int, int], None] | None = None) -> SceneInfo:
    """Write a synthetic multi-band GeoTIFF (and optionally its ground-truth mask), streaming.

    Classes ``CLASS_NAMES`` differ in spectrum (uint16: reflectance x 10000, uint8: x 500,
    float32: 0..1) and texture (water smooth, vegetation mottled, built = roofs on a 32 px
    grid with streets and shadows), so a small CNN with a 64-128 px field of view learns
    them. Rows are rendered ``block`` at a time; pixels do not depend on ``block``.

    Args:
        transform: any affine (rotations allowed); default north-up 10 m from ``DEFAULT_ORIGIN``.
        nodata: must fit ``dtype``; float32 may use NaN. ``None`` requires ``nodata_border=False``.
        nodata_border: mark a swath-like border (~10% of the scene) as nodata in every band.
        mask_path: also write uint8 labels on the same grid, 255 where the scene is nodata.
        progress: called as ``progress(rows_done, height)`` after each row band.
    """
    _check_scene_args(height, width, bands, dtype, nodata, nodata_border, block)
    path = Path(path)
    crs = CRS.from_user_input(crs)
    if transform is None:
        transform = Affine(10.0, 0.0, DEFAULT_ORIGIN[0], 0.0, -10.0, DEFAULT_ORIGIN[1])
    nodata = None if nodata is None else float(nodata)
    lay = _make_layout(height, width, bands, seed)
    mask_nodata = MASK_NODATA if nodata_border else None
    log.info("writing synthetic scene %s (%d x %d x %d %s, seed %d)", path, height, width, bands, dtype, seed)
    mask_path = None if mask_path is None else Path(mask_path)
    # Pixel noise dominates the scene: DEFLATE level 1 measured faster than 6 and no larger.
    level = {"zlevel": 1} if compress.lower() == "deflate" else {}
    with rasterio.Env(GDAL_CACHEMAX=256 * 2**20), ExitStack() as files:
        dst = files.enter_context(rasterio.open(
            path, "w", **_profile(height, width, bands, dtype, crs, transform, nodata, block, compress, **level)))
        mask = None if mask_path is None else files.enter_context(rasterio.open(
            mask_path, "w", **_profile(height, width, 1, "uint8", crs, transform, mask_nodata, block, compress)))
        _describe(dst, mask, seed, bands)
        _stream(lay, dst, mask, block, dtype, nodata, nodata_border, progress)
    return SceneInfo(path, mask_path, height, width, bands, dtype, crs, transform, nodata)


def _describe(dst, mask, seed: int, bands: int) -> None:
    dst.update_tags(SEGPIPE_SYNTHETIC_SEED=str(seed), CLASS_NAMES=",".join(CLASS_NAMES))
    for b in range(bands):
        dst.set_band_description(b + 1, f"synthetic band {b + 1} of {bands}")
    if mask is not None:
        mask.update_tags(CLASS_NAMES=",".join(CLASS_NAMES))
        mask.set_band_description(1, "ground truth: " + ", ".join(f"{i}={n}" for i, n in enumerate(CLASS_NAMES)))
        colormap = {i: (*rgb, 255) for i, rgb in enumerate(CLASS_COLORS)}
        colormap[MASK_NODATA] = (0, 0, 0, 0)
        mask.write_colormap(1, colormap)


def _stream(lay: _Layout, dst, mask, block: int, dtype: str, nodata: float | None, nodata_border: bool,
            progress: Callable[[int, int], None] | None) -> None:
    """Render row band k+1 while one writer thread hands band k to GDAL (one writer per file)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthetic-write") as writer:
        pending = None
        for r0 in range(0, lay.height, block):
            r1 = min(r0 + block, lay.height)
            data, labels = _render_rows(lay, r0, r1, dtype, nodata, nodata_border)
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_rows, dst, mask, Window(0, r0, lay.width, r1 - r0), data, labels)
            if progress is not None:
                progress(r1, lay.height)
        if pending is not None:
            pending.result()


def _render_rows(lay: _Layout, r0: int, r1: int, dtype: str, nodata: float | None,
                 nodata_border: bool) -> tuple[np.ndarray, np.ndarray]:
    """Stored values (bands, n, W) and labels (n, W) of rows [r0, r1), rendered in cache-sized chunks."""
    step = 64
    data = np.empty((lay.spectra.shape[1], r1 - r0, lay.width), dtype)
    labels = np.empty((r1 - r0, lay.width), np.uint8)
    for c0 in range(r0, r1, step):
        c1 = min(c0 + step, r1)
        refl, lab, valid = _render(lay, c0, c1)
        if not nodata_border:
            valid[:] = True
        data[:, c0 - r0:c1 - r0] = _encode(refl, valid, dtype, nodata)
        lab[~valid] = MASK_NODATA
        labels[c0 - r0:c1 - r0] = lab
    return data, labels


def _write_rows(dst, mask, window: Window, data: np.ndarray, labels: np.ndarray) -> None:
    dst.write(data, window=window)
    if mask is not None:
        mask.write(labels, 1, window=window)


