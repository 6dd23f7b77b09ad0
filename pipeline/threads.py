"""Every thread segpipe starts, and the three rules they all follow.

A run keeps the model busy by moving everything else off the thread that feeds it. The
work around the model comes in four shapes, each one class here:

    Producer   an iterator run ahead in a thread (reading strips/slabs, decoding a volume)
    Consumer   items handled in order in a thread (writing outputs, QA, overview levels)
    Task       one call in the background whose result is collected later (hashing the input)
    pool()     a pool for data-parallel calls (column chunks of a strip, classes in QA, gzip)

The rules (docs/architecture.md has the table of every thread of a run):

1. **Stop**: every producer and consumer watches a :class:`StopToken`. Setting it (a failed
   run, an early close) makes each one stop at its next item, and no wait of theirs blocks
   for good: waits poll the token.
2. **Errors**: an exception in a thread is raised in the thread that owns it, at the next
   hand-off: ``next()`` of a Producer, ``put()``/``close()`` of a Consumer, ``result()`` of a
   Task or a pool future. Nothing is swallowed or only logged.
3. Threads are daemons named ``segpipe-<role>``, so a stuck one never keeps the process alive
   and a stack dump says what it was.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_DONE = object()
POLL_S = 0.05  # how often a blocked wait looks at its stop token


class StopToken:
    """Set once to stop every thread that watches it (and those of its children)."""

    def __init__(self, parent: StopToken | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent

    def set(self) -> None:
        self._event.set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.stopped)

    def child(self) -> StopToken:
        """A token that is also set when this one is (closing a child leaves the parent running)."""
        return StopToken(self)

    def get(self, q: queue.Queue[Any]) -> Any:
        """``q.get()`` that gives up (returns ``_DONE``) once the token is set."""
        while True:
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                if self.stopped:
                    return _DONE

    def put(self, q: queue.Queue[Any], item: Any) -> bool:
        """``q.put(item)`` that gives up (False) once the token is set."""
        while True:
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if self.stopped:
                    return False


def start(target: Callable[[], None], role: str) -> threading.Thread:
    """Start a daemon thread named ``segpipe-<role>``; the one place threads are made."""
    th = threading.Thread(target=target, name=f"segpipe-{role}", daemon=True)
    th.start()
    return th


class Producer(Generic[T]):
    """Iterate ``items`` in a thread of its own, at most ``maxsize`` items ahead (0: unbounded).

    Iterating the Producer yields the items in order in the caller's thread; an exception of
    the producing thread is raised there by ``next()``. :meth:`close` sets the stop token
    (``stop``, or one of its own), which stops the thread at its next item and releases any
    stop-aware wait the items' code makes on the same token (give a child of a run's token
    to stop only this producer and what waits with it).
    """

    def __init__(self, items: Iterable[T], *, role: str, maxsize: int = 1, stop: StopToken | None = None,
                 on_wait: Callable[[float], None] | None = None) -> None:
        self.stop = stop if stop is not None else StopToken()
        self._q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._on_wait = on_wait
        self._finished = False
        self._thread = start(lambda: self._produce(iter(items)), role)

    def _produce(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if self.stop.stopped or not self.stop.put(self._q, item):
                    return
            self.stop.put(self._q, _DONE)
        except BaseException as exc:  # noqa: BLE001 - raised in the consumer's thread (rule 2)
            self.stop.put(self._q, _Raised(exc))

    def __iter__(self) -> Producer[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        t = time.perf_counter()
        item = self.stop.get(self._q)
        if self._on_wait is not None:
            self._on_wait(time.perf_counter() - t)
        if item is _DONE:
            self._finished = True
            raise StopIteration
        if isinstance(item, _Raised):
            self._finished = True
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the producing thread and wait for it (safe to repeat)."""
        self.stop.set()
        self._finished = True
        self._thread.join()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Consumer(Generic[T]):
    """Runs ``handle(item)`` in a thread of its own for each item ``put``, in order.

    At most ``maxsize`` items wait. The first error stops the handling (later items are
    dropped, so producers never block on a dead consumer) and is raised in the producer's
    thread by the next :meth:`put` or by :meth:`close`. ``close(abort=True)`` sets the stop
    token (``stop``, or one of its own).
    """

    def __init__(self, handle: Callable[[T], None], *, role: str, maxsize: int = 2,
                 stop: StopToken | None = None) -> None:
        self._handle = handle
        self.stop = stop if stop is not None else StopToken()
        self._q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self._thread = start(self._run, role)

    def put(self, item: T) -> None:
        if self.error is not None:
            raise self.error
        self.stop.put(self._q, item)

    def _run(self) -> None:
        while (item := self.stop.get(self._q)) is not _DONE:
            if self.error is not None or self.stop.stopped:
                continue
            try:
                self._handle(item)
            except BaseException as exc:  # noqa: BLE001 - raised in the producer's thread (rule 2)
                self.error = exc

    def close(self, abort: bool = False) -> None:
        """Wait for every queued item (``abort``: drop them); raise the error unless ``abort``.

        Safe to repeat.
        """
        if self._thread.is_alive():
            if abort:
                self.stop.set()
            else:
                self.stop.put(self._q, _DONE)
            self._thread.join()
        if self.error is not None and not abort:
            raise self.error


class Task(Generic[T]):
    """``fn(*args)`` in a thread of its own; :meth:`result` waits and returns or raises."""

    def __init__(self, fn: Callable[..., T], *args: Any, role: str) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = start(lambda: self._call(fn, args), role)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - raised by result() (rule 2)
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def pool(role: str, n: int) -> ThreadPoolExecutor:
    """A pool of ``n`` threads named ``segpipe-<role>_<i>`` for data-parallel calls.

    Its owner submits and collects (``future.result()`` raises the call's error: rule 2) and
    shuts it down with itself.
    """
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"segpipe-{role}")
