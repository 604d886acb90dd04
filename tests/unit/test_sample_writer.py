"""The labeler's reservoir writer: Redis never holds labels, and every batch is written or counted."""

import threading
import time

import numpy as np
import redis

from stream_dec.stream.reservoir import SampleWriter


class SlowReservoir:
    """Records what it is offered; each offer waits until ``release`` is set (a slow Redis)."""

    def __init__(self, fail: bool = False) -> None:
        self.offered, self.release, self.fail = [], threading.Event(), fail

    def offer(self, ids, X, arrived, rng, texts=None):
        self.release.wait(10)
        if self.fail:
            raise redis.ConnectionError("down")
        self.offered.append((list(ids), texts))


def counters():
    counts = {"offered": 0, "skipped": 0}
    return counts, (lambda n: counts.__setitem__("offered", counts["offered"] + n)), \
        (lambda n: counts.__setitem__("skipped", counts["skipped"] + n))


def test_a_slow_redis_skips_batches_beyond_the_backlog_instead_of_waiting():
    reservoir = SlowReservoir()
    counts, offered, skipped = counters()
    writer = SampleWriter(reservoir, offered, skipped, backlog=2)
    X = np.zeros((3, 2), np.float32)
    writer.submit(["0-0", "0-1", "0-2"], X, ["a", None, "b"])
    while writer.queue.qsize():  # until the writer holds it, waiting on Redis
        time.sleep(0.01)
    for batch in range(1, 6):  # two wait, three are skipped: submit never blocks
        writer.submit([f"{batch}-{i}" for i in range(3)], X)
    reservoir.release.set()
    writer.close()
    assert counts == {"offered": 9, "skipped": 9} and len(reservoir.offered) == 3
    assert reservoir.offered[0] == (["0-0", "0-1", "0-2"], ["a", None, "b"])


def test_a_cold_start_waits_for_room_and_loses_nothing():
    reservoir = SlowReservoir()
    counts, offered, skipped = counters()
    writer = SampleWriter(reservoir, offered, skipped, backlog=1)
    threading.Timer(0.2, reservoir.release.set).start()
    for batch in range(4):
        writer.submit([str(batch)], np.zeros((1, 2), np.float32), wait=True)
    writer.close()
    assert counts == {"offered": 4, "skipped": 0}


def test_redis_down_counts_the_batch_skipped_and_pauses_the_writes():
    reservoir = SlowReservoir(fail=True)
    reservoir.release.set()
    counts, offered, skipped = counters()
    writer = SampleWriter(reservoir, offered, skipped, retry_s=60)
    writer.submit(["a", "b"], np.zeros((2, 2), np.float32))
    writer.flush()
    reservoir.fail = False
    writer.submit(["c"], np.zeros((1, 2), np.float32))  # within retry_s: not tried
    writer.close()
    assert counts == {"offered": 0, "skipped": 3} and reservoir.offered == []
