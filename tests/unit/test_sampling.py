"""Uniform samples without Redis: Algorithm R on a batch's draws, a labeler's local sample,
and its exact merge into staging."""

from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from stream_dec.stream.sampling import LocalSample, merge, winners


def test_winners_are_what_sequential_algorithm_r_leaves_in_each_slot():
    rng = np.random.default_rng(3)
    for before, room, n in [(0, 50, 120), (30, 50, 40), (1000, 50, 2048), (0, 5, 3), (7, 0, 10)]:
        draws = rng.random(n)
        last: dict[int, int] = {}  # slot -> the row that wrote it last, one sample at a time
        for row, draw in enumerate(draws):
            s = before + row + 1
            slot = s - 1 if s <= room else int(np.floor(draw * s))
            if slot < room:
                last[slot] = row
        rows, slots = winners(before, draws, room)
        assert dict(zip(slots, rows)) == last and len(set(slots)) == len(slots)


def merged_subsets(before: int, offered: int, room: int, capacity: int, trials: int, seed: int) -> Counter:
    """How often each set of items staging holds after: a uniform sample of ``min(before, room)``
    of items ``0 .. before - 1`` in its slots, in order (so a merge that favoured some
    slots would favour some items), then a merge of a local sample (``capacity``)
    of items ``before .. before + offered - 1`` added in batches of 2."""
    rng = np.random.default_rng(seed)
    outcomes: Counter = Counter()
    for _ in range(trials):
        staging = sorted(rng.permutation(before)[:room])
        local = LocalSample(capacity)
        for start in range(before, before + offered, 2):
            batch = list(range(start, min(start + 2, before + offered)))
            local.add([str(i) for i in batch], np.zeros((len(batch), 1), np.float32), 0.0, rng)
        rows, slots = merge(before, local.offered, local.held, room, rng)
        staging += [None] * (room - len(staging))
        for identifier, slot in zip(local.take(rows)[0], slots):
            staging[slot] = int(identifier)
        outcomes[frozenset(i for i in staging if i is not None)] += 1
    return outcomes


@pytest.mark.parametrize("before, offered, room, capacity", [(4, 6, 3, 3), (2, 5, 4, 5), (3, 3, 5, 5), (0, 7, 3, 4)])
def test_a_merged_local_sample_leaves_every_set_of_items_equally_likely(before, offered, room, capacity):
    trials = 12_000
    outcomes = merged_subsets(before, offered, room, capacity, trials, seed=before * 100 + offered)
    population = before + offered
    every = [frozenset(c) for c in combinations(range(population), min(room, population))]
    assert set(outcomes) == set(every)
    expected = trials / len(every)
    chi2 = sum((outcomes[s] - expected) ** 2 / expected for s in every)
    assert chi2 < len(every) + 5 * np.sqrt(2 * len(every))  # df + 5 sd: a biased merge lands far beyond


def test_a_merge_past_a_billion_draws_its_share_binomially_within_bounds():
    rng = np.random.default_rng(0)
    shares = [len(merge(2 * 10**9, 10**9, 5000, 5000, rng)[0]) for _ in range(200)]
    assert abs(np.mean(shares) - 5000 / 3) < 10
    rows, slots = merge(10**9, 10**9, 3, 3, rng)
    assert len(rows) == len(set(slots)) and set(slots) <= {0, 1, 2}


def test_a_merge_with_fewer_rows_held_than_the_room_asks_takes_them_all():
    """The room grew since the local sample began (a cycle told no next fraction)."""
    rows, slots = merge(0, 50, 2, 10, np.random.default_rng(0))
    assert sorted(rows) == [0, 1] and slots == [0, 1]
    rows, slots = merge(3, 50, 2, 10, np.random.default_rng(0))
    assert sorted(rows) == [0, 1] and slots == [3, 4]
    rows, slots = merge(100, 900, 2, 10, np.random.default_rng(0))
    assert sorted(rows) == [0, 1] and len(set(slots)) == 2 and set(slots) <= set(range(10))


def test_a_local_sample_holds_capacity_rows_and_refuses_another_width():
    sample = LocalSample(4)
    sample.add([f"a{i}" for i in range(10)], np.arange(20, dtype=np.float32).reshape(10, 2), 1.5,
               np.random.default_rng(0), texts=[f"t{i}" for i in range(10)])
    assert (sample.offered, sample.held) == (10, 4)
    ids, arrived, X, texts = sample.take([0, 1, 2, 3])
    assert len(set(ids)) == 4 and arrived.tolist() == [1.5] * 4
    for identifier, text, vector in zip(ids, texts, X):
        row = int(identifier[1:])
        assert text == f"t{row}" and list(vector) == [2 * row, 2 * row + 1]
    with pytest.raises(ValueError, match="width 3"):
        sample.add(["b"], np.zeros((1, 3), np.float32), 2.0, np.random.default_rng(0))
    sample.clear()
    sample.add(["b"], np.zeros((1, 3), np.float32), 2.0, np.random.default_rng(0))  # a new sample may change width
    assert (sample.offered, sample.held, sample.take([0])[0]) == (1, 1, ["b"])


def test_merging_every_fifty_batches_writes_half_the_samples_of_every_batch():
    """What a labeler sends: each batch merged on its own (Algorithm R's winners) against a
    local sample merged every 50 batches, over the same 300 batches of 20 into a room of 50."""
    sent = {1: 0, 50: 0}
    for every in sent:
        rng = np.random.default_rng(every)
        before, local = 0, LocalSample(50)
        for batch in range(300):
            local.add([str(i) for i in range(20)], np.zeros((20, 1), np.float32), 0.0, rng)
            if (batch + 1) % every == 0:
                sent[every] += len(merge(before, local.offered, local.held, 50, rng)[0])
                before += local.offered
                local.clear()
    assert sent[50] < 0.6 * sent[1] and sent[50] >= 50  # about 50 (1 + ln 6) against 50 (1 + ln 120)
