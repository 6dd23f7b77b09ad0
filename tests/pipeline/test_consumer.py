"""The consumer thread: items handled in order; its first error reaches the producer."""

import threading

import pytest

from pipeline.threads import Consumer


def test_items_are_handled_in_order_in_another_thread():
    seen, threads = [], set()
    c = Consumer(lambda x: (seen.append(x), threads.add(threading.current_thread().name)), role="t-consumer")
    for i in range(50):
        c.put(i)
    c.close()
    assert seen == list(range(50)) and threads == {"segpipe-t-consumer"}
    c.close()  # a second close is harmless


def test_the_first_error_stops_handling_and_is_raised_to_the_producer():
    seen = []

    def handle(x):
        if x == 3:
            raise ValueError("bad item 3")
        seen.append(x)

    c = Consumer(handle, role="t", maxsize=1)
    with pytest.raises(ValueError, match="bad item 3"):
        for i in range(100):  # put raises once the consumer has failed; it never blocks for good
            c.put(i)
        c.close()
    assert seen == [0, 1, 2]
    c.close(abort=True)  # the error is known: abort does not raise it again
    with pytest.raises(ValueError):
        c.close()
