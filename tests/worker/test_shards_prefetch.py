"""The read-ahead thread of the shard worker: order, errors, and no thread left behind."""

import threading
import time

import pytest

from e5ray.worker.embed_unit import _prefetch


def test_prefetch_keeps_order_and_passes_errors():
    assert list(_prefetch(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise ValueError("bad chunk 2")

    with pytest.raises(ValueError, match="bad chunk 2"):
        list(_prefetch(failing()))


def test_consumer_error_stops_the_producer_thread():
    before = threading.active_count()

    def slow_source():
        for i in range(1000):
            time.sleep(0.001)
            yield i

    with pytest.raises(RuntimeError):
        for item in _prefetch(slow_source()):
            if item == 3:
                raise RuntimeError("embedding failed")
    assert threading.active_count() == before
