"""QA's per-pixel tallies of a band, in torch, on whichever device holds the band.

A GPU run finishes its output rows on the device (``pipeline.engine.stitch``); counting classes,
confidences and label changes there costs microseconds, while the same passes over the
host copy cost QA's thread more than the model's time at GPU speed (bench/RESULTS.md).
So the stitcher calls a :class:`BandTallier` on each finished band before the copy and
ships the small results with it (``Band.tallies``); :class:`~pipeline.qa.SceneQA` uses
them when they came and runs the *same* tallier on the host arrays when they did not
(``torch.from_numpy``: no copy), so there is one implementation of each tally.

Tallies of a band of ``h`` rows and ``W`` columns, K classes:

    joint        (K+1, 256) int64   pixels per class id (K: invalid or out of range) and
                                     confidence byte (0 when there is no confidence)
    valid        ()         int64   valid pixels
    seam_cols    (2, W)     int64   [pairs, changes] of horizontal neighbours (x-1, x), both
                                     valid, summed over the band's rows (column 0: none)
    seam_rows    (2, h)     int64   [pairs, changes] of vertical neighbours (y-1, y) for each
                                     row y of the band; its first row pairs with the previous
                                     band's last row (none at the top of a plane)
    unsure_cells (r, tw, 2) int64   optional (a :class:`CellGrid` given, confidence present):
                                     per thumbnail cell that the band's rows reach (thumbnail
                                     rows ``first .. first + r - 1``, ``first`` from
                                     :meth:`CellGrid.first_row`), [valid pixels, of them below
                                     the low-confidence threshold]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

TALLY_KEYS = ("joint", "valid", "seam_cols", "seam_rows")  # every tallier computes these
UNSURE_KEY = "unsure_cells"


@dataclass(frozen=True)
class CellGrid:
    """A scene's thumbnail grid: image pixel (y, x) falls in cell (y * rows // height, x * cols // width).

    ``low_byte``: a confidence byte below it counts as unsure (bytes are p x 254).
    """

    height: int
    width: int
    rows: int
    cols: int
    low_byte: int

    @classmethod
    def for_threshold(cls, height: int, width: int, rows: int, cols: int, low: float) -> CellGrid:
        return cls(height, width, rows, cols, math.ceil(low * 254))  # byte b is low iff b < low x 254

    def first_row(self, row0: int) -> int:
        return row0 * self.rows // self.height


def unsure_cells(row0: int, valid: torch.Tensor, confidence: torch.Tensor, grid: CellGrid) -> torch.Tensor:
    """(r, cols, 2) [valid, unsure] pixel counts per thumbnail cell of a band's rows (see module docstring).

    Rows are summed into their thumbnail row first, then columns into their cell (two
    ``index_add_`` passes in int32: no per-pixel cell index is built, and no host sync).
    """
    h, w = valid.shape
    dev = valid.device
    first = grid.first_row(row0)
    rows = torch.arange(row0, row0 + h, device=dev, dtype=torch.int64) * grid.rows // grid.height - first
    r = (row0 + h - 1) * grid.rows // grid.height - first + 1
    unsure = valid & (confidence < grid.low_byte)
    per_row = torch.zeros((2, r, w), dtype=torch.int32, device=dev)
    per_row[0].index_add_(0, rows, valid.to(torch.int32))
    per_row[1].index_add_(0, rows, unsure.to(torch.int32))
    cols = torch.arange(w, device=dev, dtype=torch.int64) * grid.cols // grid.width
    cells = torch.zeros((2, r, grid.cols), dtype=torch.int64, device=dev)
    cells.index_add_(2, cols, per_row.to(torch.int64))
    return cells.permute(1, 2, 0)


def class_ids(labels: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int32 class ids, ``num_classes`` where invalid or out of range (nodata, stray values)."""
    return labels.to(torch.int32).clamp_(0, num_classes).masked_fill_(~valid, num_classes)  # no host sync


