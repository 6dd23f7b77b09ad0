"""Where the tiles of a plane are, and how much each pixel of a tile counts where they overlap.

    grid.py    overlapping windows covering a plane exactly, the last one snapped to the border
    blend.py   separable blend windows (gaussian, Hann, constant) with context margins
"""

from .grid import Tile, TileGrid, axis_offsets, pad_mode, round_up

__all__ = ["Tile", "TileGrid", "axis_offsets", "pad_mode", "round_up"]
