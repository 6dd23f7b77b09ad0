"""Blend windows: how much each pixel of a tile counts where tiles overlap.

Every window is strictly positive (floored at ``FLOOR``) so that a pixel covered by a
single tile edge (an image border) still has a positive total weight; the weights are
normalised away when the accumulated scores are divided by the weight sum.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FLOOR = 1e-3


def _outer(wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    w = np.outer(wy, wx).astype(np.float32)
    return np.maximum(w / w.max(), FLOOR).astype(np.float32)


def gaussian(h: int, w: int) -> np.ndarray:
    """nnU-Net's importance map: a gaussian with sigma = 1/8 of the tile side, peak 1."""

    def axis(n: int) -> np.ndarray:
        c = (n - 1) / 2.0
        sigma = max(n / 8.0, 1e-6)
        return np.exp(-0.5 * ((np.arange(n) - c) / sigma) ** 2)

    return _outer(axis(h), axis(w))


def hann(h: int, w: int) -> np.ndarray:
    """A Hann (raised cosine) window, sampled at pixel centres so no pixel is exactly 0."""

    def axis(n: int) -> np.ndarray:
        return 0.5 - 0.5 * np.cos(2.0 * np.pi * (np.arange(n) + 0.5) / n)

    return _outer(axis(h), axis(w))


def constant(h: int, w: int) -> np.ndarray:
    """Plain averaging of overlapping tiles."""
    return np.ones((h, w), dtype=np.float32)


BLEND_WINDOWS: dict[str, Callable[[int, int], np.ndarray]] = {
    "gaussian": gaussian,
    "hann": hann,
    "constant": constant,
}
