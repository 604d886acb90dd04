import numpy as np
import orjson
import pytest

from stream_dec.io.wire import FLOAT32, JSON, InputMessage, _exact_json, _Reject, decode_batch, encode_label
from stream_dec.stream.labeler import dead_letter, first_offsets, next_offsets


def message(value, content_type=None, offset=0, key=b"k", partition=0):
    return InputMessage("emb", partition, offset, key, value, content_type)


def vec(*values):
    return np.asarray(values, "<f4").tobytes()


def test_good_messages_decode_into_one_contiguous_array():
    batch = decode_batch([message(vec(1, 2, 3), FLOAT32, key=b"a"),
                          message(b'{"id": "b", "embedding": [4, 5, 6]}', JSON),
                          message(b'{"embedding": [7.5, 8, 9]}', None, key=b"c")],
                         dim=3, default_content_type=JSON, max_bytes=100)
    assert batch.X.flags.c_contiguous and batch.X.dtype == np.float32
    np.testing.assert_array_equal(batch.X, [[1, 2, 3], [4, 5, 6], [7.5, 8, 9]])
    assert batch.ids == ["a", "b", "c"] and batch.rows.tolist() == [0, 1, 2] and not batch.rejected


@pytest.mark.parametrize("value, content_type, reason", [
    (None, JSON, "empty"),
    (b"", FLOAT32, "empty"),
    (b"x" * 101, JSON, "oversize"),
    (b"abc", "text/plain", "unknown-content-type"),
    (b"{nope", JSON, "bad-json"),
    (b"[1, 2, 3]", JSON, "missing-field"),
    (b'{"id": "x"}', JSON, "missing-field"),
    (b'{"embedding": "1,2,3"}', JSON, "bad-embedding"),
    (b'{"embedding": [1, "2", 3]}', JSON, "bad-embedding"),
    (b'{"embedding": [1, true, 3]}', JSON, "bad-embedding"),
    (b'{"embedding": [1, null, 3]}', JSON, "bad-embedding"),
    (b'{"embedding": [1, [2], 3]}', JSON, "bad-embedding"),
    (b'{"embedding": [1, 2]}', JSON, "wrong-dimension"),
    (vec(1, 2), FLOAT32, "wrong-byte-length"),
    (vec(1, np.nan, 3), FLOAT32, "non-finite"),
    (b'{"embedding": [1, 1e39, 3]}', JSON, "non-finite"),
])
def test_each_bad_message_is_rejected_with_its_reason_beside_good_ones(value, content_type, reason):
    batch = decode_batch([message(vec(1, 2, 3), FLOAT32, offset=0), message(value, content_type, offset=1),
                          message(vec(4, 5, 6), FLOAT32, offset=2)], dim=3, default_content_type=JSON, max_bytes=100)
    assert [(r.offset, r.reason) for r in batch.rejected] == [(1, reason)]
    np.testing.assert_array_equal(batch.X, [[1, 2, 3], [4, 5, 6]])
    assert batch.rows.tolist() == [0, 2]


def json_variants(rng: np.random.Generator) -> list[bytes]:
    """Well-formed and damaged JSON documents of the shapes producers send (dim 4)."""
    good = orjson.dumps({"id": "a", "embedding": rng.standard_normal(4).tolist(), "ts": 1.5})
    variants = [good, b'{"embedding": [1, 2, 3, 4]}', b'{"id": 7, "embedding": [1, 2.5, -3, 4e2]}',
                b'{"id": {"x": 1}, "embedding": [1, 2, 3, 4]}', b'{"id": "a", "id": "b", "embedding": [1, 2, 3, 4]}',
                b'{"embedding": [1, 2, 3, 4], "embedding": [5, 6, 7, 8]}', b'{"embedding": [1, 2, 3, 4], "tags": [1]}',
                b'{"embedding": [1, 2, 3, [4]]}', b'{"embedding": [[1, 2, 3, 4]]}', b'{"embedding": [1, 2, 3, 2e400]}',
                b'{"embedding": [1, 2, 3, 1e39]}', b'{"embedding": [1, 2, 3, 18446744073709551616]}',
                b'{"embedding": []}', b'{"embedding": {"a": 1}}', b'[1, 2, 3, 4]', b'"embedding"', b'\xff\xfe[']
    for token in (b"true", b"null", b'"2"', b"NaN", b"{}", b"1,"):
        variants.append(b'{"embedding": [1, ' + token + b', 3, 4]}')
    for cut in rng.integers(1, len(good), 20):  # truncated anywhere
        variants.append(good[:cut])
    return variants


def exact_outcome(value: bytes):
    out = np.zeros(4, dtype=np.float32)
    try:
        with np.errstate(over="ignore"):
            identifier = _exact_json(out, value, b"k", 4)
    except _Reject as exc:
        return exc.reason
    return (identifier, out.tolist()) if np.isfinite(out).all() else "non-finite"


def test_json_fast_path_accepts_and_rejects_exactly_like_the_exact_decoder():
    """decode_batch reads the usual document with simdjson; every outcome must equal orjson's."""
    variants = json_variants(np.random.default_rng(0))
    batch = decode_batch([message(v, JSON, offset=i) for i, v in enumerate(variants)], dim=4,
                         default_content_type=JSON, max_bytes=10_000)
    outcome = {r.offset: r.reason for r in batch.rejected}
    outcome.update({int(row): (i, x) for row, i, x in zip(batch.rows, batch.ids, batch.X.tolist())})
    assert [outcome[i] for i in range(len(variants))] == [exact_outcome(v) for v in variants]
    assert len(batch.rows) >= 5  # the good ones really went through


def test_label_record_format():
    label = orjson.loads(encode_label("x", 4, 0.25, 9, "emb", 2, 77))
    assert label == {"id": "x", "cluster": 4, "confidence": 0.25, "version": 9,
                     "source": {"topic": "emb", "partition": 2, "offset": 77}}


def test_dead_letter_keeps_original_bytes_and_names_the_error():
    rejected = decode_batch([message(b"x" * 50, "text/plain", offset=5, key=b"key")], dim=3,
                            default_content_type=JSON, max_bytes=100).rejected[0]
    record = dead_letter(rejected, "dlq", max_bytes=20)
    headers = dict(record.headers)
    assert record.topic == "dlq" and record.key == b"key" and record.value == b"x" * 20
    assert headers["error"] == b"unknown-content-type" and headers["source-offset"] == b"5"
    assert headers["truncated-from-bytes"] == b"50" and headers["content-type"] == b"text/plain"


def test_offsets_per_partition():
    batch = [message(b"", offset=o, partition=p) for p, o in [(0, 5), (1, 9), (0, 7), (1, 8), (0, 6)]]
    assert {(tp.partition, tp.offset) for tp in next_offsets(batch)} == {(0, 8), (1, 10)}
    assert {(tp.partition, tp.offset) for tp in first_offsets(batch)} == {(0, 5), (1, 8)}
