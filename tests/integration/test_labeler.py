"""The labeler against a real Kafka-compatible broker (Tansu): nothing mocked."""

from __future__ import annotations

import dataclasses
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from stream_dec.model import ModelVersion
from stream_dec.model.predictor import Predictor
from stream_dec.stream.kafka import consumer_settings, producer_settings
from stream_dec.stream.labeler import GIL_SWITCH_S, build_labeler
from tests.conftest import wordnet_slice
from tests.integration.conftest import float32_record, json_record, produce, read_all, wait_for_line, wait_for_records
from tests.integration.reliability import account, source_offset

pytestmark = pytest.mark.integration


class Running:
    """A Labeler in a background thread (the same object `stream-dec serve` runs)."""

    def __init__(self, config, transactional_id=None, reservoir=None, predictor=None):
        predictor = predictor or Predictor(ModelVersion.load(config.labeler.model_dir), "cpu")
        self.labeler = build_labeler(config, predictor, Consumer(consumer_settings(config)),
                                     Producer(producer_settings(config, transactional_id)), reservoir=reservoir)
        self.thread = threading.Thread(target=self.labeler.run, daemon=True)
        self.thread.start()

    def stop(self):
        self.labeler.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def recording_predictor(config) -> tuple[Predictor, list[tuple[str, float]]]:
    """The model of ``config``, noting for each model step its thread's name and the switch interval."""
    predictor = Predictor(ModelVersion.load(config.labeler.model_dir), "cpu")
    predict, calls = predictor.predict, []
    predictor.predict = lambda rows: calls.append((threading.current_thread().name, sys.getswitchinterval())) \
        or predict(rows)
    return predictor, calls


def committed(config, partitions=3):
    consumer = Consumer(consumer_settings(config))
    offsets = consumer.committed([TopicPartition(config.topics.embeddings, p) for p in range(partitions)], timeout=10)
    consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in offsets}  # none yet (OFFSET_INVALID): from the start


@pytest.mark.parametrize("model_thread", [True, False])
def test_round_trip_labels_equal_predict(service, model_thread):
    config, _ = service
    config = dataclasses.replace(config, labeler=dataclasses.replace(config.labeler, model_thread=model_thread,
                                                                     max_batch=64))
    X, _ = wordnet_slice(classes=6, per_class=50, seed=11)
    records = [(float32_record if i % 2 else json_record)(f"id-{i}", x) for i, x in enumerate(X)]
    produce(config.kafka["bootstrap.servers"], config.topics.embeddings, records)
    predictor, calls = recording_predictor(config)
    switch_interval = sys.getswitchinterval()
    running = Running(config, predictor=predictor)
    labels = read_all(config.kafka["bootstrap.servers"], config.topics.labels, len(X))
    running.stop()
    assert len(labels) == len(X)
    assert len(calls) >= len(X) / 64
    if model_thread:  # off the labeler's thread, with the short switch interval, restored on stop
        assert {name for name, _ in calls} == {"model_0"}
        assert all(s == pytest.approx(GIL_SWITCH_S) for _, s in calls)  # kept in microseconds
    else:
        assert {name for name, _ in calls} == {running.thread.name} and {s for _, s in calls} == {switch_interval}
    assert sys.getswitchinterval() == switch_interval
    registry = running.labeler.metrics.registry  # each batch's input age, in seconds (the inputs waited)
    batches = registry.get_sample_value("stream_dec_batches_total")
    assert registry.get_sample_value("stream_dec_input_age_seconds_count") == batches > 0
    assert 0 < registry.get_sample_value("stream_dec_input_age_seconds_sum") < 60 * batches
    expected, confidence = ModelVersion.load(config.labeler.model_dir).to_model().predict(X)
    by_id = {orjson.loads(m.value())["id"]: (m, orjson.loads(m.value())) for m in labels}
    for i in range(len(X)):
        message, label = by_id[f"id-{i}"]
        assert message.key() == f"id-{i}".encode()
        assert label["cluster"] == expected[i] and label["version"] == 1
        assert label["confidence"] == pytest.approx(float(confidence[i]), abs=1e-5)
        assert label["source"]["topic"] == config.topics.embeddings
    assert sum(committed(config).values()) == len(X)  # every input committed after delivery


