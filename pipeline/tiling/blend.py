"""Blend windows: how much each pixel of a tile counts where tiles overlap.

Windows are separable: ``w(y, x) = a(y) * a(x)`` with a 1-D profile ``a`` from
``BLEND_WINDOWS``. Each profile is floored at ``FLOOR`` so that a pixel covered only by
a tile's edge (an image border) still gets a positive total weight; weights cancel when
the accumulated scores are divided by the weight sum.

:func:`tile_window` adds a *margin* of ``overlap / 2`` pixels along each tile edge inside
the image (not on the image border) where
the profile drops to ``MARGIN_WEIGHT``: predictions there lack context (the network saw
zero padding instead of the neighbouring pixels), so wherever another tile saw the pixel
with its full receptive field, that tile's prediction dominates (by at least
``FLOOR / MARGIN_WEIGHT`` per axis). Because the margin is per axis, a pixel in the
margin of every tile along one axis (the image's first rows, say) is still weighted by
its position along the other axis. With an overlap of about the receptive field, tiled
inference then matches whole-image inference (tests/pipeline/test_tiled_vs_whole.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FLOOR = 1e-2
MARGIN_WEIGHT = 1e-6


def gaussian(n: int) -> np.ndarray:
    """nnU-Net's importance profile: a gaussian with sigma = 1/8 of the side, peak 1."""
    c = (n - 1) / 2.0
    sigma = max(n / 8.0, 1e-6)
    return np.exp(-0.5 * ((np.arange(n) - c) / sigma) ** 2)


def hann(n: int) -> np.ndarray:
    """A Hann (raised cosine) profile sampled at pixel centres."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * (np.arange(n) + 0.5) / n)


def constant(n: int) -> np.ndarray:
    """Plain averaging of overlapping tiles."""
    return np.ones(n)


BLEND_WINDOWS: dict[str, Callable[[int], np.ndarray]] = {
    "gaussian": gaussian,
    "hann": hann,
    "constant": constant,
}


def profile(name: str, n: int, margin_lo: int = 0, margin_hi: int = 0) -> np.ndarray:
    """1-D weights of length ``n``: the named profile inside, ``MARGIN_WEIGHT`` in the margins."""
    lo, hi = min(margin_lo, (n - 1) // 2), min(margin_hi, (n - 1) // 2)
    out = np.full(n, MARGIN_WEIGHT)
    inner = BLEND_WINDOWS[name](n - lo - hi)
    out[lo : n - hi] = np.maximum(inner / inner.max(), FLOOR)
    return out


def tile_window(name: str, h: int, w: int, margins: tuple[int, int, int, int] = (0, 0, 0, 0)) -> np.ndarray:
    """(h, w) float32 weights of one tile (strictly positive); margins are (top, bottom, left, right).

    A tile side on the image border gets no margin: the whole-image network sees the same
    zero padding there, so the prediction lacks nothing.
    """
    top, bottom, left, right = margins
    return np.outer(profile(name, h, top, bottom), profile(name, w, left, right)).astype(np.float32)
