"""Fuzz the labeler with 10,000 hostile payloads mixed with good ones: nothing crashes, nothing is lost.

Hostile in every part a producer controls: the value, the key, the headers and the id.
Afterwards the updater trains on what the labeler sampled into the reservoir.
"""

from __future__ import annotations

import json
import time

import numpy as np
import orjson
import pytest


from stream_dec.stream.reservoir import Reservoir, connect
from tests.conftest import wordnet_slice
from tests.integration.conftest import float32_record, json_record, make_updater, produce, read_all
from tests.integration.reliability import account, dead_offset, source_offset
from tests.integration.test_labeler import Running

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

CONTENT_TYPES = [b"application/json", b"application/x-float32", b"text/plain", b"", b"application/JSON", None]


def hostile(rng: np.random.Generator, good: np.ndarray, i: int):
    """One hostile (key, value, headers) record of a random kind."""
    kind = i % 10
    key = f"bad-{i}".encode()
    vector = good[rng.integers(len(good))]
    if kind == 0:  # binary garbage
        value = rng.bytes(int(rng.integers(0, 3000)))
    elif kind == 1:  # truncated JSON
        text = orjson.dumps({"id": "x", "embedding": vector.tolist()})
        value = text[: int(rng.integers(0, len(text) - 1))]
    elif kind == 2:  # one byte flipped in JSON
        text = bytearray(orjson.dumps({"id": "x", "embedding": vector.tolist()}))
        text[int(rng.integers(len(text)))] = int(rng.integers(256))
        value = bytes(text)
    elif kind == 3:  # wrong dimension
        value = orjson.dumps({"embedding": rng.normal(size=int(rng.integers(0, 2000))).tolist()})
    elif kind == 4:  # huge array
        value = orjson.dumps({"embedding": [0.5] * 200_000})
    elif kind == 5:  # NaN/Inf in a float32 vector
        v = vector.copy()
        v[int(rng.integers(len(v)))] = rng.choice([np.nan, np.inf, -np.inf])
        value = v.astype("<f4").tobytes()
    elif kind == 6:  # wrong byte length
        value = vector.astype("<f4").tobytes()[: int(rng.integers(1, 1535))]
    elif kind == 7:  # wrong types inside the document
        documents = [{"embedding": None}, {"embedding": {"a": 1}}, [1, 2], "text", 3,
                     {"embedding": ["1"] * len(vector)}]
        value = orjson.dumps(documents[int(rng.integers(len(documents)))])
    elif kind == 8:  # 10 MB value (a few of them)
        value = b"[" + b"1," * (5 * 1024 * 1024) if i % 1000 == 8 else b"{}"
    else:  # empty value
        value = None
    content_type = CONTENT_TYPES[int(rng.integers(len(CONTENT_TYPES)))]
    headers = None if content_type is None else [("content-type", content_type)]
    return key, value, headers


IDS = ["é" * 2048, "é" * 2049, "𝄞" * 1024, "", "\x00", "a" * 4097, 18446744073709551616, 2**63, -1, 1.5, True,
       [1], {"id": 1}, None]


def hostile_envelope(rng: np.random.Generator, good: np.ndarray, i: int):
    """A record with a good embedding but a hostile key, id or headers (some still labelled)."""
    vector = good[rng.integers(len(good))]
    kind = i % 6
    if kind == 0:  # keys: huge, multi-byte, not UTF-8, empty, none
        key = [b"k" * 600_000 if i % 900 == 0 else b"k" * 5000, "é€𝄞".encode() * 300, b"\xff\xfe\x80",
               b"", None][int(rng.integers(5))]
        return key, vector.astype("<f4").tobytes(), [("content-type", b"application/x-float32")]
    if kind == 1:  # ids in the JSON document
        identifier = IDS[int(rng.integers(len(IDS)))]
        text = json.dumps(identifier, ensure_ascii=bool(i % 2)).encode()  # big ints whole; \u-escaped or raw UTF-8
        value = b'{"id": ' + text + b', "embedding": ' + orjson.dumps(vector.tolist()) + b"}"
        return f"id-{i}".encode(), value, [("content-type", b"application/json")]
    value = orjson.dumps({"id": f"h{i}", "embedding": vector.tolist()})
    if kind == 2:  # one huge header
        return f"h{i}".encode(), value, [("content-type", b"application/json"), ("trace", b"t" * 20_000)]
    if kind == 3:  # content-type twice, disagreeing (the last one counts)
        return f"h{i}".encode(), value, [("content-type", b"application/x-float32"), ("content-type", b"application/json")]
    if kind == 4:  # a content-type that is not UTF-8, and headers without values
        return f"h{i}".encode(), value, [("content-type", b"\xff\xfejson"), ("empty", None)]
    return f"h{i}".encode(), value, [(f"x{j}", b"v" * 10) for j in range(2000)]  # many headers


def test_fuzzed_payloads_are_dead_lettered_and_good_ones_labelled(loop_service, reliability, reliability_run):
    config = loop_service
    rng = np.random.default_rng(2026 + reliability_run)
    good, _ = wordnet_slice(classes=6, per_class=100, seed=17)
    records, good_keys = [], set()
    for i in range(10_000):
        records.append((hostile if i % 2 else hostile_envelope)(rng, good, i // 2))  # every kind of each
        if i % 5 == 0:  # 2,000 good messages in between, both formats
            record = (float32_record if i % 2 else json_record)(f"good-{i}", good[i % len(good)])
            records.append(record)
            good_keys.add(record[0])
    inputs = produce(config.kafka["bootstrap.servers"], config.topics.embeddings, records)
    reservoir = Reservoir(connect(config.redis), config.model.name, config.reservoir.capacity)
    running = Running(config, reservoir=reservoir)
    bootstrap = config.kafka["bootstrap.servers"]
    deadline = time.monotonic() + 180
    while True:  # until every input is accounted for (or the deadline)
        labels = read_all(bootstrap, config.topics.labels, len(records), timeout=2)
        dead = read_all(bootstrap, config.topics.dead_letters, len(records), timeout=2)
        if len(labels) + len(dead) >= len(records) or time.monotonic() > deadline:
            break
    reliability(account("hostile input: 10,000 fuzzed payloads + 2,000 good", inputs, labels, dead,
                        crashes=not running.thread.is_alive()))
    assert running.thread.is_alive()  # no crash
    running.stop()
    labelled = {source_offset(m) for m in labels}
    dead_offsets = {dead_offset(m) for m in dead}
    assert labelled | dead_offsets == inputs  # every input is accounted for ...
    assert not labelled & dead_offsets  # ... exactly once
    assert {m.key() for m in labels} >= good_keys  # every good one is labelled
    assert all(dict(m.headers())["error"] for m in dead)
    reasons = {dict(m.headers())["error"].decode() for m in dead}
    assert {"bad-json", "wrong-dimension", "non-finite", "wrong-byte-length", "empty", "oversize",
            "unknown-content-type", "oversize-key", "oversize-headers", "bad-id"} <= reasons
    labelled_ids = {orjson.loads(m.value())["id"] for m in labels}
    assert {"é" * 2048, "𝄞" * 1024, "", "9223372036854775808", "-1"} <= labelled_ids  # within the limits
    assert not {"é" * 2049, "a" * 4097, "1.5", "True"} & labelled_ids
    updater = make_updater(config)  # the updater trains on what was sampled, whatever its ids
    assert updater.lead()
    assert updater.update() is not None and updater.failures == 0
    window = reservoir.window()
    assert len(window.ids) == config.reservoir.capacity and window.removed == 0
