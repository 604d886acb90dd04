import numpy as np
import orjson
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaError, Message

from stream_dec.io.wire import FLOAT32, JSON, InputLimits, InputMessage, _exact_json, _Reject, decode_batch, encode_label
from stream_dec.stream.labeler import (dead_letter, first_offsets, header_fields, input_age, input_messages,
                                       next_offsets)


def message(value, content_type=None, offset=0, key=b"k", partition=0, header_bytes=0):
    return InputMessage("emb", partition, offset, key, value, content_type, header_bytes)


def vec(*values):
    return np.asarray(values, "<f4").tobytes()


def test_good_messages_decode_into_one_contiguous_array():
    batch = decode_batch([message(vec(1, 2, 3), FLOAT32, key=b"a"),
                          message(b'{"id": "b", "embedding": [4, 5, 6]}', JSON),
                          message(b'{"embedding": [7.5, 8, 9]}', None, key=b"c")],
                         dim=3, default_content_type=JSON, limits=InputLimits(value_bytes=100))
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
    (b'{"embedding": [1, 2, 3], "text": 5}', JSON, "bad-text"),
    (b'{"embedding": [1, 2, 3], "text": ["a"]}', JSON, "bad-text"),
    (vec(1, 2), FLOAT32, "wrong-byte-length"),
    (vec(1, np.nan, 3), FLOAT32, "non-finite"),
    (b'{"embedding": [1, 1e39, 3]}', JSON, "non-finite"),
])
def test_each_bad_message_is_rejected_with_its_reason_beside_good_ones(value, content_type, reason):
    batch = decode_batch([message(vec(1, 2, 3), FLOAT32, offset=0), message(value, content_type, offset=1),
                          message(vec(4, 5, 6), FLOAT32, offset=2)], dim=3, default_content_type=JSON,
                         limits=InputLimits(value_bytes=100))
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
                b'{"embedding": []}', b'{"embedding": {"a": 1}}', b'[1, 2, 3, 4]', b'"embedding"', b'\xff\xfe[',
                b'{"id": "t", "embedding": [1, 2, 3, 4], "text": "a small fish"}',
                b'{"embedding": [1, 2, 3, 4], "text": "a [bracketed] note"}', b'{"embedding": [1, 2, 3, 4], "text": null}',
                b'{"embedding": [1, 2, 3, 4], "text": 5}', b'{"embedding": [1, 2, 3, 4], "text": {"a": 1}}']
    for token in (b"true", b"null", b'"2"', b"NaN", b"{}", b"1,"):
        variants.append(b'{"embedding": [1, ' + token + b', 3, 4]}')
    for cut in rng.integers(1, len(good), 20):  # truncated anywhere
        variants.append(good[:cut])
    return variants


def exact_outcome(value: bytes):
    out = np.zeros(4, dtype=np.float32)
    try:
        with np.errstate(over="ignore"):
            identifier, text = _exact_json(out, value, b"k", 4)
    except _Reject as exc:
        return exc.reason
    return (identifier, text, out.tolist()) if np.isfinite(out).all() else "non-finite"


def test_json_fast_path_accepts_and_rejects_exactly_like_the_exact_decoder():
    """decode_batch reads the usual document with simdjson; every outcome must equal orjson's."""
    variants = json_variants(np.random.default_rng(0))
    batch = decode_batch([message(v, JSON, offset=i) for i, v in enumerate(variants)], dim=4,
                         default_content_type=JSON, limits=InputLimits(value_bytes=10_000))
    outcome = {r.offset: r.reason for r in batch.rejected}
    outcome.update({int(row): (i, t, x) for row, i, t, x in zip(batch.rows, batch.ids, batch.texts, batch.X.tolist())})
    assert [outcome[i] for i in range(len(variants))] == [exact_outcome(v) for v in variants]
    assert len(batch.rows) >= 5  # the good ones really went through
    assert "a small fish" in batch.texts and "bad-text" in outcome.values()


def test_a_batch_without_texts_has_none():
    batch = decode_batch([message(b'{"embedding": [1, 2, 3]}', JSON), message(vec(1, 2, 3), FLOAT32, offset=1)],
                         dim=3, default_content_type=JSON, limits=InputLimits())
    assert batch.texts is None and len(batch.ids) == 2


