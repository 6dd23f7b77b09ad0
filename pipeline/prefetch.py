"""Run a producer one step ahead of its consumer, in a background thread.

Reading (strips of a scene, slabs of a volume) happens in the producer's thread while the
main thread feeds the model. Errors in the producer are raised in the consumer's thread;
closing the consumer early stops the producer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterator[T], *, maxsize: int = 1, name: str = "segpipe-prefetch",
             on_wait: Callable[[float], None] | None = None,
             wake: Callable[[], None] | None = None) -> Iterator[T]:
    """Yield ``items``, produced in a daemon thread at most ``maxsize`` ahead.

    Args:
        items: an iterator whose ``next`` does the work (read, decode, prepare).
        on_wait: called with the seconds the consumer waited for each item.
        wake: called on close to unblock a producer waiting on something else than the
            queue (e.g. a free buffer), so the thread can end.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            q.put(exc)

    th = threading.Thread(target=produce, name=name, daemon=True)
    th.start()
    try:
        while True:
            t = time.perf_counter()
            item = q.get()
            if on_wait is not None:
                on_wait(time.perf_counter() - t)
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        if wake is not None:
            wake()
        while th.is_alive():  # drain so a producer blocked on a full queue can finish
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.05)
