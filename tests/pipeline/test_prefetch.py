import threading

import pytest

from pipeline.prefetch import prefetch


def test_yields_everything_in_order_from_another_thread():
    seen = []

    def items():
        for i in range(5):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), name="reader")) == [0, 1, 2, 3, 4]
    assert set(seen) == {"reader"}


def test_producer_errors_are_raised_in_the_consumer():
    def items():
        yield 1
        raise OSError("block 7 unreadable")

    it = prefetch(items())
    assert next(it) == 1
    with pytest.raises(OSError, match="block 7"):
        next(it)


def test_closing_early_stops_a_blocked_producer():
    gate = threading.Event()
    produced = []

    def items():
        for i in range(100):
            if i == 3:
                gate.wait(5)  # blocked on something other than the queue until woken
            produced.append(i)
            yield i

    it = prefetch(items(), maxsize=1, wake=gate.set)
    assert next(it) == 0
    it.close()  # must return: wake() releases the producer, the drain lets it finish
    assert len(produced) < 100
