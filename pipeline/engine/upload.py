"""Host buffers for blocks of strips, and the one way raw pixels travel to the model's device.

The reader thread fills a block (:class:`Block`: one or more strips' raw pixels and
validity) into one of two reused host buffers, page-locked on a GPU run so the copy is
asynchronous. Pixels travel in the file's own dtype (half the bytes of float32 for uint16)
and are widened to float32 on the device. On a GPU the copy runs on a stream of its own,
overlapping the model's work on the previous block; the model's stream waits for it, and
the buffer is free again as soon as the copy is done (a CUDA event the reader waits on).
On the CPU the device tensor *is* the host buffer, freed when the engine is done with it.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..threads import StopToken

# Host dtypes torch cannot hold travel bit-cast to the signed type of the same width and are
# widened back on the device (widen): the transfer stays as small as the file's pixels.
BITCAST = {np.dtype(np.uint16): np.int16, np.dtype(np.uint32): np.int32}


@dataclass(frozen=True)
class Strip:
    """Grid row ``row`` of plane ``plane``: image rows ``[y, y + read_h)``, every column."""

    plane: int
    row: int
    y: int


@dataclass
class Block:
    """Consecutive strips whose raw pixels fill host buffer ``slot``.

    ``data[:u]`` (u, C, h, W) holds the distinct plane windows the strips need and
    ``valid[:u]`` their validity; strip ``j`` takes its 2.5D channel stack from
    ``data[where[j]]`` (``where`` (n, context); None: strip j is ``data[j]``, context 1).
    ``all_valid``: no invalid pixel, ``valid`` was not filled.
    """

    strips: list[Strip]
    slot: int
    u: int
    where: np.ndarray | None
    all_valid: bool


@dataclass
class DeviceBlock:
    """A block's pixels on the model's device, ready for kernels on its current stream."""

    block: Block
    data: torch.Tensor  # (u, C, h, W) raw, bit-cast where needed
    valid: torch.Tensor | None  # (u, h, W) bool; None when all valid
    where: torch.Tensor | None  # (n, context) int64


class Uploader:
    """Two host buffers of ``shape`` (U, C, h, W) and ``dtype``: one being filled while one is used."""

    def __init__(self, shape: tuple[int, int, int, int], dtype: np.dtype, device: torch.device,
                 stop: StopToken, n: int = 2) -> None:
        self.cuda = device.type == "cuda"
        self.device, self.stop = device, stop
        self.data = [host_empty(shape, np.dtype(dtype), self.cuda) for _ in range(n)]
        self.valid = [host_empty((shape[0], *shape[2:]), np.dtype(bool), self.cuda) for _ in range(n)]
        self._events: list[Any] = [None] * n
        self._copy_stream = torch.cuda.Stream(device) if self.cuda else None
        self._free: queue.Queue[int] = queue.Queue()
        for i in range(n):
            self._free.put(i)

    def acquire(self) -> int | None:
        """A free buffer (waiting for its previous copy to finish), or None once stopped."""
        idx = self.stop.get(self._free)
        if not isinstance(idx, int):
            return None
        if self._events[idx] is not None:
            self._events[idx].synchronize()
        return idx

    def upload(self, block: Block) -> DeviceBlock:
        """The block on the model's device (on a GPU: copied on the side stream, not waited for)."""
        i, u = block.slot, block.u
        data, valid = self.data[i][:u], None if block.all_valid else self.valid[i][:u]
        where = None if block.where is None else torch.from_numpy(block.where)
        if not self.cuda:
            return DeviceBlock(block, raw_to_device(data, self.device), _tensor(valid), where)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            moved = [raw_to_device(data, self.device), None if valid is None else
                     torch.from_numpy(valid).to(self.device, non_blocking=True),
                     None if where is None else where.pin_memory().to(self.device, non_blocking=True)]
            ev = torch.cuda.Event()
            ev.record(self._copy_stream)
        compute.wait_stream(self._copy_stream)  # kernels queued from now on see the copied block
        for t in moved:  # made on the copy stream, used on the compute stream: the allocator
            if t is not None:  # must not hand the memory out before that is done
                t.record_stream(compute)
        self._events[i] = ev
        self._free.put(i)  # the reader may refill the host buffer once ``ev`` has passed
        return DeviceBlock(block, *moved)

    def release(self, block: Block) -> None:
        """The engine is done with the block (CPU: its buffer may be refilled now)."""
        if not self.cuda:
            self._free.put(block.slot)


def _tensor(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a)


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