def test_exactly_once_mode_commits_labels_and_offsets_together(service):
    config, _ = service
    config = dataclasses.replace(config, labeler=dataclasses.replace(config.labeler, delivery="exactly-once",
                                                                     model_thread=True))  # not in this mode
    X, _ = wordnet_slice(classes=6, per_class=20, seed=8)
    produce(config.kafka["bootstrap.servers"], config.topics.embeddings,
            [float32_record(f"id-{i}", x) for i, x in enumerate(X)])
    predictor, calls = recording_predictor(config)
    running = Running(config, transactional_id=f"{config.labeler.group_id}-tx", predictor=predictor)
    labels = read_all(config.kafka["bootstrap.servers"], config.topics.labels, len(X), committed_only=True)
    running.stop()
    assert calls and {name for name, _ in calls} == {running.thread.name}  # no model thread: one batch at a time
    assert sorted(orjson.loads(m.value())["id"] for m in labels) == sorted(f"id-{i}" for i in range(len(X)))
    assert sum(committed(config).values()) == len(X)  # offsets went in with the transactions
    # The labels really went through transactions: each commit wrote a control record (marker)
    # into the labels topic, an offset no consumer sees. Without transactions the log holds the
    # labels alone. (Tansu 0.6 does not hide aborted records from read_committed readers, so an
    # aborted batch cannot be shown invisible here; see docs/security.md.)
    consumer = Consumer({"bootstrap.servers": config.kafka["bootstrap.servers"], "group.id": "watermarks"})
    entries = sum(consumer.get_watermark_offsets(TopicPartition(config.topics.labels, p), timeout=10)[1]
                  for p in range(3))
    consumer.close()
    assert entries > len(labels)


BAD = {
    "bad-json": (b"k1", b"{not json", [("content-type", b"application/json")]),
    "missing-field": (b"k2", b'{"id": "x", "vector": [1.0]}', [("content-type", b"application/json")]),
    "wrong-dimension": (b"k3", b'{"id": "x", "embedding": [1.0, 2.0]}', [("content-type", b"application/json")]),
    "bad-embedding": (b"k4", b'{"id": "x", "embedding": "abc"}', [("content-type", b"application/json")]),
    "wrong-byte-length": (b"k5", b"\x00" * 100, [("content-type", b"application/x-float32")]),
    "empty": (b"k6", None, [("content-type", b"application/x-float32")]),
    "unknown-content-type": (b"k7", b"hello", [("content-type", b"text/plain")]),
    "oversize": (b"k8", b"x" * 2_000_000, [("content-type", b"application/json")]),
}


def test_every_bad_input_kind_goes_to_dead_letter_and_good_ones_are_labelled(service):
    config, _ = service
    X, _ = wordnet_slice(classes=6, per_class=10, seed=5)
    nan = X[0].copy()
    nan[3] = np.nan
    bad = dict(BAD, **{"non-finite": float32_record("k9", nan)})
    overflow = X[1].tolist()
    overflow[7] = 1e39  # finite in JSON, Inf as float32
    bad["non-finite-json"] = (b"k10", orjson.dumps({"id": "y", "embedding": overflow}), None)
    good = [float32_record(f"good-{i}", x) for i, x in enumerate(X)]
    mixed = good[:30] + list(bad.values()) + good[30:]
    produce(config.kafka["bootstrap.servers"], config.topics.embeddings, mixed, partitioner=lambda i: 0)
    running = Running(config)
    labels = read_all(config.kafka["bootstrap.servers"], config.topics.labels, len(good))
    dead = read_all(config.kafka["bootstrap.servers"], config.topics.dead_letters, len(bad))
    running.stop()
    assert sorted(orjson.loads(m.value())["id"] for m in labels) == sorted(f"good-{i}" for i in range(len(X)))
    reasons = {}
    for message in dead:
        headers = dict(message.headers())
        reasons[message.key()] = headers["error"].decode()
        assert headers["source-topic"].decode() == config.topics.embeddings
        assert int(headers["source-offset"]) in range(len(mixed)) and headers["error-detail"]
    assert reasons == {b"k1": "bad-json", b"k2": "missing-field", b"k3": "wrong-dimension", b"k4": "bad-embedding",
                       b"k5": "wrong-byte-length", b"k6": "empty", b"k7": "unknown-content-type",
                       b"k8": "oversize", b"k9": "non-finite", b"k10": "non-finite"}
    oversize = next(m for m in dead if m.key() == b"k8")
    assert dict(oversize.headers())["truncated-from-bytes"] == b"2000000"
    assert committed(config)[0] == len(mixed)  # dead-lettered offsets are committed like any other
    assert running.labeler.metrics.dead_letters.labels("bad-json")._value.get() == 1


