"""Seam score: how much more often the prediction changes across tile borders than elsewhere.

A pair of neighbouring pixels *disagrees* when their labels differ. Pairs that straddle
a line where a tile starts or ends inside the image (from the :class:`TileGrid`
offsets) are *border* pairs; all others are *interior* pairs. The score is the
disagreement rate on border pairs over the rate on interior pairs:

    ~1    clean: borders look like any other line of the image
    >> 1  seams: tiles disagree where they meet (bad blending, too little overlap)

Only pairs of two valid pixels count. Rates use add-one smoothing so a scene with
almost no label changes does not produce a huge ratio from a handful of pixels.

Memory: one counter per column and the previous row, independent of the height. The
per-band counting is :func:`.tally.seam_tallies` (on the device during a run: the stitcher
ships the tallies with each band and :meth:`SeamAccumulator.add` takes them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..tiling import TileGrid
from .tally import host_tensor, seam_tallies


def border_lines(offsets: tuple[int, ...], read: int, length: int) -> np.ndarray:
    """Pair indices ``p`` (the pair ``(p-1, p)``) where a tile starts or ends inside the image."""
    lines = {o for o in offsets if 0 < o < length} | {o + read for o in offsets if 0 < o + read < length}
    return np.array(sorted(lines), dtype=np.int64)


@dataclass(frozen=True)
class SeamResult:
    border_pairs: int
    border_changes: int
    interior_pairs: int
    interior_changes: int

    @property
    def border_rate(self) -> float:
        return (self.border_changes + 1) / (self.border_pairs + 1)

    @property
    def interior_rate(self) -> float:
        return (self.interior_changes + 1) / (self.interior_pairs + 1)

    @property
    def score(self) -> float | None:
        """Border over interior disagreement; None when the image is a single tile."""
        if self.border_pairs == 0:
            return None
        return self.border_rate / self.interior_rate


class SeamAccumulator:
    """Counts label disagreements on tile-border and interior pixel pairs, band by band.

    ``update`` takes consecutive row bands of one plane; ``new_plane`` starts the next
    plane (volume slices each carry their own in-plane tiling).
    """

    def __init__(self, grid: TileGrid, width_seam: int = 0) -> None:
        self.grid = grid
        self.height, self.width = grid.height, grid.width
        self._col_border = self._mask(border_lines(grid.col_offsets, grid.read_w, grid.width), grid.width, width_seam)
        self._row_border = self._mask(border_lines(grid.row_offsets, grid.read_h, grid.height), grid.height,
                                      width_seam)
        self._col_changes = np.zeros(self.width, dtype=np.int64)
        self._col_pairs = np.zeros(self.width, dtype=np.int64)
        self._rows = np.zeros((2, 2), dtype=np.int64)  # [border|interior] x [pairs, changes]
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _mask(lines: np.ndarray, length: int, width: int) -> np.ndarray:
        m = np.zeros(length, dtype=bool)
        for d in range(-width, width + 1):
            idx = lines + d
            m[idx[(idx > 0) & (idx < length)]] = True
        return m

    def new_plane(self) -> None:
        self._prev = None

    def update(self, row0: int, labels: np.ndarray, valid: np.ndarray) -> None:
        """Add rows ``[row0, row0 + h)`` of the current plane (labels and validity, (h, W))."""
        lab, ok = host_tensor(labels), host_tensor(valid)
        cols, rows = seam_tallies(lab, ok, self._prev)
        self._prev = (lab[-1].clone(), ok[-1].clone())
        self.add(row0, cols.numpy(), rows.numpy())

    def add(self, row0: int, cols: np.ndarray, rows: np.ndarray) -> None:
        """Add the tallies of rows ``[row0, row0 + h)``: ``seam_cols`` and ``seam_rows`` of :mod:`.tally`."""
        self._col_pairs += cols[0]
        self._col_changes += cols[1]
        border = self._row_border[row0: row0 + rows.shape[1]]
        self._rows[0] += rows[:, border].sum(axis=1)
        self._rows[1] += rows[:, ~border].sum(axis=1)

    def result(self) -> SeamResult:
        cb = self._col_border
        return SeamResult(
            border_pairs=int(self._col_pairs[cb].sum() + self._rows[0, 0]),
            border_changes=int(self._col_changes[cb].sum() + self._rows[0, 1]),
            interior_pairs=int(self._col_pairs[~cb].sum() + self._rows[1, 0]),
            interior_changes=int(self._col_changes[~cb].sum() + self._rows[1, 1]),
        )
