"""A background thread that handles queued items in order: the consumer side of a pipeline.

The writer thread of a run (``workers.RowWriter``) and a class map's overview pyramid
(``raster.write``) are consumers: the thread that produces items never waits for their
handling, only for room in a small bounded queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class Consumer(Generic[T]):
    """Runs ``handle(item)`` in a daemon thread for each item ``put``, in order.

    At most ``maxsize`` items wait. The first error stops the handling (later items are
    dropped, so producers never block on a dead consumer) and is raised in the producer's
    thread by the next :meth:`put` or by :meth:`close`.
    """

    def __init__(self, handle: Callable[[T], None], *, maxsize: int = 2, name: str = "segpipe-consumer") -> None:
        self._handle = handle
        self._q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        if self.error is not None:
            raise self.error
        self._q.put(item)

    def _run(self) -> None:
        while (item := self._q.get()) is not _DONE:
            if self.error is not None:
                continue
            try:
                self._handle(item)
            except BaseException as exc:  # noqa: BLE001 - surfaced in the producer's thread
                self.error = exc

    def close(self, abort: bool = False) -> None:
        """Wait for every queued item; raise the consumer's error unless ``abort`` (safe to repeat)."""
        if self._thread.is_alive():
            self._q.put(_DONE)
            self._thread.join()
        if self.error is not None and not abort:
            raise self.error
