"""Windowed, parallel, block-aligned reads of a scene, and the scene as the engine's plane source.

A *strip* is every column of a band of rows (one grid row of tiles). It is read by
several threads at once, each reading a column chunk aligned to the file's internal
blocks through its own dataset handle (GDAL handles are not thread-safe). Chunk ``j``
is always read through handle ``j``, so blocks straddling two strips are decoded once
and served from that handle's GDAL block cache the second time.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ...threads import pool
from ..vsi import opening
from .info import RasterInfo, read_error, validity

# Per-scene statistics of a file without overviews: this many full-resolution windows of
# SAMPLE_SIDE x SAMPLE_SIDE pixels on an even grid (64 x 0.26 Mpix = 17 Mpix, a few percent of
# a large scene's blocks).
SAMPLE_WINDOWS = 64
SAMPLE_SIDE = 512


def sample_windows(height: int, width: int, block_shape: tuple[int, int],
                   n: int = SAMPLE_WINDOWS, side: int = SAMPLE_SIDE) -> list[Window]:
    """``n`` (or fewer) equal windows on an even grid over the image, inside it, block-aligned.

    Window origins are snapped down to the file's block grid (when blocks are at most
    ``side`` high/wide) so each window decodes whole blocks only; windows never overlap
    and never leave the image.
    """
    per_axis = max(1, math.isqrt(n))
    wh, ww = min(side, height), min(side, width)
    by, bx = (b if b <= side else 1 for b in block_shape)
    rows = _grid(height, wh, per_axis, by)
    cols = _grid(width, ww, per_axis, bx)
    return [Window(x, y, ww, wh) for y in rows for x in cols]


def _grid(size: int, win: int, k: int, snap: int) -> list[int]:
    """Up to ``k`` distinct, non-overlapping origins of ``win``-long windows spread over ``size``."""
    if size <= win:
        return [0]
    k = min(k, size // win)
    step = (size - win) / max(1, k - 1) if k > 1 else 0.0
    origins: list[int] = []
    for i in range(k):
        o = min(int(round(i * step)) // snap * snap, size - win)
        if not origins or o >= origins[-1] + win:
            origins.append(o)
    return origins


class StripReader:
    """Reads strips of a scene with ``workers`` threads, one dataset handle per column chunk."""

    def __init__(self, info: RasterInfo, workers: int = 4, any_band: bool = False) -> None:
        self.info, self.any_band = info, any_band
        bx = max(info.block_shape[1], 16)
        n = max(1, min(workers, math.ceil(info.width / bx)))
        step = math.ceil(math.ceil(info.width / n) / bx) * bx
        self.chunks = [(x, min(step, info.width - x)) for x in range(0, info.width, step)]
        with opening(info.path):
            self._handles = [rasterio.open(info.path) for _ in self.chunks]
        self._locks = [threading.Lock() for _ in self.chunks]
        self._pool = pool("chunks", len(self.chunks))
        self.nonfinite = 0  # pixels with a NaN/Inf value, each counted once (strips overlap)
        self._counted_to = 0  # rows up to here have been counted

    def read_into(self, row0: int, data: np.ndarray, valid: np.ndarray) -> None:
        """Fill ``data`` (B, h, W) and ``valid`` (h, W) with rows ``[row0, row0 + h)``, in place.

        Each chunk thread reads straight into its column slice of the caller's buffers (which
        may be pinned host memory), so a strip is never copied or concatenated.
        Raises InputError naming the file on a bad block (TransientError for a network failure).
        """
        first_new = max(0, self._counted_to - row0)  # rows an earlier (overlapping) strip counted already
        futures = [self._pool.submit(self._read_chunk, j, row0, data, valid, first_new)
                   for j in range(len(self.chunks))]
        self.nonfinite += sum(f.result() for f in futures)
        self._counted_to = max(self._counted_to, row0 + data.shape[1])

    def _read_chunk(self, j: int, row0: int, data: np.ndarray, valid: np.ndarray, first_new: int) -> int:
        """Read column chunk ``j``; NaN/Inf become 0 (the pixel is invalid); returns the new ones' count."""
        x, w = self.chunks[j]
        height = data.shape[1]
        out = data[:, :, x : x + w]
        self._read_window(j, Window(x, row0, w, height), out, valid[:, x : x + w], f"rows {row0}-{row0 + height}")
        if out.dtype.kind == "f":
            bad = ~np.isfinite(out)
            if bad.any():
                out[bad] = 0
                return int(bad[:, first_new:].any(axis=0).sum())
        return 0

    def sample(self, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Pixels spread over the whole scene, for per-scene statistics: (B, h, w) data and validity.

        A file with overviews (or a scene of at most ``4 x max_side`` a side) gives a
        decimated read of the whole scene. Without overviews a decimated read decodes
        every block of the file (single-threaded, longer than a GPU takes for the whole
        scene: bench/RESULTS.md), so instead :data:`SAMPLE_WINDOWS`
        full-resolution windows on an even grid over the scene are read in parallel and
        returned side by side (a ``SAMPLE_SIDE``-row mosaic).
        """
        info = self.info
        if not self._handles[0].overviews(info.bands[0]) and max(info.height, info.width) > 4 * max_side:
            return self._window_sample()
        f = max(1.0, max(info.height, info.width) / max_side)
        shape = (len(info.bands), max(1, int(info.height / f)), max(1, int(info.width / f)))
        ds = self._handles[0]
        with self._locks[0]:
            try:
                data = ds.read(info.bands, out_shape=shape, resampling=Resampling.nearest)
                dmask = (ds.read_masks(info.bands[0], out_shape=shape[1:], resampling=Resampling.nearest)
                         if info.mask_kind == "dataset" else None)
            except RasterioError as exc:
                raise read_error(info.path, "an overview sample", exc) from exc
        return data, validity(data, info, dmask, self.any_band)

    def _window_sample(self) -> tuple[np.ndarray, np.ndarray]:
        windows = sample_windows(self.info.height, self.info.width, self.info.block_shape)
        h = windows[0].height
        data = np.empty((len(self.info.bands), h, sum(w.width for w in windows)), np.dtype(self.info.dtype))
        valid = np.empty(data.shape[1:], bool)
        x0 = np.cumsum([0] + [w.width for w in windows])
        futures = [self._pool.submit(self._read_window, i % len(self._handles), win, data[:, :, x0[i]:x0[i + 1]],
                                     valid[:, x0[i]:x0[i + 1]], f"a sample window at row {win.row_off}, column "
                                     f"{win.col_off}") for i, win in enumerate(windows)]
        for fut in futures:
            fut.result()
        return data, valid

    def _read_window(self, j: int, win: Window, out: np.ndarray, valid: np.ndarray, what: str) -> None:
        """Read ``win`` through handle ``j`` into ``out`` (B, h, w) and its validity into ``valid``."""
        with self._locks[j]:
            ds = self._handles[j]
            try:
                ds.read(self.info.bands, window=win, out=out)
                dmask = ds.read_masks(self.info.bands[0], window=win) if self.info.mask_kind == "dataset" else None
            except RasterioError as exc:
                raise read_error(self.info.path, what, exc) from exc
        valid[:] = validity(out, self.info, dmask, self.any_band)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for h in self._handles:
            h.close()

    def __enter__(self) -> StripReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RasterSource:
    """A scene as the engine's :class:`~pipeline.engine.loop.PlaneSource`: one plane of its bands.

    Each block is one strip, read straight into the engine's host buffer (which may be
    page-locked memory), so a strip is never copied or concatenated.
    """

    planes = 1
    context = 1

    def __init__(self, info: RasterInfo, reader: StripReader) -> None:
        self.info, self.reader = info, reader
        self.height, self.width = info.height, info.width
        self.channels = len(info.bands)
        self.dtype = np.dtype(info.dtype)

    def fill(self, strips: Sequence, h: int, data: np.ndarray, valid: np.ndarray) -> tuple[int, None, bool]:
        (strip,) = strips
        self.reader.read_into(strip.y, data[0], valid[0])
        return 1, None, False
