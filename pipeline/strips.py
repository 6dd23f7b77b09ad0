"""Host strip buffers and the trip of raw pixels to the model's device.

Strips (all columns of one row of tiles) are read into two reused host buffers, page-locked
on a GPU run so the copy to the device is asynchronous. Pixels travel in the file's own
dtype (half the bytes of float32 for uint16) and are widened to float32 on the device.
"""

from __future__ import annotations

import queue
from typing import Any

import numpy as np
import torch

from .raster.read import RasterInfo
from .tiling import TileGrid


# Host dtypes torch cannot hold travel bit-cast to the signed type of the same width and are
# widened back on the device (widen): the transfer stays as small as the file's pixels.
BITCAST = {np.dtype(np.uint16): np.int16, np.dtype(np.uint32): np.int32}


def raw_to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    cast = BITCAST.get(a.dtype)
    t = torch.from_numpy(a.view(cast) if cast else a)
    return t.to(device, non_blocking=True) if t.device != device else t


def unsigned_bits(dtype: np.dtype) -> int | None:
    """16 or 32 for pixels that travel bit-cast (uint16/uint32), else None."""
    return dtype.itemsize * 8 if np.dtype(dtype) in BITCAST else None


def widen(t: torch.Tensor, bits: int | None) -> torch.Tensor:
    """float32 values of raw pixels; bit-cast unsigned ones are masked back to their range."""
    if bits is None:
        return t.float()
    wide = torch.int32 if bits == 16 else torch.int64
    return (t.to(wide) & ((1 << bits) - 1)).float()


class StripPool:
    """Two host buffers for strips (pinned on a GPU run): one being read while one is used.

    The reader thread ``acquire``s a free buffer, fills it and hands its index over; the main
    thread ``upload``s it and calls ``release`` when it no longer reads it (CPU: the device
    tensor *is* the buffer). On a GPU the copy runs on a stream of its own, so it overlaps
    the model's work on the previous strip instead of queueing behind it; the model's stream
    waits for the copy, and the buffer is free again as soon as the copy is done (a CUDA
    event the reader waits on).
    """

    def __init__(self, info: RasterInfo, grid: TileGrid, device: torch.device, n: int = 2) -> None:
        shape = (len(info.bands), grid.read_h, info.width)
        self.cuda = device.type == "cuda"
        self.device = device
        dtype = np.dtype(info.dtype)
        self.data = [host_empty(shape, dtype, self.cuda) for _ in range(n)]
        self.valid = [host_empty(shape[1:], np.dtype(bool), self.cuda) for _ in range(n)]
        self._events: list[Any] = [None] * n
        self._copy_stream = torch.cuda.Stream(device) if self.cuda else None
        self._free: queue.Queue[int | None] = queue.Queue()
        for i in range(n):
            self._free.put(i)

    def acquire(self) -> int | None:
        idx = self._free.get()
        if idx is None:
            return None
        if self._events[idx] is not None:
            self._events[idx].synchronize()
        return idx

    def upload(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Buffer ``idx`` on the model's device: (raw pixels, validity), ready for the current stream."""
        data, valid = self.data[idx], self.valid[idx]
        if not self.cuda:
            return raw_to_device(data, self.device), torch.from_numpy(valid)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            strip = raw_to_device(data, self.device)
            strip_valid = torch.from_numpy(valid).to(self.device, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record(self._copy_stream)
        compute.wait_stream(self._copy_stream)  # kernels queued from now on see the copied strip
        strip.record_stream(compute)  # made on the copy stream, used on the compute stream: the
        strip_valid.record_stream(compute)  # allocator must not hand the memory out before that is done
        self._events[idx] = ev
        self._free.put(idx)  # the reader may refill the host buffer once ``ev`` has passed
        return strip, strip_valid

    def release(self, idx: int) -> None:
        if not self.cuda:
            self._free.put(idx)

    def wake(self) -> None:
        """Unblock a reader waiting for a buffer (shutdown)."""
        self._free.put(None)


def host_empty(shape: tuple[int, ...], dtype: np.dtype, pinned: bool) -> np.ndarray:
    """An uninitialised host array, in page-locked memory for fast asynchronous copies to a GPU."""
    if pinned:
        cast = np.dtype(BITCAST.get(dtype, dtype))
        try:
            t = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, cast)).dtype, pin_memory=True)
            return t.numpy().view(dtype)
        except (RuntimeError, TypeError):
            pass  # pinning can fail (limits, exotic dtype): fall back to pageable memory
    return np.empty(shape, dtype)
