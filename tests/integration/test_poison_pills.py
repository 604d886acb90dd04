"""Records that used to stop the service for good: huge keys, labels too large for the broker,
long multi-byte ids, permanent produce errors, unreadable reservoir samples.

Real broker (Tansu, one with a schema registry for the permanent error) and real Redis.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_dec.config import config_from_mapping
from stream_dec.local import tansu_binary
from stream_dec.stream.kafka import consumer_settings, ensure_topics
from stream_dec.stream.reservoir import Reservoir, connect, pack
from tests.conftest import wordnet_slice
from tests.integration.conftest import (
    float32_record,
    free_port,
    json_record,
    make_updater,
    produce,
    read_all,
    to_toml,
    wait_for_port,
)
from tests.integration.reliability import Row, account, dead_offset, source_offset
from tests.integration.test_labeler import Running

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def replaced(config, section: str, **values):
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **values)})


def drain(config, expected: int, timeout: float = 60.0):
    """Labels and dead letters until ``expected`` inputs are accounted for (or the timeout)."""
    bootstrap, deadline = config.kafka["bootstrap.servers"], time.monotonic() + timeout
    while True:
        labels = read_all(bootstrap, config.topics.labels, expected, timeout=1)
        dead = read_all(bootstrap, config.topics.dead_letters, expected, timeout=1)
        if len(labels) + len(dead) >= expected or time.monotonic() > deadline:
            return labels, dead


def test_oversized_key_is_dead_lettered_and_the_stream_goes_on(service, reliability):
    """A 600 KB key fits the broker's limit as an input but not in a label (key + id): it is
    dead-lettered as oversize-key with its key cut, and every input around it is labelled."""
    config, _ = service
    X, _ = wordnet_slice(classes=6, per_class=10, seed=30)
    records = [float32_record(f"a{i}", x) for i, x in enumerate(X[:30])]
    huge = float32_record("k" * 600_000, X[0])
    records += [huge, json_record("j" * 5000, X[1])] + [float32_record(f"b{i}", x) for i, x in enumerate(X[30:])]
    inputs = produce(config.kafka["bootstrap.servers"], config.topics.embeddings, records)
    running = Running(config)
    labels, dead = drain(config, len(records))
    alive = running.thread.is_alive()
    running.stop()
    reliability(account("oversized key (600 KB) among good inputs", inputs, labels, dead, crashes=not alive))
    assert alive and len(labels) == len(X) and len(dead) == 2
    by_reason = {dict(m.headers())["error"]: m for m in dead}
    assert set(by_reason) == {b"oversize-key"}
    message = next(m for m in dead if dict(m.headers())["key-truncated-from-bytes"] == b"600000")
    assert message.key() == b"k" * config.labeler.max_key_bytes
    assert {source_offset(m) for m in labels} | {dead_offset(m) for m in dead} == inputs


def test_a_label_too_large_for_the_producer_becomes_a_dead_letter(service, reliability):
    """With the key limit raised past what the producer may send, a label (key + id) is
    refused as too large: it becomes a label-too-large dead letter naming its input, and a
    dead letter too large is cut until it fits; nothing crashes, nothing is lost."""
    config, _ = service
    config = replaced(config, "labeler", max_key_bytes=10**7, max_id_bytes=65535)
    config = dataclasses.replace(config, kafka={**config.kafka, "producer": {"message.max.bytes": 5000}})
    X, _ = wordnet_slice(classes=6, per_class=10, seed=31)
    records = [float32_record(f"a{i}", x) for i, x in enumerate(X)]
    records.insert(10, float32_record("k" * 3000, X[0]))  # label: 3000 of key + 3000 of id
    records.insert(20, (b"x" * 20_000, b'{"embedding": "' + b"y" * 40_000 + b'"}', None))  # a 40 KB dead letter
    inputs = produce(config.kafka["bootstrap.servers"], config.topics.embeddings, records)
    running = Running(config)
    labels, dead = drain(config, len(records))
    alive = running.thread.is_alive()
    running.stop()
    reliability(account("label too large for the producer (message.max.bytes 5000)", inputs, labels, dead,
                        crashes=not alive))
    assert alive and len(labels) == len(X) and len(dead) == 2
    reasons = {dict(m.headers())["error"]: m for m in dead}
    assert set(reasons) == {b"label-too-large", b"bad-embedding"}
    assert dead_offset(reasons[b"label-too-large"]) in inputs and reasons[b"label-too-large"].key() is None
    cut = reasons[b"bad-embedding"]
    assert len(cut.value()) + len(cut.key() or b"") <= 5000 and dict(cut.headers())["truncated-from-bytes"]
    assert {source_offset(m) for m in labels} | {dead_offset(m) for m in dead} == inputs


def test_a_long_multibyte_id_reaches_the_updater_and_reads_back(loop_service, reliability):
    """An id of 65,534 UTF-8 bytes (two per character) is labelled, sampled, and read back whole
    by the updater's cycle; one past the limit is dead-lettered as bad-id, never sampled."""
    config = replaced(loop_service, "labeler", max_id_bytes=65535)
    config = replaced(config, "reservoir", sample_rate=1.0)
    X, _ = wordnet_slice(classes=6, per_class=50, seed=32)
    long_id, too_long = "é" * 32767, "é" * 40000
    records = [json_record(f"s{i}", x) for i, x in enumerate(X)]
    records[5] = (b"a", orjson.dumps({"id": long_id, "embedding": X[5].tolist()}), None)
    records[6] = (b"b", orjson.dumps({"id": too_long, "embedding": X[6].tolist()}), None)
    inputs = produce(config.kafka["bootstrap.servers"], config.topics.embeddings, records)
    reservoir = Reservoir(connect(config.redis), config.model.name, config.reservoir.capacity)
    running = Running(config, reservoir=reservoir)
    labels, dead = drain(config, len(records))
    running.stop()
    updater = make_updater(config)
    assert updater.lead()
    published = updater.update()  # the cold start reads every sampled id back
    window = reservoir.window()
    reliability(Row("id of 65,534 UTF-8 bytes through labeler, reservoir and updater", inputs=len(inputs),
                    labels=len(labels), lost=len(inputs) - len(labels) - len(dead), dead_lettered=len(dead),
                    crashes=int(published is None)))
    assert [dict(m.headers())["error"] for m in dead] == [b"bad-id"]
    assert long_id in {orjson.loads(m.value())["id"] for m in labels}
    assert published is not None and published.header.version == 1
    assert long_id in window.ids and too_long not in window.ids and len(window.ids) == len(X) - 1


