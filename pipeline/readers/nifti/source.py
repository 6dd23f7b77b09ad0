"""A canonical volume as the engine's plane source: its slices along one axis, with 2.5D context."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .slicing import context_indices, plane_shape
from .volume import Volume


class VolumeSource:
    """The slices of ``vol`` along its slice axis (``Volume.slice_axis``), one band each.

    A strip's channel stack is its slice and the ``context // 2`` slices on either side
    (edge slices replicated, ``slicing.context_indices``); a block of strips needs each
    distinct slice once, so a context-5 block of 8 slices fills 12 planes, not 40. Data of
    a volume still being decoded (``Volume.arrival``) is waited for, slice by slice.
    """

    channels = 1

    def __init__(self, vol: Volume, context: int) -> None:
        self.vol, self.context = vol, context
        axis = vol.slice_axis
        self.planes = vol.shape[axis]
        self.height, self.width = plane_shape(vol.shape, axis)
        self.dtype = np.dtype(vol.data.dtype)
        self._data = np.moveaxis(vol.data, axis, 0)  # slice-major in memory: each plane one memcpy
        self._valid = None if vol.valid is None else np.moveaxis(vol.valid, axis, 0)
        self.decode_wait_s = 0.0

    def fill(self, strips: Sequence, h: int, data: np.ndarray, valid: np.ndarray) -> tuple[int, np.ndarray, bool]:
        ctx = context_indices([s.plane for s in strips], self.context, self.planes)
        unique, where = np.unique(ctx, return_inverse=True)
        if self.vol.arrival is not None:
            t = time.perf_counter()
            self.vol.arrival.wait(int(unique[-1]) + 1)
            self.decode_wait_s += time.perf_counter() - t
        y = strips[0].y
        for k, p in enumerate(unique):
            data[k, 0] = self._data[p, y : y + h]
            if self._valid is not None:
                valid[k] = self._valid[p, y : y + h]
        return len(unique), where.reshape(ctx.shape), self._valid is None
