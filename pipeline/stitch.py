"""Streaming blend of tile probabilities into finished output rows.

The accumulator holds one grid row of tiles: ``K x read_h x width`` float32 scores
plus a ``read_h x width`` weight sum, on the device the model runs on. When a grid row
is complete, the rows no later tile touches are finished (divide, argmax, confidence),
converted to uint8 *on the device*, shipped to the host as a :class:`RowBand`, and the
buffer shifts up. Memory is ``O(K x tile x width)``, independent of the scene height.
On a GPU the scene loop takes the band as a :class:`PendingBand` (copies queued into
page-locked memory, not waited for) and the writer thread waits for it, so the thread
feeding the model never stops for the device (nor does anything it calls per batch:
``tests/pipeline/test_gpu.py`` checks with torch's sync debug mode).

Accumulation is float32 (fp16 sums overflow, uint8 counters wrap: FIELD_NOTES).
Invalid (nodata) pixels get zero weight, so they never pull on their neighbours and
end up with zero total weight, which marks them nodata in the output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .blend import tile_window
from .tiling import Tile, TileGrid

# Probabilities are stored as uint8 0..254 (value / 254); 255 is the nodata value.
PROB_SCALE = 254
PROB_NODATA = 255
# Finished rows are reduced this many columns at a time: bounds the temporaries of very wide scenes.
FINALISE_COLUMNS = 2048

# Called on each finished band, on the device, before the copy to the host:
# reducer(row0, labels (h, W), valid (h, W) bool, confidence (h, W) uint8 or None) -> small tensors,
# shipped with the band as ``RowBand.tallies`` (``pipeline.qa.tally.BandTallier`` is one).
BandReducer = Callable[[int, torch.Tensor, torch.Tensor, "torch.Tensor | None"], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class RowBand:
    """Finished output rows ``[row0, row0 + height)`` of the whole scene width, on the host.

    Attributes:
        labels: (h, W) class ids; ``nodata`` where invalid.
        valid: (h, W) bool, True where the scene had data.
        confidence: (h, W) uint8 max class probability x 254, 255 where invalid (or None).
        probabilities: (K, h, W) uint8 per-class probability x 254, 255 where invalid (or None).
        entropy_sum: sum over valid pixels of the per-pixel entropy (nats), for QA.
        valid_pixels: number of valid pixels (counted on the device).
        tallies: the band reducers' results, on the host (empty without reducers).
    """

    row0: int
    labels: np.ndarray
    valid: np.ndarray
    confidence: np.ndarray | None
    probabilities: np.ndarray | None
    entropy_sum: float
    valid_pixels: int
    tallies: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.labels.shape[0])


class StreamingStitcher:
    """Blends tiles of one grid row at a time and emits finished :class:`RowBand` s."""

    def __init__(
        self,
        grid: TileGrid,
        num_classes: int,
        blend: str,
        device: torch.device,
        *,
        nodata: int = 255,
        label_dtype: torch.dtype = torch.uint8,
        confidence: bool = False,
        probabilities: bool = False,
        reducers: Sequence[BandReducer] = (),
    ) -> None:
        self.grid = grid
        self.k = num_classes
        self.device = device
        self.nodata = nodata
        self.label_dtype = label_dtype
        self.want_conf = confidence
        self.want_probs = probabilities
        self.reducers = tuple(reducers)
        self.blend = blend
        self.margin = grid.overlap // 2
        self._windows: dict[tuple[bool, bool, bool, bool], torch.Tensor] = {}
        self.acc = torch.zeros((num_classes, grid.read_h, grid.width), dtype=torch.float32, device=device)
        self.wsum = torch.zeros((grid.read_h, grid.width), dtype=torch.float32, device=device)
        self._row = 0

    def add(self, tile: Tile, probs: torch.Tensor, valid: torch.Tensor) -> None:
        """Accumulate one tile: ``probs`` (K, >=read_h, >=read_w) on the device, ``valid`` likewise."""
        if tile.row != self._row:
            raise ValueError(f"tile of grid row {tile.row} added while row {self._row} is open")
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

    def reset(self) -> None:
        """Start another image on the same grid (a volume's next slice plane).

        Buffers and cached blend windows are reused, so a volume does not allocate a
        stitcher per slice.
        """
        self.acc.zero_()
        self.wsum.zero_()
        self._row = 0

    def finish_row(self) -> RowBand:
        """Close the current grid row: emit its finished image rows (on the host) and shift the buffer."""
        return self._close_row().resolve()

    def finish_row_deferred(self) -> PendingBand:
        """As :meth:`finish_row`, but the copy to the host is only *queued*.

        On a GPU the caller goes on launching the next row's work while the band travels;
        whoever consumes it (the writer thread) calls :meth:`PendingBand.resolve`, which
        waits for the copy. On the CPU the band is already on the host.
        """
        return self._close_row()

    def _close_row(self) -> PendingBand:
        start, stop = self.grid.rows_finished_after(self._row)
        n = stop - start
        band = self._finalise(self.acc[:, :n], self.wsum[:n], start)
        if self._row + 1 < self.grid.n_rows:
            keep = self.grid.read_h - n
            if keep > 0:
                self.acc[:, :keep] = self.acc[:, n : n + keep].clone()
                self.wsum[:keep] = self.wsum[n : n + keep].clone()
            self.acc[:, keep:] = 0
            self.wsum[keep:] = 0
        self._row += 1
        return band

    def quantise(self, p: torch.Tensor, ok: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """Finished probabilities (..., K, h, w) and validity (..., h, w) -> the band's outputs.

        Returns labels (``nodata`` where invalid), uint8 confidence and per-class
        probabilities (None unless asked for) and the entropy summed over valid pixels per
        leading index (float64). The slice engine calls it on whole batches of planes.
        """
        c, lab = p.max(dim=-3)
        labels = torch.where(ok, lab, torch.full_like(lab, self.nodata)).to(self.label_dtype)
        conf = _to_u8(c, ok) if self.want_conf else None
        probs_u8 = _to_u8(p, ok.unsqueeze(-3)) if self.want_probs else None
        entropy = torch.special.entr(p).sum(dim=-3).mul_(ok).sum(dim=(-2, -1), dtype=torch.float64)
        return labels, conf, probs_u8, entropy

    def _finalise(self, acc: torch.Tensor, wsum: torch.Tensor, row0: int) -> PendingBand:
        """Divide, argmax and quantise finished rows on the device; queue their copy to the host.

        Column chunks keep the float temporaries small on very wide scenes; the uint8 results
        are gathered on the device and copied to the host once per output (no sync per chunk,
        and none at all until the band is resolved).
        """
        h, width = wsum.shape
        dev = self.device
        labels = torch.empty((h, width), dtype=self.label_dtype, device=dev)
        valid = torch.empty((h, width), dtype=torch.bool, device=dev)
        conf = torch.empty((h, width), dtype=torch.uint8, device=dev) if self.want_conf else None
        probs_u8 = torch.empty((self.k, h, width), dtype=torch.uint8, device=dev) if self.want_probs else None
        entropy = torch.zeros((), dtype=torch.float64, device=dev)
        for x0 in range(0, width, FINALISE_COLUMNS):
            x1 = min(x0 + FINALISE_COLUMNS, width)
            ws = wsum[:, x0:x1]
            ok = ws > 0
            p = acc[:, :, x0:x1] / torch.where(ok, ws, torch.ones_like(ws))
            lab, c, pu8, ent = self.quantise(p, ok)
            labels[:, x0:x1] = lab
            valid[:, x0:x1] = ok
            entropy += ent
            if conf is not None:
                conf[:, x0:x1] = c
            if probs_u8 is not None:
                probs_u8[:, :, x0:x1] = pu8
        tallies: dict[str, torch.Tensor] = {}
        for reduce in self.reducers:
            tallies.update(reduce(row0, labels, valid, conf))
        return PendingBand(row0, labels, valid, conf, probs_u8, entropy, valid.sum(dtype=torch.int64), tallies)


class HostCopies:
    """Named device tensors on their way to the host: :meth:`wait` returns them as arrays.

    On a GPU each is copied into page-locked host memory with ``non_blocking=True`` and a
    CUDA event marks the end of the copies, so the thread that queued them never waits for
    the device; :meth:`wait` (in whichever thread consumes them) waits for that event.
    Page-locked blocks come from torch's caching host allocator, which does not hand a
    block out again before the copies that used it are done. On the CPU nothing moves.
    """

    def __init__(self, tensors: dict[str, torch.Tensor | None], tallies: dict[str, torch.Tensor]) -> None:
        every = [*tensors.values(), *tallies.values()]
        cuda = next((t.device for t in every if t is not None and t.device.type == "cuda"), None)
        ship = _queue_copy if cuda is not None else (lambda t: t)
        self._t = {k: None if t is None else ship(t) for k, t in tensors.items()}
        self._tallies = {k: ship(t) for k, t in tallies.items()}
        self._event = None
        if cuda is not None:  # on the stream of the tensors' device (cuda:1 need not be the current device)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(cuda))

    def wait(self) -> tuple[dict[str, np.ndarray | None], dict[str, np.ndarray]]:
        """(the named arrays, the band reducers' results), on the host."""
        if self._event is not None:
            self._event.synchronize()
        return ({k: None if t is None else t.numpy() for k, t in self._t.items()},
                {k: t.numpy() for k, t in self._tallies.items()})


class PendingBand:
    """A finished band whose copy to the host is queued (:class:`HostCopies`), maybe not done:
    :meth:`resolve`, called once by the consumer, waits for it and returns the :class:`RowBand`."""

    def __init__(self, row0: int, labels: torch.Tensor, valid: torch.Tensor, confidence: torch.Tensor | None,
                 probabilities: torch.Tensor | None, entropy_sum: torch.Tensor, valid_pixels: torch.Tensor,
                 tallies: dict[str, torch.Tensor]) -> None:
        self.row0 = row0
        self._copies = HostCopies({
            "labels": labels, "valid": valid, "confidence": confidence, "probabilities": probabilities,
            "entropy_sum": entropy_sum, "valid_pixels": valid_pixels}, tallies)

    def resolve(self) -> RowBand:
        """Wait for the copies (GPU) and return the band on the host."""
        h, tallies = self._copies.wait()
        return RowBand(self.row0, h["labels"], h["valid"], h["confidence"], h["probabilities"],
                       float(h["entropy_sum"]), int(h["valid_pixels"]), tallies)


def _queue_copy(t: torch.Tensor) -> torch.Tensor:
    """An asynchronous copy of device tensor ``t`` into page-locked host memory."""
    try:
        out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    except RuntimeError:  # page-locking can fail (limits): an ordinary, synchronous copy
        return t.cpu()
    return out.copy_(t, non_blocking=True)


def _to_u8(p: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    q = torch.round(p.clamp(0, 1) * PROB_SCALE).to(torch.uint8)
    return torch.where(valid, q, torch.full_like(q, PROB_NODATA))
