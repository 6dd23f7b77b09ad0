"""Streaming blend of tile probabilities into finished bands, and the one way bands are finished.

The accumulator holds one strip (a grid row of tiles of one plane): ``K x read_h x width``
float32 scores plus a ``read_h x width`` weight sum, on the device the model runs on. Tiles
come with their location (:meth:`Stitcher.add`, as TorchIO's ``GridAggregator.add_batch``
takes patches with their locations); when a strip's last tile is in, the rows no later tile
of the plane touches are finished (divide, argmax, confidence, entropy, QA tallies) *on the
device* and queued to the host as a :class:`~pipeline.engine.bands.Pending`, and the buffer
shifts up. Memory is ``O(K x tile x width)``, independent of the number of rows or planes.

A plane that one tile covers alone (a 512 x 512 CT slice at 512 px tiles) needs no blend:
the weights of a lone tile divide out, so such planes skip the accumulator and a whole
batch of them is finished at once (:meth:`Stitcher.finish_planes`): one host copy per batch
instead of one per plane. Both go through :meth:`Stitcher._finish`, the one finisher.

Accumulation is float32 (fp16 sums overflow, uint8 counters wrap: FIELD_NOTES). Invalid
(nodata) pixels get zero weight, so they never pull on their neighbours and end up with
zero total weight, which marks them invalid in every output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..tiling import Tile, TileGrid
from ..tiling.blend import tile_window
from .bands import Pending, to_u8

# Finished rows are reduced this many columns at a time: bounds the temporaries of very wide scenes.
FINALISE_COLUMNS = 2048

# Called on each finished band, on the device, before the copy to the host:
# reducer(row0, labels (h, W), valid (h, W) bool, confidence (h, W) uint8 or None) -> small tensors;
# ``reducer.planes(labels (n, H, W), valid, confidence)`` does a stack of whole planes.
# ``pipeline.qa.tally.BandTallier`` is one.
BandReducer = Callable[[int, torch.Tensor, torch.Tensor, "torch.Tensor | None"], dict[str, torch.Tensor]]


class Stitcher:
    """Blends the tiles of one strip at a time and finishes bands.

    Args:
        grid: the tiling of one plane.
        num_classes: K.
        blend: blend window name (``tiling.blend.BLEND_WINDOWS``).
        device: where the accumulator lives (the model's device).
        nodata: label value of invalid pixels (255 for scenes; 0, background, for volumes).
        label_dtype: dtype of the label band.
        confidence / probabilities: also produce the uint8 confidence / per-class bands.
        reducers: run on each finished band on the device (``BandReducer``).
    """

    def __init__(self, grid: TileGrid, num_classes: int, blend: str, device: torch.device, *, nodata: int,
                 label_dtype: torch.dtype, confidence: bool = False, probabilities: bool = False,
                 reducers: Sequence[BandReducer] = ()) -> None:
        self.grid, self.k, self.device, self.blend = grid, num_classes, device, blend
        self.nodata, self.label_dtype = nodata, label_dtype
        self.want_conf, self.want_probs = confidence, probabilities
        self.reducers = tuple(reducers)
        self.margin = grid.overlap // 2
        self._windows: dict[tuple[bool, bool, bool, bool], torch.Tensor] = {}
        self.acc = torch.zeros((num_classes, grid.read_h, grid.width), dtype=torch.float32, device=device)
        self.wsum = torch.zeros((grid.read_h, grid.width), dtype=torch.float32, device=device)
        self._plane, self._row = 0, 0

    @property
    def lone_tiles(self) -> bool:
        """One tile covers a whole plane: planes are finished without blending (``finish_planes``)."""
        return self.grid.n_tiles == 1 and all(callable(getattr(r, "planes", None)) for r in self.reducers)

    # -- blending ------------------------------------------------------------------------------
    def add(self, plane: int, tile: Tile, probs: torch.Tensor, valid: torch.Tensor) -> None:
        """Accumulate one tile of the open strip: ``probs`` (K, >=read_h, >=read_w), ``valid`` likewise."""
        if (plane, tile.row) != (self._plane, self._row):
            raise ValueError(f"tile of plane {plane}, grid row {tile.row} added while plane {self._plane}, "
                             f"row {self._row} is open")
        h, w = self.grid.read_h, self.grid.read_w
        x = tile.window.col_off
        weight = self._window(tile) * valid[:h, :w]
        self.acc[:, :, x : x + w].addcmul_(probs[:, :h, :w], weight)
        self.wsum[:, x : x + w].add_(weight)

    def _window(self, tile: Tile) -> torch.Tensor:
        """Blend weights for ``tile``: margins only on its sides that lie inside the image."""
        g, win = self.grid, tile.window
        inside = (win.row_off > 0, win.row_off + win.height < g.height,
                  win.col_off > 0, win.col_off + win.width < g.width)
        if inside not in self._windows:
            margins = tuple(self.margin if i else 0 for i in inside)
            w = tile_window(self.blend, g.read_h, g.read_w, margins)  # type: ignore[arg-type]
            self._windows[inside] = torch.as_tensor(w, device=self.device)
        return self._windows[inside]

    def close_strip(self) -> Pending:
        """Finish the rows of the open strip that no later tile touches; open the next strip.

        After a plane's last strip the next plane starts (buffers and blend windows reused).
        """
        start, stop = self.grid.rows_finished_after(self._row)
        n = stop - start
        wsum = self.wsum[:n]
        ok = wsum > 0
        safe = torch.where(ok, wsum, torch.ones_like(wsum))
        band = self._finish([(self._plane, start)], lambda x0, x1: self.acc[:, :n, x0:x1] / safe[:, x0:x1],
                            ok[None])
        if self._row + 1 < self.grid.n_rows:
            keep = self.grid.read_h - n
            if keep > 0:
                self.acc[:, :keep] = self.acc[:, n : n + keep].clone()
                self.wsum[:keep] = self.wsum[n : n + keep].clone()
            self.acc[:, keep:] = 0
            self.wsum[keep:] = 0
            self._row += 1
        else:
            self.acc.zero_()
            self.wsum.zero_()
            self._plane, self._row = self._plane + 1, 0
        return band

    def finish_planes(self, planes: Sequence[int], probs: torch.Tensor, valid: torch.Tensor) -> Pending:
        """Planes covered by one tile each (``lone_tiles``): (n, K, >=H, >=W) probabilities, (n, H, W) valid."""
        g = self.grid
        p = probs[:, :, : g.height, : g.width]
        self._plane = planes[-1] + 1
        return self._finish([(i, 0) for i in planes], lambda x0, x1: p[..., x0:x1], valid)

    # -- the finisher --------------------------------------------------------------------------
    def _finish(self, where: list[tuple[int, int]], probs_at: Callable[[int, int], torch.Tensor],
                ok: torch.Tensor) -> Pending:
        """Argmax, quantise, entropy and tallies of finished probabilities, column chunk by chunk.

        ``probs_at(x0, x1)`` gives the finished probabilities of columns ``[x0, x1)`` as
        (n, K, h, x1 - x0) or (K, h, x1 - x0) for one band; ``ok`` is (n, h, W). Column chunks
        keep the float temporaries small on very wide scenes; the results are gathered on the
        device and queued to the host once (no sync per chunk, none at all until resolved).
        """
        n, h, width = ok.shape
        dev = self.device
        labels = torch.empty((n, h, width), dtype=self.label_dtype, device=dev)
        conf = torch.empty((n, h, width), dtype=torch.uint8, device=dev) if self.want_conf else None
        probs_u8 = torch.empty((n, self.k, h, width), dtype=torch.uint8, device=dev) if self.want_probs else None
        entropy = torch.zeros((n,), dtype=torch.float64, device=dev)
        for x0 in range(0, width, FINALISE_COLUMNS):
            x1 = min(x0 + FINALISE_COLUMNS, width)
            p = probs_at(x0, x1).reshape(n, self.k, h, x1 - x0)
            v = ok[:, :, x0:x1]
            c, lab = p.max(dim=1)
            labels[:, :, x0:x1] = torch.where(v, lab, torch.full_like(lab, self.nodata)).to(self.label_dtype)
            if conf is not None:
                conf[:, :, x0:x1] = to_u8(c, v)
            if probs_u8 is not None:
                probs_u8[:, :, :, x0:x1] = to_u8(p, v.unsqueeze(1))
            entropy += torch.special.entr(p).sum(dim=1).mul_(v).sum(dim=(1, 2), dtype=torch.float64)
        tallies: dict[str, torch.Tensor] = {}
        for reduce in self.reducers:
            if n == 1:  # one band of a plane: seams pair with the band above it
                out = reduce(where[0][1], labels[0], ok[0], None if conf is None else conf[0])
                tallies.update({k: v.unsqueeze(0) for k, v in out.items()})
            else:
                tallies.update(reduce.planes(labels, ok, conf))  # type: ignore[attr-defined]
        tensors = {"labels": labels, "valid": ok, "confidence": conf, "probabilities": probs_u8, "entropy": entropy,
                   "valid_n": ok.sum(dim=(1, 2), dtype=torch.int64)}
        return Pending(where, tensors, tallies)
