"""Hashed-lattice value noise: every value a pure function of its global coordinates and a key.

Only +, * and comparisons per pixel, so results are bit-identical however the rows are chunked.
"""

from __future__ import annotations

import numpy as np

_M64 = (1 << 64) - 1


def _mix(*values: int) -> int:
    """splitmix64 of a tuple of ints: a stable key for one field of one seed."""
    h = 0x243F6A8885A308D3
    for v in values:
        h = (h ^ (v & _M64)) * 0x9E3779B97F4A7C15 & _M64
        h ^= h >> 31
    return h


def _hash_unit(key: int, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) float32 per integer lattice point (iy, ix), stable across platforms."""
    h = iy.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + ix.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h = h + np.uint64(key)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _axis(coords: np.ndarray, scale: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index and smoothstep weight of each coordinate along one axis."""
    x = coords / scale + offset
    i = np.floor(x).astype(np.int64)
    t = x - i
    return i, (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _value_noise(key: int, rows: np.ndarray, cols: np.ndarray, scale: float) -> np.ndarray:
    """Smooth noise in [-1, 1] on the grid rows x cols (global pixel coordinates).

    Each output value depends only on its own (row, col), never on which other rows are
    in the call, so row bands of any height tile seamlessly.
    """
    iy, wy = _axis(rows, scale, 1000.0 + (key % 997))
    ix, wx = _axis(cols, scale, 1000.0 + (key >> 20) % 991)
    ky0, kx0 = int(iy.min()), int(ix.min())
    ky = np.arange(ky0, int(iy.max()) + 2)
    kx = np.arange(kx0, int(ix.max()) + 2)
    lattice = _hash_unit(key, ky[:, None], kx[None, :]) * np.float32(2.0) - np.float32(1.0)
    jx = ix - kx0
    along_x = lattice[:, jx] * (np.float32(1.0) - wx) + lattice[:, jx + 1] * wx
    jy = iy - ky0
    wy = wy[:, None]
    return along_x[jy] * (np.float32(1.0) - wy) + along_x[jy + 1] * wy


def _fbm(key: int, rows: np.ndarray, cols: np.ndarray, scale: float, octaves: int) -> np.ndarray:
    """Sum of value-noise octaves (scale halves, weight halves): blobs with ragged edges."""
    total = _value_noise(key, rows, cols, scale)
    for k in range(1, octaves):
        total += np.float32(0.5**k) * _value_noise(_mix(key, k), rows, cols, scale / 2**k)
    return total


def _noise_1d(key: int, coords: np.ndarray, scale: float, octaves: int = 2) -> np.ndarray:
    return _fbm(key, coords, np.array([0.5]), scale, octaves)[:, 0]


