"""2D / 2.5D slices out of a canonical volume: the slicing convention training and inference share.

Conventions (canonical RAS+ arrays, see ``orient.CANONICAL``):
- A slice along ``axis`` A at index k is ``np.take(data, k, axis=A)``: its rows (H) are
  the lower-numbered remaining axis and its columns (W) the higher one. Axis 2 (S) gives
  axial slices with H = R (left->right) and W = A (posterior->anterior). Training must
  cut slices the same way (use these helpers), or the model sees transposed anatomy.
- 2.5D context c (odd): channel j of slice k is slice ``k - c//2 + j`` along A, indices
  clamped to the volume (edge slices replicated). Channel 0 is the lowest index, i.e. the
  most Right-ward/Posterior/Inferior neighbour.
Everything here works on arrays; nothing opens a file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

# Spacings within this relative tolerance count as equal (header zooms are float32).
_ZOOM_RTOL = 1e-3


def default_slice_axis(zooms: Sequence[float]) -> int:
    """The through-plane axis: the coarsest spacing; ties go to the last such axis.

    (0.7, 0.7, 5.0) -> 2; (3.0, 1.0, 1.0) -> 0; isotropic -> 2 (axial in RAS+).
    """
    z = [float(v) for v in zooms[:3]]
    top = max(z)
    return max(i for i, v in enumerate(z) if v >= top * (1 - _ZOOM_RTOL))


def plane_shape(shape: Sequence[int], axis: int) -> tuple[int, int]:
    """(H, W) of a slice along ``axis``."""
    rest = [int(s) for i, s in enumerate(shape[:3]) if i != axis]
    return rest[0], rest[1]


def context_indices(indices: Sequence[int] | np.ndarray, context: int, n_slices: int) -> np.ndarray:
    """(n, context) slice indices, centred on ``indices``, clamped to [0, n_slices)."""
    if context < 1 or context % 2 == 0:
        raise ValueError(f"context must be an odd number >= 1, got {context}")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n_slices):
        raise IndexError(f"slice indices {idx.min()}..{idx.max()} outside 0..{n_slices - 1}")
    offsets = np.arange(context) - context // 2
    return np.clip(idx[:, None] + offsets[None, :], 0, n_slices - 1)


def slab_planes(data: np.ndarray, axis: int, indices: Sequence[int] | np.ndarray,
                context: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The distinct planes a 2.5D slab needs, and where each slab channel finds its plane.

    Returns ``(planes, where)``: planes (u, H, W) float32, C-contiguous, each needed slice
    once; where (n, context) int64 with ``slab[i, j] == planes[where[i, j]]``. A context-5
    batch of 16 slices needs 20 planes, not 80: gather once here, and let the engine build
    the (n, context, H, W) input where it is cheapest (``planes_t[where]`` on the GPU moves
    a quarter of the bytes host->device).
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    ctx = context_indices(indices, context, data.shape[axis])
    unique, where = np.unique(ctx, return_inverse=True)
    # slice-major data (io.Volume.data is laid out so) makes each plane one memcpy
    planes = np.ascontiguousarray(np.moveaxis(data, axis, 0)[unique], dtype=np.float32)
    return planes, where.reshape(ctx.shape)


def slab(data: np.ndarray, axis: int, indices: Sequence[int] | np.ndarray, context: int = 1) -> np.ndarray:
    """Slices ``indices`` along ``axis`` with 2.5D context: a new (n, context, H, W) float32 array.

    Memory is that of the slab only; the volume is never copied. The result is what the
    2D engine takes as (N, C * context, H, W) with C = 1.
    """
    planes, where = slab_planes(data, axis, indices, context)
    return planes[where]


def slab_valid(valid: np.ndarray | None, shape: Sequence[int], axis: int,
               indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """(n, H, W) bool validity of the centre slices (all True when ``valid`` is None)."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if valid is None:
        return np.ones((idx.size,) + plane_shape(shape, axis), dtype=bool)
    return np.ascontiguousarray(np.moveaxis(valid, axis, 0)[idx])


def batches(n_slices: int, size: int) -> Iterator[np.ndarray]:
    """Consecutive slice-index batches of at most ``size`` covering 0..n_slices-1 once."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, n_slices, size):
        yield np.arange(start, min(start + size, n_slices))