def test_label_record_format():
    label = orjson.loads(encode_label("x", 4, 0.25, 9, "emb", 2, 77))
    assert label == {"id": "x", "cluster": 4, "confidence": 0.25, "version": 9,
                     "source": {"topic": "emb", "partition": 2, "offset": 77}}


def test_dead_letter_keeps_original_bytes_and_names_the_error():
    rejected = decode_batch([message(b"x" * 50, "text/plain", offset=5, key=b"key")], dim=3,
                            default_content_type=JSON, limits=InputLimits(value_bytes=100)).rejected[0]
    record = dead_letter(rejected, "dlq", max_bytes=20)
    headers = dict(record.headers)
    assert record.topic == "dlq" and record.key == b"key" and record.value == b"x" * 20
    assert headers["error"] == b"unknown-content-type" and headers["source-offset"] == b"5"
    assert headers["truncated-from-bytes"] == b"50" and headers["content-type"] == b"text/plain"


def test_offsets_per_partition():
    batch = [message(b"", offset=o, partition=p) for p, o in [(0, 5), (1, 9), (0, 7), (1, 8), (0, 6)]]
    assert {(tp.partition, tp.offset) for tp in next_offsets(batch)} == {(0, 8), (1, 10)}
    assert {(tp.partition, tp.offset) for tp in first_offsets(batch)} == {(0, 5), (1, 8)}
    other = [InputMessage("other", p, o, b"k", b"", None) for p, o in [(1, 3), (1, 2), (7, 2**40)]]
    assert {(tp.topic, tp.partition, tp.offset) for tp in next_offsets(batch + other)} == {
        ("emb", 0, 8), ("emb", 1, 10), ("other", 1, 4), ("other", 7, 2**40 + 1)}


LIMITS = InputLimits(value_bytes=100, key_bytes=8, header_bytes=50, id_bytes=6)


@pytest.mark.parametrize("value, key, header_bytes, reason", [
    (vec(1, 2, 3), b"k" * 9, 0, "oversize-key"),
    (vec(1, 2, 3), b"k", 51, "oversize-headers"),
    (vec(1, 2, 3), "é".encode() * 4, 0, "bad-id"),  # 8 bytes of key: within the key limit, not the id's
    (b'{"id": "abcdefg", "embedding": [1, 2, 3]}', b"k", 0, "bad-id"),
    (rb'{"id": "\u00e9\u00e9\u00e9\u00e9", "embedding": [1, 2, 3]}', b"k", 0, "bad-id"),
    (b'{"id": 18446744073709551616, "embedding": [1, 2, 3]}', b"k", 0, "bad-id"),
    (b'{"id": 1.5, "embedding": [1, 2, 3]}', b"k", 0, "bad-id"),
    (b'{"id": true, "embedding": [1, 2, 3]}', b"k", 0, "bad-id"),
    (b'{"id": [1], "embedding": [1, 2, 3]}', b"k", 0, "bad-id"),
    (b'{"id": {"a": 1}, "embedding": [1, 2, 3]}', b"k", 0, "bad-id"),
])
def test_each_limit_on_what_a_producer_controls_has_its_reason(value, key, header_bytes, reason):
    content_type = FLOAT32 if value == vec(1, 2, 3) else JSON
    batch = decode_batch([message(value, content_type, key=key, header_bytes=header_bytes)], dim=3,
                         default_content_type=JSON, limits=LIMITS)
    assert [r.reason for r in batch.rejected] == [reason] and not batch.ids


@pytest.mark.parametrize("value, key, expected", [
    (b'{"id": "abcdef", "embedding": [1, 2, 3]}', b"k", "abcdef"),  # exactly at the id limit
    (rb'{"id": "\u00e9\u00e9\u00e9", "embedding": [1, 2, 3]}', b"k", "\u00e9\u00e9\u00e9"),  # 6 bytes
    (b'{"id": 184467, "embedding": [1, 2, 3]}', b"k", "184467"),
    (b'{"id": "", "embedding": [1, 2, 3]}', b"k", ""),
    (b'{"id": null, "embedding": [1, 2, 3]}', b"\xff\xfe", "\ufffd\ufffd"),  # the key, bad bytes replaced
    (b'{"id": -42, "embedding": [1, 2, 3]}', b"k", "-42"),
    (b'{"embedding": [1, 2, 3]}', None, ""),
])
def test_ids_within_the_limits_are_kept_as_text(value, key, expected):
    batch = decode_batch([message(value, JSON, key=key)], dim=3, default_content_type=JSON, limits=LIMITS)
    assert not batch.rejected and batch.ids == [expected]


