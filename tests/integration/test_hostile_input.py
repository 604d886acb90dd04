"""Fuzz the labeler with 10,000 hostile payloads mixed with good ones: nothing crashes, nothing is lost."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from tests.conftest import wordnet_slice
from tests.integration.conftest import float32_record, json_record, produce, read_all
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


def test_fuzzed_payloads_are_dead_lettered_and_good_ones_labelled(service, reliability, reliability_run):
    config, _ = service
    rng = np.random.default_rng(2026 + reliability_run)
    good, _ = wordnet_slice(classes=6, per_class=100, seed=17)
    records, good_keys = [], set()
    for i in range(10_000):
        records.append(hostile(rng, good, i))
        if i % 5 == 0:  # 2,000 good messages in between, both formats
            record = (float32_record if i % 2 else json_record)(f"good-{i}", good[i % len(good)])
            records.append(record)
            good_keys.add(record[0])
    inputs = produce(config.kafka["bootstrap.servers"], config.topics.embeddings, records)
    running = Running(config)
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
            "unknown-content-type"} <= reasons
