"""The threads of a run: producers run ahead, consumers handle in order, errors reach the owner, stop stops."""

import threading
import time

import pytest

from pipeline.threads import Consumer, Producer, StopToken, Task


def prefetch(items, name="prefetch", maxsize=1, stop=None):
    return Producer(items, role=name, maxsize=maxsize, stop=stop)


def test_yields_everything_in_order_from_another_thread():
    seen = []

    def items():
        for i in range(5):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), name="reader")) == [0, 1, 2, 3, 4]
    assert set(seen) == {"segpipe-reader"}


def test_producer_errors_are_raised_in_the_consumer():
    def items():
        yield 1
        raise OSError("block 7 unreadable")

    it = prefetch(items())
    assert next(it) == 1
    with pytest.raises(OSError, match="block 7"):
        next(it)


def test_closing_early_stops_a_blocked_producer():
    import queue

    token = StopToken()
    never = queue.Queue()  # e.g. the free host buffers, none of which comes back
    produced = []

    def items():
        for i in range(100):
            if i == 3:
                token.get(never)  # blocked on something other than the producer's queue, stop-aware
            produced.append(i)
            yield i

    it = prefetch(items(), maxsize=1, stop=token)
    assert next(it) == 0
    t = time.perf_counter()
    it.close()  # must return: the token releases the wait, the producer stops at its next item
    assert time.perf_counter() - t < 5
    assert len(produced) < 100


def test_a_run_stop_token_stops_its_producers_and_consumers():
    run = StopToken()
    handled = []
    p = Producer(iter(range(10**6)), role="p", maxsize=1, stop=run.child())
    c = Consumer(handled.append, role="c", maxsize=1, stop=run.child())
    assert next(p) == 0
    c.put(1)
    run.set()
    t = time.perf_counter()
    with pytest.raises(StopIteration):  # the producer gave up; next() does not block
        for _ in range(5):
            next(p)
    c.close()  # returns although the queue may still hold items
    assert time.perf_counter() - t < 5
    p.close()
    assert handled in ([], [1])


def test_a_child_token_is_stopped_by_its_parent_not_the_other_way():
    parent = StopToken()
    child = parent.child()
    child.set()
    assert child.stopped and not parent.stopped
    other = parent.child()
    parent.set()
    assert other.stopped


def test_a_task_returns_or_raises_in_the_caller():
    assert Task(lambda a, b: a + b, 2, 3, role="add").result() == 5

    def boom():
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        Task(boom, role="boom").result()