def test_a_64_bit_integer_id_keeps_every_digit():
    value = b'{"id": 18446744073709551615, "embedding": [1, 2, 3]}'
    batch = decode_batch([message(value, JSON)], dim=3, default_content_type=JSON, limits=InputLimits())
    assert batch.ids == ["18446744073709551615"]


def test_every_accepted_id_fits_the_limit_in_utf8():
    rng = np.random.default_rng(3)
    alphabet = ["a", "é", "€", "𝄞", "\x00", '"', "\\"]
    messages = []
    for i in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 5))))
        messages.append(message(orjson.dumps({"id": text, "embedding": [1, 2, 3]}), JSON, offset=i))
        messages.append(message(vec(1, 2, 3), FLOAT32, offset=i, key=text.encode()))
    batch = decode_batch(messages, dim=3, default_content_type=JSON, limits=LIMITS)
    assert len(batch.ids) + len(batch.rejected) == len(messages)
    assert all(len(i.encode("utf-8")) <= LIMITS.id_bytes for i in batch.ids)
    assert {r.reason for r in batch.rejected} <= {"bad-id", "oversize-key"}
    assert len(batch.ids) > 100


def test_dead_letter_cuts_a_long_key_and_quotes_little_of_the_input():
    huge_type = "x" * 100_000
    rejected = decode_batch([message(b"abc", huge_type, key=b"k" * 600_000)], dim=3, default_content_type=JSON,
                            limits=InputLimits(key_bytes=10**7)).rejected[0]
    record = dead_letter(rejected, "dlq", max_bytes=2, max_key_bytes=16)
    headers = dict(record.headers)
    assert record.key == b"k" * 16 and headers["key-truncated-from-bytes"] == b"600000"
    assert record.value == b"ab" and headers["truncated-from-bytes"] == b"3"
    assert len(headers["content-type"]) <= 1024 and len(headers["error-detail"]) <= 1024
    assert sum(len(v) for v in headers.values()) < 2200


def test_bulk_label_encoding_equals_the_one_label_encoder_byte_for_byte():
    """encode_labels (the labeler's template path) against encode_label (a dict through orjson) on
    hostile ids and every kind of float32 confidence."""
    from stream_dec.io.wire import encode_labels

    rng = np.random.default_rng(0)
    ids = ["plain", "", 'quote " and \\ backslash', "ünïcödé ✓", "\x00\x1f control", "x" * 5000, "123", "null"]
    confidence = np.concatenate([rng.random(4), [0.0, 1.0, 1e-30, np.float32(0.1)]]).astype(np.float32).tolist()
    clusters = rng.integers(0, 1000, len(ids)).tolist()
    topics = ["emb", "emb-ünï", "emb", "t\"q", "emb", "emb", "emb", "emb"]
    partitions, offsets = rng.integers(0, 64, len(ids)).tolist(), rng.integers(0, 2**62, len(ids)).tolist()
    bulk = encode_labels(ids, clusters, confidence, 7, topics, partitions, offsets)
    assert bulk == [encode_label(*row) for row in zip(ids, clusters, confidence, [7] * len(ids), topics, partitions,
                                                      offsets)]
    assert orjson.loads(bulk[2])["id"] == 'quote " and \\ backslash'


@pytest.mark.parametrize("odd", [None, "nan", "short", "long-key", "bad-utf8-key", "huge-id", "no-key", "json",
                                 "unknown-type", "big-headers"])
