"""The reservoir's sample format: a batch packed at once equals its samples packed one by one;
bfloat16 samples beside float32 ones."""

import numpy as np
import pytest

from stream_dec.io.datasets import load_dataset
from stream_dec.stream.reservoir import (MAX_ID_BYTES, BadSample, from_bfloat16, pack, pack_many, to_bfloat16,
                                         unpack)
from stream_dec_lab.demo import DEMO_DATA


def test_a_batch_packed_at_once_is_its_samples_packed_one_by_one():
    data = load_dataset(DEMO_DATA)  # real embeddings and their WordNet definitions
    X = data.X[:300]
    ids = [f"é-{i}" if i % 3 else "x" * (MAX_ID_BYTES + 10) for i in range(300)]  # multi-byte ids and cut ones
    texts = [data.texts[i] if i % 4 else None for i in range(300)]
    rows = list(range(0, 300, 7))[::-1]
    for batch_texts, precision in ((texts, "float32"), (None, "float32"), (texts, "bfloat16")):
        chosen = [batch_texts[i] for i in rows] if batch_texts else None
        samples = pack_many([ids[i] for i in rows], 2.5, X[rows], chosen, precision)
        assert samples == [pack(ids[i], 2.5, X[i], batch_texts[i] if batch_texts else None, precision) for i in rows]
        first, x = unpack(samples[0]), X[rows[0]]
        assert first[0] == ids[rows[0]][:MAX_ID_BYTES]
        assert np.array_equal(first[2], x if precision == "float32" else from_bfloat16(to_bfloat16(x)))
        assert first[3] == (batch_texts[rows[0]] if batch_texts else None)


def test_no_rows_packs_nothing():
    assert pack_many([], 0.0, np.ones((0, 3), np.float32)) == []


def test_bfloat16_samples_are_half_the_bytes_within_2_to_the_minus_8_and_read_beside_float32():
    data = load_dataset(DEMO_DATA)
    X = data.X[:200]
    ids = [f"w{i}" for i in range(200)]
    half = pack_many(ids, 1.0, X, precision="bfloat16")
    wide = pack_many(ids, 1.0, X)
    assert [len(w) - len(h) for w, h in zip(wide, half)] == [2 * X.shape[1] - 1] * 200
    back = np.stack([unpack(sample)[2] for sample in half])
    assert np.all(np.abs(back - X) <= 2.0 ** -8 * np.abs(X)) and not np.array_equal(back, X)
    bits = X.view(np.uint32)  # round to nearest, ties to even, on float32's upper 16 bits
    assert np.array_equal(to_bfloat16(X), ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16))
    assert all(np.array_equal(unpack(sample)[2], x) for sample, x in zip(wide, X))  # float32: exact, as before


def test_a_row_past_bfloat16s_range_stays_float32_and_a_bad_marker_is_refused():
    X = np.array([[1.0, 3.4e38], [1.0, 2.0]], np.float32)  # 3.4e38 would round to infinity
    big, small = pack_many(["a", "b"], 0.0, X, precision="bfloat16")
    assert np.array_equal(unpack(big)[2], X[0]) and np.array_equal(unpack(small)[2], X[1])
    assert len(big) == len(small) + 3
    with pytest.raises(BadSample):
        unpack(small[:-1] + b"\x07")  # odd length, not the bfloat16 marker
    with pytest.raises(ValueError):
        pack_many(["a"], 0.0, X[:1], precision="float16")
