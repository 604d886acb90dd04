"""The reservoir's sample format: a batch packed in one buffer equals its samples packed one by one."""

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
        joined, lengths = pack_many(ids, 2.5, X, rows, batch_texts)
        one_by_one = [pack(ids[i], 2.5, X[i], batch_texts[i] if batch_texts else None) for i in rows]
        assert lengths == [len(sample) for sample in one_by_one] and joined == b"".join(one_by_one)
        first = unpack(joined[:lengths[0]])
        assert first[0] == ids[rows[0]][:MAX_ID_BYTES] and np.array_equal(first[2], X[rows[0]])
        assert first[3] == (batch_texts[rows[0]] if batch_texts else None)


def test_no_rows_packs_nothing():
    assert pack_many(["a"], 0.0, np.ones((1, 3), np.float32), []) == (b"", [])