def test_the_float32_batch_path_decides_as_the_message_by_message_path(odd, monkeypatch):
    """A batch of good float32 messages with at most one that is not: both paths give the same rows,
    ids, vectors and rejections."""
    from stream_dec.io import wire

    rng = np.random.default_rng(0)
    dim, limits = 8, InputLimits(key_bytes=16, id_bytes=32, header_bytes=100)
    messages = []
    for i in range(40):
        vector = rng.normal(size=dim).astype("<f4")
        fields = {"key": f"k{i}".encode(), "value": vector.tobytes(), "content_type": None if i % 2 else FLOAT32,
                  "header_bytes": 20}
        if i == 7:
            fields |= {"nan": {"value": np.full(dim, np.nan, "<f4").tobytes()}, "short": {"value": vector.tobytes()[:-4]},
                       "long-key": {"key": b"k" * 17}, "bad-utf8-key": {"key": b"\xff\xfe"},
                       "huge-id": {"key": b"\xff" * 12},  # 12 bytes, read as 12 U+FFFD: 36
                       "no-key": {"key": None},  # the id is then ""
                       "json": {"value": orjson.dumps({"id": "j", "embedding": vector.tolist()}), "content_type": JSON},
                       "unknown-type": {"content_type": "text/plain"}, "big-headers": {"header_bytes": 101},
                       None: {}}[odd]
        messages.append(InputMessage("emb", i % 3, i, fields["key"], fields["value"], fields["content_type"],
                                     fields["header_bytes"]))
    fast = decode_batch(messages, dim=dim, default_content_type=FLOAT32, limits=limits)
    monkeypatch.setattr(wire, "_float32_batch", lambda *args: None)
    slow = decode_batch(messages, dim=dim, default_content_type=FLOAT32, limits=limits)
    assert fast.rows.tolist() == slow.rows.tolist() and fast.ids == slow.ids
    assert np.array_equal(fast.X, slow.X) and fast.X.flags.writeable
    assert [(r.offset, r.reason) for r in fast.rejected] == [(r.offset, r.reason) for r in slow.rejected]
    assert len(slow.rejected) == (0 if odd in (None, "bad-utf8-key", "no-key", "json") else 1)


def test_the_float32_batch_path_keeps_the_value_limit(monkeypatch):
    """A vector wider than max_message_bytes is 'oversize' on both paths, not labelled by the batch path."""
    from stream_dec.io import wire

    messages = [InputMessage("emb", 0, i, f"k{i}".encode(), np.ones(8, "<f4").tobytes(), FLOAT32) for i in range(3)]
    limits = InputLimits(value_bytes=16)  # 8 float32 are 32 bytes
    fast = decode_batch(messages, dim=8, default_content_type=FLOAT32, limits=limits)
    monkeypatch.setattr(wire, "_float32_batch", lambda *args: None)
    slow = decode_batch(messages, dim=8, default_content_type=FLOAT32, limits=limits)
    assert [r.reason for r in slow.rejected] == ["oversize"] * 3
    assert [r.reason for r in fast.rejected] == [r.reason for r in slow.rejected] and len(fast.X) == 0


def test_headers_parsed_once_per_run_still_give_each_message_its_own():
    json_headers = [("content-type", JSON.encode())]
    runs = [json_headers, json_headers, [("Content-Type", FLOAT32.encode()), ("trace", b"abc")], None,
            [("content-type", JSON.encode())], json_headers, []]
    consumed = [Message(topic="emb", partition=0, offset=i, key=b"k%d" % i, value=b"v", headers=headers)
                for i, headers in enumerate(runs)]
    consumed.insert(3, Message(topic="emb", partition=0, offset=-1, error=KafkaError(KafkaError._MSG_TIMED_OUT)))
    inputs = input_messages(consumed)
    assert [m.offset for m in inputs] == list(range(len(runs)))  # the consumer error is left out
    assert [(m.content_type, m.header_bytes) for m in inputs] == [header_fields(headers) for headers in runs]
    assert [m.content_type for m in inputs] == [JSON, JSON, FLOAT32, None, JSON, JSON, None]
    assert inputs[2].header_bytes == len("Content-Type") + len(FLOAT32) + len("trace") + 3


def test_input_age_is_measured_from_the_last_good_message_timestamp():
    def at(kind, milliseconds):
        return Message(topic="emb", partition=0, offset=0, value=b"v", timestamp=(kind, milliseconds))

    failed = Message(topic="emb", partition=0, offset=-1, error=KafkaError(KafkaError._MSG_TIMED_OUT))
    batch = [at(TIMESTAMP_CREATE_TIME, 1_000), at(TIMESTAMP_LOG_APPEND_TIME, 9_500), failed]
    assert input_age(batch, now=10.0) == pytest.approx(0.5)  # the last message with no error, in seconds
    assert input_age([at(TIMESTAMP_CREATE_TIME, 12_000)], now=10.0) == 0.0  # a producer's clock ahead: not negative
    assert input_age([Message(topic="emb", value=b"v")], now=10.0) is None  # no timestamp
    assert input_age([failed], now=10.0) is None