def serve(config_path, log_path):
    return subprocess.Popen([sys.executable, "-m", "stream_dec", "serve", "--config", str(config_path)],
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))


def produce_stream(config, n):
    X, _ = wordnet_slice(classes=6, per_class=100, seed=2)
    records = [float32_record(f"id-{i}", X[i % len(X)]) for i in range(n)]
    return produce(config.kafka["bootstrap.servers"], config.topics.embeddings, records, partitioner=lambda i: i % 3)


def crashes(*logs) -> int:
    """Tracebacks in the labelers' logs (the injected kills leave none)."""
    return sum(log.read_text().count("Traceback") for log in logs)


@pytest.mark.reliability
def test_kill_9_three_times_at_random_points_then_restart_labels_every_offset(service, tmp_path, reliability,
                                                                                reliability_run):
    config, path = service
    n = 7200  # over 3 partitions
    inputs = produce_stream(config, n)
    path.write_text(path.read_text().replace('"max_wait_ms" = 20', '"max_wait_ms" = 20\n"max_batch" = 20'))
    bootstrap = config.kafka["bootstrap.servers"]
    rng = np.random.default_rng(7 + reliability_run)
    seen, commits_at_kill = 0, []
    for kill in range(3):
        process = serve(path, tmp_path / f"run{kill}.log")
        seen = int(rng.integers(seen + 200, seen + 1500))  # a random point further into the stream
        wait_for_records(bootstrap, config.topics.labels, seen)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        commits_at_kill.append(committed(config))
        assert sum(commits_at_kill[-1].values()) < n, "the labeler finished before it was killed"
    last = serve(path, tmp_path / "last.log")
    labels = read_all(bootstrap, config.topics.labels, n, timeout=120, distinct=source_offset)
    last.send_signal(signal.SIGTERM)
    exit_code = last.wait(30)
    logs = [tmp_path / f"run{kill}.log" for kill in range(3)] + [tmp_path / "last.log"]
    reliability(account("labeler kill -9 x3 at random points, restarted", inputs, labels,
                        crashes=crashes(*logs) + (exit_code != 0)))
    assert exit_code == 0, (tmp_path / "last.log").read_text()[-2000:]
    assert {source_offset(m) for m in labels} == inputs  # nothing skipped
    # a batch (20 records) is committed once acknowledged, at most max_in_flight batches wait for
    # that, and a commit takes one round trip to land: a duplicate can only be an offset of the few
    # batches past the last commit before some kill
    in_flight = config.labeler.max_in_flight
    counts = Counter(source_offset(m) for m in labels)
    for (partition, offset), count in counts.items():
        if count > 1:
            assert any(0 <= offset - c[partition] < 20 * (in_flight + 2) for c in commits_at_kill), (partition, offset)
    assert sum(committed(config).values()) == n  # SIGTERM committed and left cleanly
    log = (tmp_path / "last.log").read_text()
    assert "labeler stopped" in log and "Traceback" not in log


