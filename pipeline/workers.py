"""Background threads of a run: the output writer and a one-shot background job.

GDAL datasets are not thread-safe for writing, so one :class:`RowWriter` thread owns every
write of a run's outputs (and feeds the QA observers), while the main thread keeps the
model busy. :class:`Background` hashes the input meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .consumer import Consumer
from .stitch import PendingBand, RowBand

if TYPE_CHECKING:
    from .raster.write import GeoTiffSink

RowObserver = Callable[["RowBand"], None]


class Background:
    """Run ``fn(*args)`` in a daemon thread (hashing the input while the model works)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._out: list[Any] = []
        self._thread = threading.Thread(target=lambda: self._out.append(_capture(fn, *args)), daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        value, exc = self._out[0]
        if exc is not None:
            raise exc
        return value


def _capture(fn: Callable[..., Any], *args: Any) -> tuple[Any, BaseException | None]:
    try:
        return fn(*args), None
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
        return None, exc


class RowWriter:
    """Writer thread: the only thread that touches the output datasets.

    It takes finished bands on the host or on their way there (:class:`PendingBand`, whose
    copy it waits for here, so the thread feeding the model never does).
    """

    def __init__(self, sinks: dict[str, GeoTiffSink], observers: Sequence[RowObserver]) -> None:
        self.sinks = sinks
        self.observers = observers
        self.busy_s = 0.0
        self.copy_wait_s = 0.0  # waiting for pending bands to reach the host
        self.valid_pixels = 0
        self.entropy_sum = 0.0
        # each finished row band is O(tile x width): two may wait
        self._consumer: Consumer[RowBand | PendingBand] = Consumer(self._take, maxsize=2, name="segpipe-write")

    def put(self, band: RowBand | PendingBand) -> None:
        self._consumer.put(band)

    def close(self, abort: bool = False) -> None:
        self._consumer.close(abort)

    def _take(self, band: RowBand | PendingBand) -> None:
        t = time.perf_counter()
        if isinstance(band, PendingBand):
            band = band.resolve()
            t2 = time.perf_counter()
            self.copy_wait_s += t2 - t
            t = t2
        try:
            self._write(band)
        finally:
            self.busy_s += time.perf_counter() - t

    def _write(self, band: RowBand) -> None:
        self.sinks["mask"].write(band.row0, band.labels)
        if "confidence" in self.sinks:
            self.sinks["confidence"].write(band.row0, band.confidence)
        if "probabilities" in self.sinks:
            self.sinks["probabilities"].write(band.row0, band.probabilities)
        self.valid_pixels += band.valid_pixels
        self.entropy_sum += band.entropy_sum
        for obs in self.observers:
            obs(band)
