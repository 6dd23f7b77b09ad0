"""Thumbnail-sized pictures gathered while a scene or volume streams (compute only).

:class:`SceneThumbs` keeps, per cell of a scene's thumbnail grid, the label and input of one
sampled pixel (nearest neighbour) and how many of the cell's pixels are unsure (confidence
below ``unsure_below``, 0.9 by default). The unsure share is counted over *every* pixel, on the device
with the other band tallies (``tally.UNSURE_KEY``), so a thin line of doubt along a field
edge shows although no sampled row crosses it; the mean confidence of a cell, which the
report drew before, was above 0.9 almost everywhere and made a uniformly yellow picture.

:class:`VolumePlanes` keeps the confidence of a volume's three centre planes from its slices
as they stream: the centre slice, and the centre row and column of every slice.
"""

from __future__ import annotations

import numpy as np

from .planes import slicing_to_canonical
from .tally import CellGrid


def thumb_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """Thumbnail (rows, cols) keeping the aspect ratio, longest side at most ``side``."""
    f = max(1.0, max(height, width) / side)
    return max(1, round(height / f)), max(1, round(width / f))


class SceneThumbs:
    """Label, input and unsure-share thumbnails of one scene, filled band by band in row order."""

    def __init__(self, height: int, width: int, side: int, unsure_below: float) -> None:
        th, tw = thumb_shape(height, width, side)
        self.shape = (th, tw)
        self.cells = CellGrid.for_threshold(height, width, th, tw, unsure_below)
        self.unsure_below = unsure_below
        self._rows = ((np.arange(th) + 0.5) * height / th).astype(np.int64)  # the sampled image rows
        self._cols = ((np.arange(tw) + 0.5) * width / tw).astype(np.int64)
        self.labels = np.full((th, tw), 255, dtype=np.uint8)
        self.input: tuple[np.ndarray, np.ndarray] | None = None  # (bands, th, tw) data and validity
        self._valid_n = np.zeros((th, tw), dtype=np.int64)
        self._unsure_n = np.zeros((th, tw), dtype=np.int64)
        self._seen_unsure = False

    def _sampled(self, row0: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        sel = (self._rows >= row0) & (self._rows < row0 + h)
        return sel, self._rows[sel] - row0

    def add_labels(self, row0: int, labels: np.ndarray, valid: np.ndarray) -> None:
        sel, rows = self._sampled(row0, labels.shape[0])
        if sel.any():
            self.labels[sel] = np.where(valid[rows][:, self._cols], labels[rows][:, self._cols], 255)

    def add_unsure(self, row0: int, cells: np.ndarray) -> None:
        """A band's ``unsure_cells`` tally: (r, cols, 2) [valid, unsure] from thumbnail row ``first_row(row0)``."""
        first = self.cells.first_row(row0)
        r = min(cells.shape[0], self.shape[0] - first)
        self._valid_n[first:first + r] += cells[:r, :, 0]
        self._unsure_n[first:first + r] += cells[:r, :, 1]
        self._seen_unsure = True

    def add_input(self, row0: int, data: np.ndarray, valid: np.ndarray) -> None:
        """The input's first three bands at the sampled pixels (``data`` (B, h, W) from row ``row0``)."""
        if self.input is None:
            b = min(3, data.shape[0])
            self.input = (np.zeros((b, *self.shape), data.dtype), np.zeros(self.shape, bool))
        sel, rows = self._sampled(row0, data.shape[1])
        if sel.any():
            thumb, tvalid = self.input
            thumb[:, sel] = data[: thumb.shape[0]][:, rows][:, :, self._cols]
            tvalid[sel] = valid[rows][:, self._cols]

    def unsure_share(self) -> np.ndarray | None:
        """Per cell, the share of valid pixels below ``unsure_below``; NaN where none is valid."""
        if not self._seen_unsure:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            share = self._unsure_n / self._valid_n
        return np.where(self._valid_n > 0, share, np.nan).astype(np.float32)


class VolumePlanes:
    """Confidence of the three centre planes of a volume sliced along ``slice_axis``."""

    def __init__(self, depth: int, height: int, width: int, slice_axis: int) -> None:
        self.axis, self.depth = slice_axis, depth
        self.slice = np.full((height, width), 255, dtype=np.uint8)
        self.rows = np.full((depth, width), 255, dtype=np.uint8)
        self.cols = np.full((depth, height), 255, dtype=np.uint8)

    def add(self, index: int, confidence: np.ndarray, valid: np.ndarray) -> None:
        conf = np.where(valid, confidence, 255)
        h, w = conf.shape
        self.rows[index] = conf[h // 2]
        self.cols[index] = conf[:, w // 2]
        if index == self.depth // 2:
            self.slice[:] = conf

    def canonical(self) -> dict[int, np.ndarray]:
        """Fixed canonical axis -> plane, as ``planes.cut_centre`` cuts it."""
        return slicing_to_canonical(self.axis, self.slice, self.rows, self.cols)