@pytest.mark.reliability
def test_two_labelers_one_killed_the_other_takes_its_partitions(service, tmp_path, reliability, reliability_run):
    config, path = service
    n = 7200
    path.write_text(path.read_text().replace('"max_wait_ms" = 20', '"max_wait_ms" = 20\n"max_batch" = 20'))
    first, second = serve(path, tmp_path / "first.log"), serve(path, tmp_path / "second.log")
    for log_path in (tmp_path / "first.log", tmp_path / "second.log"):  # both joined: partitions split
        wait_for_line(log_path, r"assigned emb-\w+\[\d\]")
    inputs = produce_stream(config, n)
    bootstrap = config.kafka["bootstrap.servers"]
    wait_for_records(bootstrap, config.topics.labels, int(np.random.default_rng(reliability_run).integers(500, 2000)))
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # after the 6 s session timeout; duplicates count once, or reading stops before the last inputs
    labels = read_all(bootstrap, config.topics.labels, n, timeout=120, distinct=source_offset)
    second.send_signal(signal.SIGTERM)
    exit_code = second.wait(30)
    reliability(account("two labelers, one killed (kill -9)", inputs, labels,
                        crashes=crashes(tmp_path / "first.log", tmp_path / "second.log") + (exit_code != 0)))
    assert exit_code == 0
    # the killed labeler did own partitions, so the survivor had to take them over
    assert re.search(r"assigned emb-\w+\[\d\]", (tmp_path / "first.log").read_text())
    assert {source_offset(m) for m in labels} == inputs  # nothing skipped
    assert sum(committed(config).values()) == n


def test_lag_counts_what_is_left_and_never_goes_negative(service):
    """Tansu's high watermark is its last batch's base offset + 1, not a record count: a labeler at the
    real end read a negative lag. Each partition now counts at least 0; the gauge is set with the stats line."""
    config, _ = service
    X, _ = wordnet_slice(classes=3, per_class=40, seed=5)
    delivered = produce(config.kafka["bootstrap.servers"], config.topics.embeddings,
                        [float32_record(f"id-{i}", x) for i, x in enumerate(X)])
    ends = {p: max(o for q, o in delivered if q == p) + 1 for p, _ in delivered}
    labeler = build_labeler(config, Predictor(ModelVersion.load(config.labeler.model_dir), "cpu"),
                      Consumer(consumer_settings(config)), Producer(producer_settings(config)))
    try:
        labeler.consumer.assign([TopicPartition(config.topics.embeddings, p, 0) for p in ends])
        assert 0 < labeler.lag() <= len(X)
        consumed, deadline = 0, time.monotonic() + 20  # read everything: each position is at its real end
        while consumed < len(X) and time.monotonic() < deadline:
            consumed += len(labeler.consumer.consume(1000, 0.5))
        assert consumed == len(X) and [tp.offset for tp in labeler.consumer.position(
            labeler.consumer.assignment())] == [ends[tp.partition] for tp in labeler.consumer.assignment()]
        highs = [labeler.consumer.get_watermark_offsets(TopicPartition(config.topics.embeddings, p), 5)[1]
                 for p in ends]
        assert sum(highs) < len(X)  # Tansu: a watermark short of the records, so high - position < 0
        assert labeler.lag() == 0
    finally:
        labeler.consumer.close()
    labeler = build_labeler(config, Predictor(ModelVersion.load(config.labeler.model_dir), "cpu"),
                      Consumer(consumer_settings(config)), Producer(producer_settings(config)))
    labeler.lag = lambda: 42  # what the gauge shows is what lag() says, set with each stats line
    thread = threading.Thread(target=labeler.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10  # log_interval_s is 1 s here
    while labeler.metrics.lag._value.get() != 42 and time.monotonic() < deadline:
        time.sleep(0.05)
    labeler.stop.set()
    thread.join(30)
    assert labeler.metrics.lag._value.get() == 42
