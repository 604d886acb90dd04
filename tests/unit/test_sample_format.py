"""The reservoir's sample format: a batch packed at once equals its samples packed one by one."""

import numpy as np

from stream_dec.io.datasets import load_dataset
from stream_dec.stream.reservoir import MAX_ID_BYTES, pack, pack_many, unpack
from stream_dec_lab.demo import DEMO_DATA


def test_a_batch_packed_at_once_is_its_samples_packed_one_by_one():
    data = load_dataset(DEMO_DATA)  # real embeddings and their WordNet definitions
    X = data.X[:300]
    ids = [f"é-{i}" if i % 3 else "x" * (MAX_ID_BYTES + 10) for i in range(300)]  # multi-byte ids and cut ones
    texts = [data.texts[i] if i % 4 else None for i in range(300)]
    rows = list(range(0, 300, 7))[::-1]
    for batch_texts in (texts, None):
        samples = pack_many(ids, 2.5, X, rows, batch_texts)
        assert samples == [pack(ids[i], 2.5, X[i], batch_texts[i] if batch_texts else None) for i in rows]
        first = unpack(samples[0])
        assert first[0] == ids[rows[0]][:MAX_ID_BYTES] and np.array_equal(first[2], X[rows[0]])
        assert first[3] == (batch_texts[rows[0]] if batch_texts else None)


def test_no_rows_packs_nothing():
    assert pack_many(["a"], 0.0, np.ones((1, 3), np.float32), []) == []
