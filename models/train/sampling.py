"""Random training tiles, balanced so that rare classes are seen.

Each draw first decides, with probability ``class_balance``, to aim at a class chosen
uniformly among the classes present in the training data; the tile is then placed around
a random pixel of that class (with a random offset, so the class is not always centred).
Otherwise the tile is placed around a random labelled pixel of a plane chosen in
proportion to its labelled area. Tiles without any labelled pixel are skipped.

Planes smaller than the tile are padded once (image reflect, label IGNORE_INDEX), as the
engine reflect-pads images smaller than a tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dataset import IGNORE_INDEX
from .stats import Plane

# Pixel positions kept per (plane, class): enough to place tiles anywhere, bounded memory.
MAX_POSITIONS = 50_000
_MAX_TRIES = 20


@dataclass(frozen=True)
class Tile:
    """One training example: image (C, t, t) float32, label (t, t) uint8."""

    image: np.ndarray
    label: np.ndarray


class TileSampler:
    """Draws class-balanced tiles of ``tile`` x ``tile`` pixels from ``planes``.

    Args:
        planes: normalised images with labels.
        num_classes: label values 0..num_classes-1 are classes; IGNORE_INDEX is ignored.
        tile: tile side in pixels.
        class_balance: 0 = tiles at random; 1 = every tile aims at a uniformly drawn class.
        rng: the generator (its state is saved with the training state for resume).
    """

    def __init__(self, planes: Sequence[Plane], num_classes: int, tile: int, class_balance: float,
                 rng: np.random.Generator) -> None:
        self.planes = [_pad(p, tile) for p in planes]
        self.num_classes, self.tile, self.class_balance, self.rng = num_classes, tile, class_balance, rng
        # positions[c][i]: flat pixel indices of class c in plane i (subsampled); c = num_classes: any labelled
        self.positions: list[list[np.ndarray]] = [[] for _ in range(num_classes + 1)]
        for p in self.planes:
            flat = p.label.ravel()
            for c in range(num_classes):
                self.positions[c].append(self._subsample(np.flatnonzero(flat == c)))
            self.positions[num_classes].append(self._subsample(np.flatnonzero(flat != IGNORE_INDEX)))
        self.weights = [np.array([pos.size for pos in per_plane], dtype=np.float64) for per_plane in self.positions]
        self.present = [c for c in range(num_classes) if self.weights[c].sum() > 0]
        if self.weights[num_classes].sum() == 0:
            raise ValueError("no labelled pixel in the training data (every label is 255 / nodata)")

    def _subsample(self, idx: np.ndarray) -> np.ndarray:
        if idx.size <= MAX_POSITIONS:
            return idx
        return np.sort(self.rng.choice(idx, MAX_POSITIONS, replace=False))

    def draw(self) -> Tile:
        """One tile with at least one labelled pixel."""
        for _ in range(_MAX_TRIES):
            tile = self._try()
            if (tile.label != IGNORE_INDEX).any():
                return tile
        return tile

    def batch(self, n: int) -> list[Tile]:
        return [self.draw() for _ in range(n)]

    def _try(self) -> Tile:
        rng = self.rng
        target = self.num_classes
        if self.present and rng.random() < self.class_balance:
            target = self.present[int(rng.integers(len(self.present)))]
        w = self.weights[target]
        i = int(rng.choice(len(w), p=w / w.sum()))
        pos = self.positions[target][i]
        plane = self.planes[i]
        h, wd = plane.label.shape
        y, x = divmod(int(pos[int(rng.integers(pos.size))]), wd)
        t = self.tile
        # Random offset: the chosen pixel lands anywhere in the tile's central 3/4.
        y0 = int(np.clip(y - rng.integers(t // 8, t - t // 8), 0, h - t))
        x0 = int(np.clip(x - rng.integers(t // 8, t - t // 8), 0, wd - t))
        return Tile(plane.image[:, y0:y0 + t, x0:x0 + t].copy(), plane.label[y0:y0 + t, x0:x0 + t].copy())


def _pad(p: Plane, tile: int) -> Plane:
    h, w = p.label.shape
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph == 0 and pw == 0:
        return p
    mode = "reflect" if min(h, w) > 1 and ph < h and pw < w else "edge"
    image = np.pad(p.image, ((0, 0), (0, ph), (0, pw)), mode=mode)
    label = np.pad(p.label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
    return Plane(image, label, p.name)
