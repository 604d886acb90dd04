"""The labeler's reservoir writer: Redis never holds labels, and every batch is written or counted."""

import threading
import time

import numpy as np
import redis

from stream_dec.stream.reservoir import SampleWriter


class SlowReservoir:
    """Records each local sample it is written (ids held, texts, rows offered); each write
    waits until ``release`` is set (a slow Redis)."""

    def __init__(self, fail: bool = False, room: int = 10) -> None:
        self.written, self.release, self.fail = [], threading.Event(), fail
        self.room = room

    def write(self, sample, rng):
        self.release.wait(10)
        if self.fail:
            raise redis.ConnectionError("down")
        ids, _, _, texts = sample.take(list(range(sample.held)))
        self.written.append((ids, texts, sample.offered))


def counters():
    counts = {"offered": 0, "skipped": 0}
    return counts, (lambda n: counts.__setitem__("offered", counts["offered"] + n)), \
        (lambda n: counts.__setitem__("skipped", counts["skipped"] + n))


def test_a_slow_redis_holds_no_labels_and_loses_no_samples():
    """While a write waits on Redis, batches go into the next local sample at once."""
    reservoir = SlowReservoir(room=10)
    counts, offered, skipped = counters()
    writer = SampleWriter(reservoir, offered, skipped, write_interval_s=0)
    X = np.zeros((3, 2), np.float32)
    writer.submit(["0-0", "0-1", "0-2"], X, ["a", None, "b"])
    time.sleep(0.1)  # the thread took it and waits on Redis
    started = time.monotonic()
    for batch in range(1, 6):
        writer.submit([f"{batch}-{i}" for i in range(3)], X)
    assert time.monotonic() - started < 0.5 and reservoir.written == []
    reservoir.release.set()
    writer.close()
    assert counts == {"offered": 18, "skipped": 0}
    assert reservoir.written[0] == (["0-0", "0-1", "0-2"], ["a", None, "b"], 3)
    (ids, texts, rows), = reservoir.written[1:]  # the other five batches, in one sample of the room
    assert rows == 15 and len(set(ids)) == 10 and set(ids) <= {f"{b}-{i}" for b in range(1, 6) for i in range(3)}


def test_a_cold_start_returns_once_its_batch_is_written():
    reservoir = SlowReservoir()
    counts, offered, skipped = counters()
    writer = SampleWriter(reservoir, offered, skipped, write_interval_s=60)
    threading.Timer(0.2, reservoir.release.set).start()
    for batch in range(4):
        writer.submit([str(batch)], np.zeros((1, 2), np.float32), wait=True)
        assert [ids for ids, _, _ in reservoir.written] == [[str(b)] for b in range(batch + 1)]
    assert counts == {"offered": 4, "skipped": 0}
    writer.close()


def test_batches_within_the_interval_are_written_once_as_one_bounded_sample():
    reservoir = SlowReservoir(room=5)
    reservoir.release.set()
    counts, offered, skipped = counters()
    writer = SampleWriter(reservoir, offered, skipped, write_interval_s=0.3)
    for batch in range(4):
        writer.submit([f"{batch}-{i}" for i in range(25)], np.full((25, 2), batch, np.float32))
    time.sleep(0.1)
    assert reservoir.written == [] and counts["offered"] == 0  # held in memory until the interval passes
    deadline = time.monotonic() + 5
    while not reservoir.written and time.monotonic() < deadline:
        time.sleep(0.01)
    (held, texts, rows), = reservoir.written
    assert rows == 100 and len(set(held)) == 5 and counts == {"offered": 100, "skipped": 0}
    writer.submit(["late"], np.zeros((1, 2), np.float32))
    writer.close()  # writes what it holds
    assert reservoir.written[-1] == (["late"], [None], 1) and counts["offered"] == 101


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
    assert counts == {"offered": 0, "skipped": 3} and reservoir.written == []


def test_rows_of_another_width_are_counted_skipped_not_raised():
    reservoir = SlowReservoir()
    reservoir.release.set()
    counts, offered, skipped = counters()
    writer = SampleWriter(reservoir, offered, skipped, write_interval_s=60)
    writer.submit(["a", "b"], np.zeros((2, 2), np.float32))
    writer.submit(["c"], np.zeros((1, 3), np.float32))  # held rows are 2-d: this one cannot join them
    writer.close()
    assert counts == {"offered": 2, "skipped": 1} and reservoir.written == [(["a", "b"], [None, None], 2)]


def test_an_unexpected_write_error_is_counted_and_the_thread_writes_on():
    class Broken(SlowReservoir):
        calls = 0

        def write(self, sample, rng):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("a bug")
            super().write(sample, rng)

    reservoir = Broken()
    reservoir.release.set()
    counts, offered, skipped = counters()
    writer = SampleWriter(reservoir, offered, skipped, retry_s=60)
    first = threading.Thread(target=writer.submit, args=(["a"], np.zeros((1, 2), np.float32)), kwargs={"wait": True})
    first.start()
    first.join(5)
    assert not first.is_alive()  # the wait returned: the thread survived the error
    writer.submit(["b"], np.zeros((1, 2), np.float32), wait=True)  # no retry pause: not a Redis error
    writer.close()
    assert counts == {"offered": 1, "skipped": 1} and reservoir.written == [(["b"], [None], 1)]
