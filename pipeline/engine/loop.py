"""The engine: one loop over (plane, tile) units, for scenes and volumes alike.

An input is a stack of planes (:class:`PlaneSource`): a scene is one plane of B bands, a
volume N planes of one band with 2.5D context (each unit's channels come from its plane's
neighbours). The loop walks strips (a grid row of tiles of one plane) in order:

    reader thread   blocks of strips -> host buffers (the source reads, decodes, waits)
    this thread     upload -> cut tiles -> widen, pad, normalise, mask -> model -> stitcher
                    -> finished bands, queued to the host (``emit``: the writer thread)

A block is one strip, or, when one tile covers a whole plane, a batch of planes (a CT
volume at 512 px tiles: eight slices per model call, finished together). Tiles without a
valid pixel never reach the model. Everything here is compute on arrays; the source does
the reading and ``emit``'s consumer the writing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ..threads import Producer, StopToken
from ..tiling import Tile, TileGrid, pad_mode
from .bands import Pending
from .normalize import NormStats, normalise
from .predict import Predictor
from .stitch import Stitcher
from .upload import Block, DeviceBlock, Strip, Uploader, unsigned_bits, widen


class PlaneSource(Protocol):
    """What the engine reads: ``planes`` planes of ``height x width`` pixels, ``channels`` bands each.

    ``fill`` runs in the reader thread: it writes the plane windows the strips need into
    ``data`` (U, C, h, W) and their validity into ``valid`` (U, h, W) and says where each
    strip's channel stack is (see :class:`~pipeline.engine.upload.Block`).
    """

    planes: int
    height: int
    width: int
    channels: int
    context: int
    dtype: np.dtype

    def fill(self, strips: Sequence[Strip], h: int, data: np.ndarray,
             valid: np.ndarray) -> tuple[int, np.ndarray | None, bool]: ...


@dataclass(frozen=True)
class Progress:
    """Reported after every batch: the CLI draws a bar, a flow logs it.

    A scene counts tiles and rows; a volume counts slices in both (a slice is one "row" of
    ``width`` = height x width voxels).
    """

    tiles_done: int
    tiles_total: int
    rows_done: int
    rows_total: int
    width: int
    elapsed_s: float

    @property
    def mpix_per_s(self) -> float:
        return self.rows_done * self.width / max(self.elapsed_s, 1e-9) / 1e6


ProgressFn = Callable[[Progress], None]
InputObserver = Callable[[Block, np.ndarray, np.ndarray], None]


@dataclass
class EngineStats:
    """What the loop measured and counted."""

    tiles_total: int = 0
    tiles_skipped: int = 0
    timings: dict[str, float] = field(default_factory=lambda: dict(read_wait_s=0.0, prepare_s=0.0, infer_s=0.0,
                                                                   stitch_s=0.0))


@dataclass(frozen=True)
class _Unit:
    """One tile of strip ``j`` of a block."""

    j: int
    tile: Tile


class Engine:
    """Runs ``predictor`` over every tile of ``source`` and emits finished bands in plane and row order.

    Args:
        grid: the tiling of one plane.
        norm: the input's normalisation, made once (per scene or volume).
        batch_size: tiles per model call.
        stitcher: the blend and finish of this run's bands (the fields it produces).
        stop: the run's stop token.
        progress: called after every batch.
        input_observer: sees each block's raw host pixels before upload (QA thumbnails).
    """

    def __init__(self, predictor: Predictor, source: PlaneSource, grid: TileGrid, norm: NormStats, *,
                 batch_size: int, stitcher: Stitcher, stop: StopToken, progress: ProgressFn | None = None,
                 input_observer: InputObserver | None = None) -> None:
        self.predictor, self.source, self.grid, self.norm = predictor, source, grid, norm
        self.batch_size, self.stitcher, self.stop = batch_size, stitcher, stop
        self.progress, self.input_observer = progress, input_observer
        self.device = predictor.device
        self.lone = stitcher.lone_tiles
        self.bits = unsigned_bits(np.dtype(source.dtype))
        self.stats = EngineStats(tiles_total=grid.n_tiles * source.planes)
        self._done = 0
        self._rows_done = 0
        self._t0 = 0.0

    def run(self, emit: Callable[[Pending], None]) -> EngineStats:
        """Segment every plane; ``emit`` takes each finished :class:`Pending` in order."""
        src, g = self.source, self.grid
        self.per_block = max(1, self.batch_size) if self.lone else 1
        u = self.per_block + src.context - 1
        token = self.stop.child()  # closing the reader also releases its wait for a free buffer
        uploader = Uploader((u, src.channels, g.read_h, g.width), src.dtype, self.device, token)
        reader = Producer(self._blocks(uploader), role="read", maxsize=2, stop=token, on_wait=self._waited)
        self._t0 = time.perf_counter()
        try:
            for block in reader:
                data, valid = uploader.data[block.slot], uploader.valid[block.slot]
                if self.input_observer is not None:
                    self.input_observer(block, data[: block.u], valid[: block.u])
                units = self._units(block, valid)  # decided on the host before the buffer is reused
                dev = uploader.upload(block)
                if self.lone:
                    self._lone_planes(dev, units, emit)
                else:
                    self._strip(dev, units, emit)
                uploader.release(block)
        finally:
            reader.close()
        return self.stats

    # -- reading (the reader thread) -------------------------------------------------------
    def _plan(self) -> Iterator[list[Strip]]:
        g, strips = self.grid, []
        for plane in range(self.source.planes):
            for row, y in enumerate(g.row_offsets):
                strips.append(Strip(plane, row, y))
                if len(strips) == self.per_block:
                    yield strips
                    strips = []
        if strips:
            yield strips

    def _blocks(self, uploader: Uploader) -> Iterator[Block]:
        for strips in self._plan():
            slot = uploader.acquire()
            if slot is None:  # stopped
                return
            u, where, all_valid = self.source.fill(strips, self.grid.read_h, uploader.data[slot], uploader.valid[slot])
            yield Block(strips, slot, u, where, all_valid)

    def _waited(self, seconds: float) -> None:
        self.stats.timings["read_wait_s"] += seconds

    def _units(self, block: Block, valid: np.ndarray) -> list[_Unit]:
        """The tiles of the block's strips that hold at least one valid pixel, in order."""
        units = []
        for j, strip in enumerate(block.strips):
            centre = _centre(block, j)
            for tile in self.grid.row_tiles(strip.row):
                x, w = tile.window.col_off, tile.window.width
                if block.all_valid or valid[centre, :, x : x + w].any():
                    units.append(_Unit(j, tile))
                else:
                    self.stats.tiles_skipped += 1
        return units

    # -- the model -----------------------------------------------------------------------------
    def _strip(self, dev: DeviceBlock, units: list[_Unit], emit: Callable[[Pending], None]) -> None:
        """One strip: its tiles in batches, blended; then its finished rows."""
        strip = dev.block.strips[0]
        for i in range(0, len(units), self.batch_size):
            batch = units[i : i + self.batch_size]
            probs, vmask = self._predict(dev, batch)
            t = time.perf_counter()
            for k, unit in enumerate(batch):
                self.stitcher.add(strip.plane, unit.tile, probs[k], vmask[k])
            self.stats.timings["stitch_s"] += time.perf_counter() - t
            self._report(len(batch))
        t = time.perf_counter()
        emit(self.stitcher.close_strip())
        self.stats.timings["stitch_s"] += time.perf_counter() - t
        start, stop = self.grid.rows_finished_after(strip.row)
        self._report(0, stop - start)

    def _lone_planes(self, dev: DeviceBlock, units: list[_Unit], emit: Callable[[Pending], None]) -> None:
        """Planes one tile covers each: one model call for the block, finished together.

        A plane without a valid pixel is not predicted; it is finished with zero
        probabilities and no valid pixel (nodata everywhere, like a blended plane).
        """
        strips = dev.block.strips
        n, g = len(strips), self.grid
        if len(units) == n:
            probs, _ = self._predict(dev, units)
        else:  # planes without a valid pixel get zeros (stacked on the device: no index travels there)
            zeros = torch.zeros((self.stitcher.k, g.tile_h, g.tile_w), device=self.device)
            got = dict(zip((u.j for u in units), self._predict(dev, units)[0])) if units else {}
            probs = torch.stack([got.get(j, zeros) for j in range(n)])
        t = time.perf_counter()
        valid = self._centre_valid(dev, list(range(n)))
        emit(self.stitcher.finish_planes([s.plane for s in strips], probs, valid))
        self.stats.timings["stitch_s"] += time.perf_counter() - t
        self._report(len(units), n * g.height)

    def _predict(self, dev: DeviceBlock, units: list[_Unit]) -> tuple[torch.Tensor, torch.Tensor]:
        t = time.perf_counter()
        x, vmask = self._model_input(dev, units)
        t2 = time.perf_counter()
        probs = self.predictor(x)
        self.stats.timings["prepare_s"] += t2 - t
        self.stats.timings["infer_s"] += time.perf_counter() - t2
        return probs, vmask

    def _model_input(self, dev: DeviceBlock, units: list[_Unit]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C x context, tile_h, tile_w) normalised input, invalid pixels 0; (N, h, w) centre validity.

        Tiles are cut from the block on the device, widened from the file's dtype, padded
        (an image smaller than a tile), normalised with the input's statistics and masked.
        """
        g = self.grid
        cols = [(u.tile.window.col_off, u.tile.window.width) for u in units]
        js = [u.j for u in units]
        x = torch.stack([self._stack(dev, j)[..., c : c + w] for j, (c, w) in zip(js, cols)])
        x = widen(x, self.bits)
        vin = None if dev.valid is None else torch.stack([self._stack_valid(dev, j)[..., c : c + w]
                                                          for j, (c, w) in zip(js, cols)])
        vc = self._centre_valid(dev, js)
        vc = torch.stack([v[:, c : c + w] for v, (c, w) in zip(vc, cols)])
        ph, pw = g.tile_h - x.shape[2], g.tile_w - x.shape[3]
        if ph or pw:  # an image smaller than a tile: reflect-pad up to the network's shape
            mode = pad_mode(x.shape[2], x.shape[3], ph, pw)
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
            vc = torch.nn.functional.pad(vc[:, None].float(), (0, pw, 0, ph), mode=mode)[:, 0] > 0.5
            if vin is not None:
                vin = torch.nn.functional.pad(vin.float(), (0, pw, 0, ph), mode=mode) > 0.5
        normalise(x, self.norm, self.source.channels)
        if vin is not None:  # invalid pixels become 0 after normalisation (the mean for meanstd)
            x.mul_(vin)
        return x, vc

    def _stack(self, dev: DeviceBlock, j: int) -> torch.Tensor:
        """Strip j's channels (C x context, h, W): its plane window, or its 2.5D neighbours'."""
        if dev.where is None:
            return dev.data[j]
        return dev.data[dev.where[j]].flatten(0, 1)

    def _stack_valid(self, dev: DeviceBlock, j: int) -> torch.Tensor:
        """Validity of each channel of strip j's stack (C x context, h, W)."""
        assert dev.valid is not None
        if dev.where is None:
            return dev.valid[j][None].expand(self.source.channels, -1, -1)
        v = dev.valid[dev.where[j]]  # (context, h, W)
        return v[:, None].expand(-1, self.source.channels, -1, -1).flatten(0, 1)

    def _centre_valid(self, dev: DeviceBlock, js: list[int]) -> torch.Tensor:
        """(len(js), h, W) validity of the strips' own planes (the pixels the outputs describe)."""
        g = self.grid
        if dev.valid is None:
            return torch.ones((len(js), g.read_h, g.width), dtype=torch.bool, device=self.device)
        idx = js if dev.where is None else [int(dev.block.where[j, self.source.context // 2]) for j in js]
        return torch.stack([dev.valid[i] for i in idx])  # basic indexing: no index copied to the device

    def _report(self, tiles: int, rows: int = 0) -> None:
        """Progress in tiles and finished rows of a scene; of a volume, in finished slices (each a
        "row" of height x width voxels), so ``mpix_per_s`` is voxels per second either way."""
        self._done += tiles
        self._rows_done += rows
        if self.progress is None:
            return
        g, n = self.grid, self.source.planes
        if n > 1:
            planes = self._rows_done // g.height
            done, total, rows_done, rows_total, width = planes, n, planes, n, g.height * g.width
        else:
            done, total = self._done, self.stats.tiles_total - self.stats.tiles_skipped
            rows_done, rows_total, width = self._rows_done, g.height, g.width
        self.progress(Progress(done, total, rows_done, rows_total, width, time.perf_counter() - self._t0))


def _centre(block: Block, j: int) -> int:
    """Index of strip j's own plane window in the block's buffer."""
    return j if block.where is None else int(block.where[j, block.where.shape[1] // 2])
