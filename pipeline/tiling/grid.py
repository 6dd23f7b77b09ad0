"""Overlapping tile windows that cover a 2D extent exactly.

Conventions: rows are y (axis 0), columns are x (axis 1); windows are
``rasterio.windows.Window(col_off, row_off, width, height)`` in pixel units.

Rules (see FIELD_NOTES "Stitching"):
- windows never leave the image; the last window of a row/column is snapped to the
  border instead of padding past it;
- an axis shorter than the tile gets one window covering it, and the tile is padded
  (reflect) up to the next multiple of the model stride, then cropped back;
- the network sees tiles whose sides are multiples of the model stride (32).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from rasterio.windows import Window

from ..errors import ConfigError
from ..spec import MODEL_STRIDE


def round_up(n: int, multiple: int = MODEL_STRIDE) -> int:
    return int(math.ceil(n / multiple) * multiple)


def axis_offsets(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Window start offsets along one axis: stride ``tile - overlap``, last one snapped."""
    if length <= tile:
        return (0,)
    stride = tile - overlap
    offsets = list(range(0, length - tile + 1, stride))
    if offsets[-1] != length - tile:
        offsets.append(length - tile)
    return tuple(offsets)


def pad_mode(h: int, w: int, ph: int, pw: int) -> str:
    """How a window smaller than the network's tile is padded by (ph, pw): reflect, or
    replicate (numpy: edge) where a side is too short to reflect that far (torch's limit)."""
    return "reflect" if ph < h and pw < w else "replicate"


@dataclass(frozen=True)
class Tile:
    """One window of the grid: its row/column index in the grid and its pixel window."""

    row: int
    col: int
    window: Window


@dataclass(frozen=True)
class TileGrid:
    """The tiling of an ``height`` x ``width`` image.

    ``tile_h``/``tile_w`` are the shapes the network sees (the tile, or the padded
    image side when the image is smaller than a tile); ``read_h``/``read_w`` are how
    much of the image one window covers (``min(tile, side)``).
    """

    height: int
    width: int
    tile: int
    overlap: int
    row_offsets: tuple[int, ...]
    col_offsets: tuple[int, ...]

    @classmethod
    def build(cls, height: int, width: int, tile: int, overlap: int) -> TileGrid:
        if height < 1 or width < 1:
            raise ConfigError(f"image must be at least 1 x 1 pixel, got {height} x {width}")
        if tile <= 0 or tile % MODEL_STRIDE:
            raise ConfigError(
                f"tile {tile} must be a positive multiple of {MODEL_STRIDE} (the U-Net's stride); "
                f"try {max(MODEL_STRIDE, round_up(max(tile, 1)))}"
            )
        if not 0 <= overlap < tile:
            raise ConfigError(f"overlap {overlap} must be in [0, tile={tile})")
        return cls(
            height, width, tile, overlap,
            axis_offsets(height, tile, overlap), axis_offsets(width, tile, overlap),
        )

    @property
    def read_h(self) -> int:
        return min(self.tile, self.height)

    @property
    def read_w(self) -> int:
        return min(self.tile, self.width)

    @property
    def tile_h(self) -> int:
        return self.tile if self.height >= self.tile else round_up(self.height)

    @property
    def tile_w(self) -> int:
        return self.tile if self.width >= self.tile else round_up(self.width)

    @property
    def n_rows(self) -> int:
        return len(self.row_offsets)

    @property
    def n_tiles(self) -> int:
        return len(self.row_offsets) * len(self.col_offsets)

    def row_tiles(self, row: int) -> Iterator[Tile]:
        """The tiles of grid row ``row``, left to right."""
        y = self.row_offsets[row]
        for col, x in enumerate(self.col_offsets):
            yield Tile(row, col, Window(x, y, self.read_w, self.read_h))

    def __iter__(self) -> Iterator[Tile]:
        for row in range(self.n_rows):
            yield from self.row_tiles(row)

    def rows_finished_after(self, row: int) -> tuple[int, int]:
        """Image rows ``[start, stop)`` that no tile after grid row ``row`` touches.

        Streaming relies on this: once every tile of grid row ``row`` is stitched,
        these rows are final and can be written and freed.
        """
        start = self.row_offsets[row]
        stop = self.row_offsets[row + 1] if row + 1 < self.n_rows else self.height
        return start, stop