def test_unreadable_reservoir_samples_are_removed_and_the_updater_carries_on(loop_service, reliability):
    """Corrupt bytes and a vector of another width in staging: the cold start trains on the
    rest, removes both and counts them; no crash loop. A read removes a field that is not a
    slot number too."""
    config = loop_service
    client = connect(config.redis)
    reservoir = Reservoir(client, config.model.name, config.reservoir.capacity)
    X, _ = wordnet_slice(classes=5, per_class=50, seed=33)
    reservoir.offer([f"s{i}" for i in range(len(X))], X, time.time(), np.random.default_rng(0))
    client.hset(reservoir.keys["staging"], mapping={"0": b"\x01\x02", "1": pack("narrow", 0.0, np.ones(7))})
    updater = make_updater(config)
    assert updater.lead()
    published = updater.update()
    reliability(Row("unreadable reservoir samples (corrupt, other width)", dead_lettered=2,
                    crashes=int(published is None)))
    assert published is not None and published.header.version == 1
    assert updater.metrics.bad_samples._value.get() == 2
    assert len(reservoir.window().ids) == len(X) - 2
    client.hset(reservoir.keys["window"], mapping={"slot": pack("x", 0.0, X[0]), "3": b"\x00" * 11})
    window = reservoir.window(dim=X.shape[1])
    assert window.removed == 2 and len(window.ids) == len(X) - 3
    assert client.hlen(reservoir.keys["window"]) == len(X) - 3  # removed from Redis too


@pytest.fixture()
def schema_broker(tmp_path):
    """A second Tansu whose schema registry refuses every record on topics named ``refused-*``
    (a JSON schema no label satisfies): a permanent produce error, as an ACL denial would be."""
    folder = tmp_path / "registry"
    (folder / "schemas").mkdir(parents=True)
    topic = f"refused-{uuid.uuid4().hex[:8]}"
    schema = {"type": "object", "properties": {"value": {"type": "object", "required": ["never-present"]}}}
    (folder / "schemas" / f"{topic}.json").write_bytes(orjson.dumps(schema))
    port = free_port()
    process = subprocess.Popen([tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                                "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                                "--schema-registry", "file://./schemas"], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    yield f"127.0.0.1:{port}", topic
    process.terminate()
    process.wait(10)


def test_permanent_produce_error_exits_cleanly_and_a_fixed_labeler_resumes_without_loss(
        schema_broker, model_dir, tmp_path, reliability):
    bootstrap, refused = schema_broker
    suffix = uuid.uuid4().hex[:8]
    data = {
        "kafka": {"bootstrap.servers": bootstrap},
        "topics": {"embeddings": f"emb-{suffix}", "labels": refused, "dead_letters": f"dlq-{suffix}",
                   "versions": f"ver-{suffix}"},
        "labeler": {"group_id": f"g-{suffix}", "model_dir": str(model_dir), "device": "cpu", "max_wait_ms": 20},
        "reservoir": {"sample_rate": 0.0},
        "log": {"format": "text"},
    }
    config = config_from_mapping(data, source="test")
    ensure_topics(config)
    X, _ = wordnet_slice(classes=6, per_class=50, seed=34)
    inputs = produce(bootstrap, config.topics.embeddings, [float32_record(f"a{i}", x) for i, x in enumerate(X)])
    (tmp_path / "refused.toml").write_text(to_toml(data))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "stream_dec", "serve", "--config", str(tmp_path / "refused.toml")],
                            capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("stream-dec: error:")]
    consumer = Consumer(consumer_settings(config))
    committed = consumer.committed([TopicPartition(config.topics.embeddings, p) for p in range(3)], timeout=10)
    consumer.close()

    data["topics"]["labels"] = f"lab-{suffix}"  # the fix: a topic the labeler may write
    fixed = config_from_mapping(data, source="test")
    ensure_topics(fixed)
    running = Running(fixed)
    labels = read_all(bootstrap, fixed.topics.labels, len(X))
    running.stop()
    row = account("permanent produce error (labels topic refuses every record), then fixed", inputs, labels,
                  crashes=int(result.returncode != 2 or "Traceback" in result.stderr))
    reliability(row)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1 and f"cannot produce to topic '{refused}'" in errors[0], result.stderr[-3000:]
    assert time.monotonic() - started < 60  # no stall
    assert all(tp.offset < 0 for tp in committed)  # nothing committed past the last delivered batch: none
    assert row.lost == 0 and len({source_offset(m) for m in labels}) == len(X)