def joint_histogram(ids: torch.Tensor, confidence: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """(..., K+1, 256) pixels per class id and confidence byte, per leading index (a stack of planes)."""
    lead = ids.shape[:-2]
    idx = ids * 256 if confidence is None else ids * 256 + confidence.to(torch.int32)
    bins = (num_classes + 1) * 256
    n = int(np.prod(lead)) if lead else 1
    if lead:  # one histogram per plane: offset each plane's bins
        idx = idx + (torch.arange(n, device=ids.device, dtype=torch.int32) * bins).reshape(*lead, 1, 1)
    return bin_counts(idx.reshape(-1), n * bins).reshape(*lead, num_classes + 1, 256)


def bin_counts(idx: torch.Tensor, size: int, *, sync_free: bool | None = None) -> torch.Tensor:
    """int64 counts of each value 0..size-1 in the integer tensor ``idx`` (values are in range).

    ``torch.bincount`` on a GPU reads the input's min and max back to the host: two syncs,
    which would stall the stitcher's thread once per band. There (``sync_free``, the
    default on CUDA) the counts come from ``torch.histc`` over float64 with the range given
    (unit-wide bins, exact: no sync, float64 counts exact far past any band's size).
    """
    if sync_free is None:
        sync_free = idx.device.type == "cuda"
    if not sync_free:
        return torch.bincount(idx, minlength=size)
    return torch.histc(idx.to(torch.float64), bins=size, min=0, max=size).to(torch.int64)


def seam_tallies(labels: torch.Tensor, valid: torch.Tensor,
                 prev: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(seam_cols (..., 2, W), seam_rows (..., 2, h)) of a band or a stack of planes.

    ``prev`` (a single band only) is the previous band's last row of the same plane.
    """
    *lead, h, w = labels.shape
    dev = labels.device
    cols = torch.zeros((*lead, 2, w), dtype=torch.int64, device=dev)
    both = valid[..., :, 1:] & valid[..., :, :-1]
    cols[..., 0, 1:] = both.sum(dim=-2)
    cols[..., 1, 1:] = ((labels[..., :, 1:] != labels[..., :, :-1]) & both).sum(dim=-2)
    rows = torch.zeros((*lead, 2, h), dtype=torch.int64, device=dev)
    if h > 1:
        both = valid[..., 1:, :] & valid[..., :-1, :]
        rows[..., 0, 1:] = both.sum(dim=-1)
        rows[..., 1, 1:] = ((labels[..., 1:, :] != labels[..., :-1, :]) & both).sum(dim=-1)
    if prev is not None:
        if lead:
            raise ValueError("prev pairs a single band with the band above it, not a stack of planes")
        prev_labels, prev_valid = prev
        both = valid[0] & prev_valid
        rows[0, 0] = both.sum()
        rows[1, 0] = ((labels[0] != prev_labels) & both).sum()
    return cols, rows


class BandTallier:
    """Computes :data:`TALLY_KEYS` for consecutive bands of one plane after another.

    Bands must come in row order; a band starting at row 0 starts a new plane (a volume's
    next slice), so it does not pair with the previous band's last row. Works on any
    device; the stitcher calls it on the device, :class:`~pipeline.qa.SceneQA` on the host.
    :meth:`planes` does a whole stack of planes at once (a batch of volume slices).
    """

    def __init__(self, num_classes: int, cells: CellGrid | None = None) -> None:
        self.k = num_classes
        self.cells = cells
        self._prev: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.inference_mode()
    def __call__(self, row0: int, labels: torch.Tensor, valid: torch.Tensor,
                 confidence: torch.Tensor | None) -> dict[str, torch.Tensor]:
        _check_shapes(labels, valid, confidence)
        out = self._tally(labels, valid, confidence, self._prev if row0 > 0 else None)
        if self.cells is not None and confidence is not None:
            out[UNSURE_KEY] = unsure_cells(row0, valid, confidence, self.cells)
        self._prev = (labels[-1].clone(), valid[-1].clone())
        return out

    @torch.inference_mode()
    def planes(self, labels: torch.Tensor, valid: torch.Tensor,
               confidence: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Tallies of (n, H, W) whole planes, each its own image: every result gains a leading n."""
        _check_shapes(labels, valid, confidence)
        return self._tally(labels, valid, confidence, None)

    def _tally(self, labels: torch.Tensor, valid: torch.Tensor, confidence: torch.Tensor | None,
               prev: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        cols, rows = seam_tallies(labels, valid, prev)
        return {"joint": joint_histogram(class_ids(labels, valid, self.k), confidence, self.k),
                "valid": valid.sum(dim=(-2, -1), dtype=torch.int64), "seam_cols": cols, "seam_rows": rows}

    def host(self, row0: int, labels: np.ndarray, valid: np.ndarray,
             confidence: np.ndarray | None) -> dict[str, np.ndarray]:
        """The same tallies of host arrays (no copy in: ``torch.from_numpy``)."""
        out = self(row0, host_tensor(labels), host_tensor(valid), None if confidence is None else host_tensor(confidence))
        return {k: v.numpy() for k, v in out.items()}


def _check_shapes(labels: torch.Tensor, valid: torch.Tensor, confidence: torch.Tensor | None) -> None:
    if valid.shape != labels.shape or (confidence is not None and confidence.shape != labels.shape):
        raise ValueError(f"band shapes differ: labels {tuple(labels.shape)}, valid {tuple(valid.shape)}"
                         + ("" if confidence is None else f", confidence {tuple(confidence.shape)}"))


def host_tensor(a: np.ndarray) -> torch.Tensor:
    """A host array as a tensor sharing its memory (a copy only for uint16 or read-only input)."""
    a = np.ascontiguousarray(a)
    if a.dtype == np.uint16 or not a.flags.writeable:  # torch: no uint16 arithmetic; no read-only arrays
        a = a.astype(np.int32 if a.dtype == np.uint16 else a.dtype)
    return torch.from_numpy(a)
