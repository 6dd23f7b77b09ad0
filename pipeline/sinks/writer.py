"""The writer thread: the only thread that touches a run's output files.

GDAL datasets are not thread-safe for writing, so one :class:`BandWriter` thread owns every
write of a run while the thread feeding the model goes on. It takes finished bands on their
way to the host (``engine.bands.Pending``: it waits for their copy here), writes them to the
sinks, which must succeed (an error stops the run), and then shows them to the observers
(QA, thumbnails), which are best effort: an observer that raises is switched off
(:class:`Watched`), its error kept for the report, and the outputs are still written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.bands import Band, Pending
from ..threads import Consumer, StopToken
from .base import SinkSet

log = logging.getLogger(__name__)

Observer = Callable[[Band], None]


class Watched:
    """A best-effort observer: the first exception switches it off and is kept in ``error``."""

    def __init__(self, name: str, observe: Observer) -> None:
        self.name, self.observe = name, observe
        self.error: BaseException | None = None

    def __call__(self, band: Band) -> None:
        if self.error is not None:
            return
        try:
            self.observe(band)
        except Exception as exc:  # noqa: BLE001 - best effort: reported, never fatal to the outputs
            self.error = exc
            log.warning("%s failed at plane %d, row %d and is switched off; the outputs are still written: %s: %s",
                        self.name, band.plane, band.row0, type(exc).__name__, exc)

    @property
    def failure(self) -> str | None:
        return None if self.error is None else f"{type(self.error).__name__}: {self.error}"


class BandWriter:
    """Writer thread of one run: pending bands in, sinks (must succeed) then observers (best effort)."""

    def __init__(self, sinks: SinkSet, observers: Sequence[Watched], stop: StopToken) -> None:
        self.sinks, self.observers = sinks, tuple(observers)
        self.busy_s = 0.0
        self.copy_wait_s = 0.0  # waiting for pending bands to reach the host
        self.valid_pixels = 0
        self.entropy_sum = 0.0
        # each pending item is O(tile x width) (or a batch of planes): two may wait
        self._consumer: Consumer[Any] = Consumer(self._take, role="write", maxsize=2, stop=stop)

    def put(self, pending: Pending) -> None:
        self._consumer.put(pending)

    def close(self, abort: bool = False) -> None:
        self._consumer.close(abort)

    def _take(self, pending: Pending) -> None:
        t = time.perf_counter()
        bands = pending.resolve()
        t2 = time.perf_counter()
        self.copy_wait_s += t2 - t
        try:
            for band in bands:
                self.sinks.write(band)
                self.valid_pixels += band.valid_pixels
                self.entropy_sum += band.entropy_sum
                for obs in self.observers:
                    obs(band)
        finally:
            self.busy_s += time.perf_counter() - t2
