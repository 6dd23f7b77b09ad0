"""Streaming GeoTIFF sinks that end as validated Cloud-Optimized GeoTIFFs.

Rows arrive in order (bands of the one plane of a scene). They are buffered to whole
block rows and written to a tiled, compressed temporary GeoTIFF in the output folder.
A class map's mode overviews are built as its rows stream (:mod:`.overviews`, one more
temporary file per level); ``finish()`` has GDAL's COG driver copy the lot into a COG
(scores get GDAL's average overviews there), validates the copy with rio-cogeo and
renames it into place. A crash leaves only ``.partial`` files, never an output that
looks finished. Everything ``finish()`` does is time the model cannot overlap, so it is
kept to a copy (bench/RESULTS.md has the figures).

GDAL datasets are not thread-safe for writing: one thread owns all writes of a sink.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.io import MemoryFile
from rasterio.shutil import copy as gdal_copy

from ...errors import OutputError
from ...files import temp_path
from ...options import COMPRESSIONS, Compress
from ...threads import Consumer, Task
from .overviews import ModePyramid, level_shapes, vrt_with_overviews

log = logging.getLogger(__name__)

BLOCK = 512
__all__ = ["BLOCK", "COMPRESSIONS", "Compress", "GeoTiffSink", "Grid", "OutputSpec", "cog_problems"]


@dataclass(frozen=True)
class Grid:
    """The output pixel grid: the input's own size, CRS and transform (rotation kept)."""

    width: int
    height: int
    crs: CRS | None
    transform: Affine


@dataclass(frozen=True)
class OutputSpec:
    """One output raster: what it holds and how it is encoded."""

    path: Path
    count: int
    dtype: str
    nodata: float
    overview_resampling: Literal["mode", "nearest", "average"] = "mode"
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    descriptions: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    scale: float | None = None  # physical value = stored value * scale (e.g. 1/254 for probabilities)
    classes: int | None = None  # a class map's number of class ids (speeds up its mode overviews)


