"""The slice loop of a volume: 2.5D slabs -> in-plane tiles -> model -> stitched slice planes.

Two threads share the work, as for scenes (``pipeline.scene``):

    prefetch thread   the next batch's planes: gather (slab_planes), normalise, pad, pin
    main thread       device copy, 2.5D channel gather, tiles, model, streaming stitcher

Units of work are ``(slice, tile)`` pairs in slice order, then grid order; a model call
takes ``batch_size`` consecutive units, so one batch holds several small slices (a
512 x 512 plane with 512 px tiles is one tile) or part of a large one. Because a slice's
tiles are consecutive, one :class:`~pipeline.stitch.StreamingStitcher` suffices: it is
reset after each slice. Host memory is one batch of planes (ahead, plus the one in use),
device memory the same plus the stitcher's ``K x tile x W`` rows; never the volume x K.

Everything here is compute on arrays; nothing opens a file.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..infer import Predictor
from ..prefetch import prefetch
from ..stitch import BandReducer, HostCopies, PendingBand, RowBand, StreamingStitcher
from ..tiling import Tile, TileGrid, pad_mode
from .slicing import slab_planes, slab_valid

if TYPE_CHECKING:
    from .stream import SliceArrival


Normaliser = Callable[[np.ndarray], np.ndarray]


class FinishedSlice(RowBand):
    """One predicted slice plane (H, W) in canonical slice convention (``slicing``).

    A :class:`~pipeline.stitch.RowBand` whose ``row0`` is the slice index along the slicing
    axis (so the scene's writer thread, ``workers.RowWriter``, takes it as it is) and whose
    rows are the whole plane. Labels are 0 where the input was invalid (NIfTI labels have no
    nodata); confidence and probabilities are 255 there; ``tallies`` cover the whole plane.
    """

    @property
    def index(self) -> int:
        """The slice index along the slicing axis."""
        return self.row0


@dataclass(frozen=True)
class _Unit:
    """One tile of one slice, and whether it closes a grid row / the slice."""

    slice: int
    tile: Tile
    ends_row: bool
    ends_slice: bool


@dataclass
class _HostBatch:
    units: list[_Unit]
    first: int  # slice index of planes' first centre slice (where[j] belongs to slice first + j)
    planes: torch.Tensor  # (u, H', W') float32 normalised + padded; on the GPU already (see ready)
    where: torch.Tensor  # (n, context) int64 indices into planes
    valid: torch.Tensor | None  # (n, H, W) bool of the centre slices, None when all valid
    ready: torch.cuda.Event | None = None  # GPU: the copies (on the engine's copy stream) are done

    def on_device(self, device: torch.device) -> _HostBatch:
        """The batch for kernels on the current stream: it waits for the copies, and the
        allocator learns the tensors are used there (they were made on the copy stream)."""
        if self.ready is None:
            return self
        compute = torch.cuda.current_stream(device)
        compute.wait_event(self.ready)
        for t in (self.planes, self.where, self.valid):
            if t is not None:
                t.record_stream(compute)
        return self


class SliceEngine:
    """Predicts the slices of one canonical volume along one axis, in order.

    Args:
        predictor: the batched model call (device, precision, TTA).
        grid: in-plane tiling of one slice plane (H, W).
        num_classes: K, for the stitcher.
        blend: blend window name (``blend.BLEND_WINDOWS``).
        context: 2.5D context (odd); the model's input channels.
        batch_size: tiles per model call.
        confidence / probabilities: also produce uint8 confidence / per-class planes.
        reducers: run on each finished row band on the device (``stitch.BandReducer``); a
            slice plane's results are merged (``seam_rows`` concatenated, the rest summed).
    """

    def __init__(self, predictor: Predictor, grid: TileGrid, num_classes: int, *, blend: str, context: int,
                 batch_size: int, confidence: bool = False, probabilities: bool = False,
                 reducers: Sequence[BandReducer] = ()) -> None:
        self.predictor, self.grid, self.context, self.batch_size = predictor, grid, context, batch_size
        self.device = predictor.device
        self.stitcher = StreamingStitcher(
            grid, num_classes, blend, self.device, nodata=0,  # invalid voxels: background in the label volume
            label_dtype=torch.uint8 if num_classes <= 256 else torch.int32,
            confidence=confidence, probabilities=probabilities, reducers=reducers)
        self._all_valid = torch.ones((grid.read_h, grid.read_w), dtype=torch.bool, device=self.device)
        # One tile per slice (a 512 x 512 plane at 512 px tiles, the rule for CT and MR): the blend
        # weights cancel, so a batch of slices is finished in one go on the device, one host copy
        # per batch instead of one per slice, when every reducer can take a stack of planes.
        self.reducers = tuple(reducers)
        self.whole_planes = grid.n_tiles == 1 and all(callable(getattr(r, "planes", None)) for r in self.reducers)
        self.timings = dict(read_wait_s=0.0, decode_wait_s=0.0, prepare_s=0.0, infer_s=0.0, stitch_s=0.0)

    def run(self, data: np.ndarray, valid: np.ndarray | None, axis: int,
            normalise: Normaliser, arrival: SliceArrival | None = None) -> Iterator[FinishedSlice]:
        """Yield every slice along ``axis`` of ``data`` (canonical float32), in index order.

        ``normalise`` maps raw planes to model input elementwise (the volume's statistics,
        computed once); it runs in the prefetch thread, ahead of the device. ``arrival``:
        ``data`` is still being decoded; each slab waits for the slices it needs.
        """
        n_slices = data.shape[axis]
        host = self._prefetch(self._host_batches(data, valid, axis, normalise, n_slices, arrival))
        bands: list[PendingBand] = []  # rows of the slice being stitched, on their way to the host
        # Each batch's finished slices are taken to the host only after the next batch is queued
        # on the device, so a GPU never idles while the host waits for them.
        queued: Callable[[], list[FinishedSlice]] | None = None
        for hb in host:
            t = time.perf_counter()
            probs = self.predictor(self._model_input(hb))
            t2 = time.perf_counter()
            if self.whole_planes:
                finished = self._finish_planes(hb, probs).resolve
            else:
                valid_dev = None if hb.valid is None else hb.valid.to(self.device, non_blocking=True)
                done: list[tuple[int, list[PendingBand]]] = []
                for i, u in enumerate(hb.units):
                    self.stitcher.add(u.tile, probs[i], self._valid_tile(valid_dev, u.slice - hb.first, u.tile))
                    if u.ends_row:
                        bands.append(self.stitcher.finish_row_deferred())
                    if u.ends_slice:
                        done.append((u.slice, bands))
                        bands = []
                        self.stitcher.reset()
                finished = functools.partial(_join_pending, done)
            previous, queued = queued, finished
            self.timings["infer_s"] += t2 - t
            self.timings["stitch_s"] += time.perf_counter() - t2
            if previous is not None:
                yield from previous()
        if queued is not None:
            yield from queued()

    def _finish_planes(self, hb: _HostBatch, probs: torch.Tensor) -> _PendingPlanes:
        """Slices that are one tile each: argmax, quantise, entropy and tallies for the batch at once.

        What the stitcher computes for a single tile, without its blend: the weights of a
        lone tile divide out (weight x p / weight), so the probabilities are used as they are.
        """
        st, g = self.stitcher, self.grid
        n = len(hb.units)
        p = probs[:, :, : g.height, : g.width]
        if hb.valid is None:
            valid = torch.ones((n, g.height, g.width), dtype=torch.bool, device=self.device)
        else:
            valid = hb.valid.to(self.device, non_blocking=True)
        labels, conf, probs_u8, entropy = st.quantise(p, valid)
        valid_n = valid.sum(dim=(1, 2))
        tallies: dict[str, torch.Tensor] = {}
        for reducer in self.reducers:
            tallies.update(reducer.planes(labels, valid, conf))  # type: ignore[attr-defined]
        copies = HostCopies({"labels": labels, "valid": valid, "confidence": conf, "probabilities": probs_u8,
                             "entropy": entropy, "valid_n": valid_n}, tallies)
        return _PendingPlanes([u.slice for u in hb.units], copies)

    # -- host side (prefetch thread) -------------------------------------------------------
    def _units(self, n_slices: int) -> Iterator[_Unit]:
        last_col, last_row = len(self.grid.col_offsets) - 1, self.grid.n_rows - 1
        for s in range(n_slices):
            for tile in self.grid:
                ends_row = tile.col == last_col
                yield _Unit(s, tile, ends_row, ends_row and tile.row == last_row)

    def _host_batches(self, data: np.ndarray, valid: np.ndarray | None, axis: int, normalise: Normaliser,
                      n_slices: int, arrival: SliceArrival | None) -> Iterator[_HostBatch]:
        units = self._units(n_slices)
        # GPU: this (prefetch) thread also uploads each batch, on a stream of its own, so the
        # copy overlaps the model's work on the previous batch (``_HostBatch.on_device``).
        copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        while batch := list(islice(units, self.batch_size)):
            slices = np.arange(batch[0].slice, batch[-1].slice + 1)
            if arrival is not None:  # the last centre slice and its context after it
                t = time.perf_counter()
                arrival.wait(int(slices[-1]) + self.context // 2 + 1)
                self.timings["decode_wait_s"] += time.perf_counter() - t
            t = time.perf_counter()
            planes, where = slab_planes(data, axis, slices, self.context)
            planes = self._pad(normalise(planes))
            vmask = None if valid is None else torch.from_numpy(slab_valid(valid, data.shape, axis, slices))
            hb = _HostBatch(batch, int(slices[0]), torch.from_numpy(planes), torch.from_numpy(where), vmask)
            if copy_stream is not None:
                hb = _upload(hb, self.device, copy_stream)
            self.timings["prepare_s"] += time.perf_counter() - t
            yield hb

    def _pad(self, planes: np.ndarray) -> np.ndarray:
        """Pad (u, H, W) planes up to the network's tile shape where a side is smaller than a tile.

        The same padding as the scene engine's (``tiling.pad_mode``): a side
        shorter than the tile is covered by one window, so padding the plane equals padding
        each window.
        """
        g = self.grid
        ph, pw = max(0, g.tile_h - planes.shape[1]), max(0, g.tile_w - planes.shape[2])
        if ph == 0 and pw == 0:
            return planes
        mode = pad_mode(planes.shape[1], planes.shape[2], ph, pw)
        mode = "edge" if mode == "replicate" else mode  # numpy's name
        return np.pad(planes, ((0, 0), (0, ph), (0, pw)), mode=mode)

    def _prefetch(self, batches: Iterator[_HostBatch]) -> Iterator[_HostBatch]:
        """Run ``batches`` one ahead in a daemon thread; its errors are raised here."""
        yield from prefetch(batches, maxsize=1, name="segpipe-slabs", on_wait=self._waited)

    def _waited(self, seconds: float) -> None:
        self.timings["read_wait_s"] += seconds
    def _model_input(self, hb: _HostBatch) -> torch.Tensor:
        """(N, context, tile_h, tile_w): the 2.5D stack is gathered on the device from distinct planes."""
        hb.on_device(self.device)
        x = hb.planes.to(self.device)[hb.where.to(self.device)]  # (n, context, H', W'); CPU: no copy
        g = self.grid
        if g.n_tiles == 1 and x.shape[-2:] == (g.tile_h, g.tile_w):
            return x  # one tile per slice, consecutive slices: the slab is the batch
        return torch.stack([
            x[u.slice - hb.first, :, u.tile.window.row_off: u.tile.window.row_off + g.tile_h,
              u.tile.window.col_off: u.tile.window.col_off + g.tile_w]
            for u in hb.units
        ])

    def _valid_tile(self, valid: torch.Tensor | None, j: int, tile: Tile) -> torch.Tensor:
        if valid is None:
            return self._all_valid
        w = tile.window
        return valid[j, w.row_off: w.row_off + w.height, w.col_off: w.col_off + w.width]


def _upload(hb: _HostBatch, device: torch.device, stream: torch.cuda.Stream) -> _HostBatch:
    """Copy a batch to the GPU on ``stream`` (from page-locked memory, not waited for)."""
    with torch.cuda.stream(stream):
        moved = [None if t is None else t.pin_memory().to(device, non_blocking=True)
                 for t in (hb.planes, hb.where, hb.valid)]
        ready = torch.cuda.Event()
        ready.record(stream)
    return _HostBatch(hb.units, hb.first, moved[0], moved[1], moved[2], ready)


@dataclass
class _PendingPlanes:
    """A batch of whole-plane slices whose copy to the host is queued (one per batch)."""

    slices: list[int]
    copies: HostCopies

    def resolve(self) -> list[FinishedSlice]:
        h, tallies = self.copies.wait()
        conf, probs = h["confidence"], h["probabilities"]
        return [FinishedSlice(s, h["labels"][j], h["valid"][j], None if conf is None else conf[j],
                              None if probs is None else probs[j], float(h["entropy"][j]), int(h["valid_n"][j]),
                              {k: v[j] for k, v in tallies.items()})
                for j, s in enumerate(self.slices)]


def _join_pending(slices: list[tuple[int, list[PendingBand]]]) -> list[FinishedSlice]:
    return [_join(index, [b.resolve() for b in bands]) for index, bands in slices]


def _join(index: int, bands: list[RowBand]) -> FinishedSlice:
    """The row bands of one slice, top to bottom, as one plane."""
    if len(bands) == 1:
        b = bands[0]
        return FinishedSlice(index, b.labels, b.valid, b.confidence, b.probabilities, b.entropy_sum, b.valid_pixels,
                             b.tallies)

    def cat(name: str, axis: int) -> np.ndarray | None:
        parts = [getattr(b, name) for b in bands]
        return None if parts[0] is None else np.concatenate(parts, axis=axis)

    tallies = {k: np.concatenate([b.tallies[k] for b in bands], axis=-1) if k == "seam_rows"
               else sum(b.tallies[k] for b in bands) for k in bands[0].tallies}
    return FinishedSlice(index, cat("labels", 0), cat("valid", 0), cat("confidence", 0), cat("probabilities", 1),
                         float(sum(b.entropy_sum for b in bands)), sum(b.valid_pixels for b in bands), tallies)
