"""What the engine hands to the outputs: finished bands of rows, on their way to the host.

A :class:`Band` is rows ``[row0, row0 + h)`` of plane ``plane`` (a scene has one plane; a
volume one per slice), every column, with the fields the outputs consume (``BandField``).
The stitcher finishes bands on the model's device and queues their copy to the host
(:class:`Pending`); the writer thread resolves them, so the thread feeding the model never
waits for the device (``tests/pipeline/test_gpu.py`` checks with torch's sync debug mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

# Probabilities and confidence are stored as uint8 0..254 (value / 254); 255 is their nodata.
PROB_SCALE = 254
PROB_NODATA = 255

# The fields of a band a sink or observer can consume.
BandField = Literal["labels", "valid", "confidence", "probabilities"]


@dataclass(frozen=True)
class Band:
    """Finished output rows of one plane, on the host.

    Attributes:
        plane: the plane's index (0 for a scene; the slice index along a volume's slicing axis).
        row0: first row of the band in its plane.
        labels: (h, W) class ids; the run's nodata value where invalid.
        valid: (h, W) bool, True where the input had data.
        confidence: (h, W) uint8 max class probability x 254, 255 where invalid (or None).
        probabilities: (K, h, W) uint8 per-class probability x 254, 255 where invalid (or None).
        entropy_sum: sum over valid pixels of the per-pixel entropy (nats), for QA.
        valid_pixels: number of valid pixels (counted on the device).
        tallies: the band reducers' results (``pipeline.qa.tally``), on the host.
    """

    plane: int
    row0: int
    labels: np.ndarray
    valid: np.ndarray
    confidence: np.ndarray | None
    probabilities: np.ndarray | None
    entropy_sum: float
    valid_pixels: int
    tallies: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.labels.shape[0])


class HostCopies:
    """Named device tensors on their way to the host: :meth:`wait` returns them as arrays.

    On a GPU each is copied into page-locked host memory with ``non_blocking=True`` and a
    CUDA event marks the end of the copies, so the thread that queued them never waits for
    the device; :meth:`wait` (in whichever thread consumes them) waits for that event.
    Page-locked blocks come from torch's caching host allocator, which does not hand a
    block out again before the copies that used it are done. On the CPU nothing moves.
    """

    def __init__(self, tensors: dict[str, torch.Tensor | None]) -> None:
        cuda = next((t.device for t in tensors.values() if t is not None and t.device.type == "cuda"), None)
        ship = _queue_copy if cuda is not None else (lambda t: t)
        self._t = {k: None if t is None else ship(t) for k, t in tensors.items()}
        self._event = None
        if cuda is not None:  # on the stream of the tensors' device (cuda:1 need not be the current device)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(cuda))

    def wait(self) -> dict[str, np.ndarray | None]:
        if self._event is not None:
            self._event.synchronize()
        return {k: None if t is None else t.numpy() for k, t in self._t.items()}


_FIELDS = ("labels", "valid", "confidence", "probabilities", "entropy", "valid_n")


class Pending:
    """Finished bands (one, or a stack of whole planes) whose copy to the host is queued.

    :meth:`resolve`, called once by the consumer, waits for the copy and returns the
    :class:`Band` s in order. Stacked tensors have a leading band dimension.
    """

    def __init__(self, where: list[tuple[int, int]], tensors: dict[str, torch.Tensor | None],
                 tallies: dict[str, torch.Tensor]) -> None:
        self.where = where  # (plane, row0) of each band
        self._copies = HostCopies({**tensors, **{f"tally:{k}": v for k, v in tallies.items()}})

    def resolve(self) -> list[Band]:
        h = self._copies.wait()
        tallies = {k[6:]: v for k, v in h.items() if k.startswith("tally:")}
        out = []
        for j, (plane, row0) in enumerate(self.where):
            def pick(a: np.ndarray | None) -> np.ndarray | None:
                return None if a is None else a[j]

            out.append(Band(plane, row0, pick(h["labels"]), pick(h["valid"]), pick(h["confidence"]),
                            pick(h["probabilities"]), float(h["entropy"][j]), int(h["valid_n"][j]),
                            {k: v[j] for k, v in tallies.items()}))
        return out


def _queue_copy(t: torch.Tensor) -> torch.Tensor:
    """An asynchronous copy of device tensor ``t`` into page-locked host memory."""
    try:
        out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    except RuntimeError:  # page-locking can fail (limits): an ordinary, synchronous copy
        return t.cpu()
    return out.copy_(t, non_blocking=True)


def to_u8(p: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Probabilities in [0, 1] -> uint8 codes 0..254, :data:`PROB_NODATA` where invalid."""
    q = torch.round(p.clamp(0, 1) * PROB_SCALE).to(torch.uint8)
    return torch.where(valid, q, torch.full_like(q, PROB_NODATA))