class _TiledFile:
    """A tiled, compressed GeoTIFF written in row order, whole block rows at a time."""

    def __init__(self, path: Path, width: int, height: int, count: int, dtype: str, nodata: float,
                 crs: CRS | None, transform: Affine) -> None:
        self.path, self.width, self.height = path, width, height
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._next_row = 0
        predictor = 3 if np.dtype(dtype).kind == "f" else 2
        self.ds = _open_temp(path, dict(
            driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs=crs, transform=transform,
            nodata=nodata, tiled=True, blockxsize=BLOCK, blockysize=BLOCK, predictor=predictor, bigtiff="IF_SAFER"))

    @property
    def complete(self) -> bool:
        return self._next_row == self.height and not self._pending_rows

    def write(self, row0: int, rows: np.ndarray) -> None:
        """Append rows ``[row0, row0 + h)``; ``rows`` is (h, W) or (count, h, W)."""
        if rows.ndim == 2:
            rows = rows[None]
        if row0 != self._next_row + self._pending_rows:
            raise ValueError(f"rows must arrive in order: got {row0}, expected {self._next_row + self._pending_rows}")
        self._pending.append(rows)
        self._pending_rows += rows.shape[1]
        end = self._next_row + self._pending_rows
        aligned = end if end == self.height else (end // BLOCK) * BLOCK
        if aligned > self._next_row:
            self._flush(aligned)

    def _flush(self, until: int) -> None:
        data = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        n = until - self._next_row
        self.ds.write(data[:, :n], window=((self._next_row, until), (0, self.width)))
        rest = data[:, n:]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_rows = rest.shape[1]
        self._next_row = until

    def close(self) -> None:
        try:
            if not self.ds.closed:
                self.ds.close()
        except RasterioError:
            pass


class GeoTiffSink:
    """Receives row bands of one output and produces its COG.

    A single-band class map (``overview_resampling="mode"``) gets its mode overviews built
    while the rows stream (:mod:`.overviews`); the COG driver then only copies them.
    Other outputs get GDAL's overviews at ``finish()``.
    """

    def __init__(self, spec: OutputSpec, grid: Grid, compress: Compress = "deflate") -> None:
        self._validator = _validator()
        self.spec = spec
        self.grid = grid
        self.compress = compress
        self.tmp = temp_path(spec.path, ".tif")
        self.cog_tmp = temp_path(spec.path, ".tif")
        self._levels: list[_TiledFile] = []
        self._pyramid: ModePyramid | None = None
        self._pyramid_thread: Consumer[np.ndarray] | None = None
        try:
            self._file = _TiledFile(self.tmp, grid.width, grid.height, spec.count, spec.dtype, spec.nodata,
                                    grid.crs, grid.transform)
            if spec.overview_resampling == "mode" and spec.count == 1 and np.dtype(spec.dtype).kind in "iu":
                self._start_pyramid()
        except RasterioError as exc:
            self.abort()
            raise OutputError(f"{spec.path.parent}: cannot create output file ({exc})") from exc
        ds = self._file.ds
        if spec.colormap:
            ds.write_colormap(1, spec.colormap)
        for i, d in enumerate(spec.descriptions[: spec.count], start=1):
            ds.set_band_description(i, d)
        if spec.scale is not None:
            ds.scales = (spec.scale,) * spec.count
        if spec.tags:
            ds.update_tags(**spec.tags)

    def _start_pyramid(self) -> None:
        g, spec = self.grid, self.spec
        for h, w in level_shapes(g.height, g.width, BLOCK):
            transform = g.transform @ Affine.scale(g.width / w, g.height / h)
            self._levels.append(_TiledFile(temp_path(spec.path, ".tif"), w, h, 1, spec.dtype, spec.nodata, g.crs,
                                           transform))
        self._pyramid = ModePyramid(g.height, g.width, BLOCK, int(spec.nodata), [lv.write for lv in self._levels],
                                    spec.classes)
        # The levels are computed and written in a thread of their own (it alone touches the
        # level files), beside the full-resolution writes: on a many-core GPU host the
        # writer thread is the one that must keep pace with the model.
        self._pyramid_thread = Consumer(self._pyramid.add, role="overviews", maxsize=2)

    def write(self, row0: int, rows: np.ndarray) -> None:
        """Append rows ``[row0, row0 + h)``; ``rows`` is (h, W) or (count, h, W) (not modified later)."""
        self._file.write(row0, rows)
        if self._pyramid_thread is not None:
            self._pyramid_thread.put(rows if rows.ndim == 2 else rows[0])

    def finish(self) -> Path:
        """Close, convert to a validated COG, rename into place; returns the final path."""
        if not self._file.complete:
            raise ValueError(f"{self.spec.path}: only {self._file._next_row} of {self.grid.height} rows written")
        if self._pyramid_thread is not None:
            try:
                self._pyramid_thread.close()
            except BaseException:
                self.abort()
                raise
        self._file.close()
        for level in self._levels:
            level.close()
        opts = dict(driver="COG", compress=self.compress.upper(), predictor="YES", blocksize=BLOCK,
                    bigtiff="IF_SAFER", num_threads="ALL_CPUS")
        try:
            if self._pyramid is not None:
                if not self._pyramid.complete or not all(lv.complete for lv in self._levels):
                    raise ValueError(f"{self.spec.path}: overview levels incomplete")
                source = self.tmp.with_suffix(".vrt")
                gdal_copy(str(self.tmp), str(source), driver="VRT")
                vrt_with_overviews(source, [lv.path for lv in self._levels])
                opts["overviews"] = "FORCE_USE_EXISTING"
            else:
                source = self.tmp
                opts["overview_resampling"] = self.spec.overview_resampling.upper()
            gdal_copy(str(source), str(self.cog_tmp), **opts)
        except RasterioError as exc:
            self.abort()
            raise OutputError(f"{self.spec.path}: COG conversion failed: {exc}") from exc
        self._validator.result()
        problems = cog_problems(self.cog_tmp)
        if problems:
            self.abort()
            raise OutputError(f"{self.spec.path}: written file is not a valid COG: {'; '.join(problems)}")
        os.replace(self.cog_tmp, self.spec.path)
        self._remove_temporaries()
        return self.spec.path

    def abort(self) -> None:
        """Remove every temporary file of this sink (safe to call more than once)."""
        if self._pyramid_thread is not None:
            self._pyramid_thread.close(abort=True)  # it writes the level files: let it stop first
        for f in (getattr(self, "_file", None), *self._levels):
            if f is not None:
                f.close()
        self.cog_tmp.unlink(missing_ok=True)
        self._remove_temporaries()

    def _remove_temporaries(self) -> None:
        for p in (self.tmp, self.tmp.with_suffix(".vrt"), *(lv.path for lv in self._levels)):
            p.unlink(missing_ok=True)


# The temporary file is read once, by the COG conversion, which encodes the output as asked
# (``compress``): a fast codec here halves the writer thread's encoding time at the same
# conversion time (bench/RESULTS.md). GDAL builds without ZSTD get DEFLATE at level 1.
def _open_temp(path: Path, profile: dict) -> rasterio.io.DatasetWriter:
    codec = dict(compress="zstd", zstd_level=1) if gtiff_supports("zstd") else dict(compress="deflate", zlevel=1)
    return rasterio.open(path, "w", **profile, **codec)


@functools.cache
def gtiff_supports(codec: str) -> bool:
    """Whether this GDAL writes GeoTIFFs with ``codec`` (an unknown one only warns and stores raw)."""
    profile = dict(driver="GTiff", width=8, height=8, count=1, dtype="uint8", transform=Affine(1, 0, 0, 0, -1, 8))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with MemoryFile() as mem:
                with mem.open(**profile, compress=codec) as ds:
                    ds.write(np.zeros((1, 8, 8), np.uint8))
                with mem.open() as ds:
                    return (ds.compression.value if ds.compression else "").lower() == codec.lower()
    except RasterioError:
        return False


@functools.cache
def _validator() -> Task[object]:
    """Import rio-cogeo (it pulls in pyproj and morecantile) in the background while rows stream,
    not in ``finish()`` after the last row (once per process)."""
    return Task(importlib.import_module, "rio_cogeo.cogeo", role="import")


def cog_problems(path: Path) -> list[str]:
    """Errors rio-cogeo's validator finds in ``path`` (empty list: a valid COG).

    rio-cogeo decides "tiled" by ``block width != image width``, so a level exactly one
    block wide (512 px) reads as striped. Such reports are dropped when the level really
    has square BLOCK x BLOCK tiles.
    """
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _warnings = cog_validate(str(path), quiet=True)
    if valid:
        return []
    return [e for e in errors if not _false_not_tiled(path, e)] if errors else ["not a valid COG"]


def _false_not_tiled(path: Path, error: str) -> bool:
    if "not tiled" not in error:
        return False
    level = None
    if error.startswith("Overview of index"):
        level = int(error.split()[3])
    opts = {} if level is None else {"OVERVIEW_LEVEL": level}
    with rasterio.open(path, **opts) as ds:
        return tuple(ds.block_shapes[0]) == (BLOCK, BLOCK)
