"""Faults while labels flow: Redis killed and restarted (AOF), the broker paused (SIGSTOP)."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time

import numpy as np
import orjson
import pytest
import redis

from stream_dec.stream.kafka import ensure_topics
from stream_dec.stream.reservoir import Reservoir
from tests.conftest import wordnet_slice
from tests.integration.conftest import (
    eventually,
    float32_record,
    free_port,
    produce,
    read_all,
    redis_binary,
    start_tansu,
    wait_for_port,
    wait_for_records,
)
from tests.integration.reliability import account
from tests.integration.test_labeler import Running

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def test_redis_restart_mid_stream_labels_keep_flowing_and_writes_resume(service, tmp_path, reliability,
                                                                         reliability_run):
    config, _ = service
    port = free_port()
    command = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
               "--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_for_port(port)
    config = dataclasses.replace(config, redis=dataclasses.replace(config.redis, socket_timeout_s=0.5),
                                 labeler=dataclasses.replace(config.labeler, retry_backoff_max_ms=200))
    client = redis.Redis("127.0.0.1", port, socket_timeout=0.5, socket_connect_timeout=0.5)
    reservoir = Reservoir(client, "faults", capacity=10_000)
    X, _ = wordnet_slice(classes=6, per_class=100, seed=21 + reliability_run)
    bootstrap = config.kafka["bootstrap.servers"]
    running = Running(config, reservoir=reservoir)
    try:
        inputs = produce(bootstrap, config.topics.embeddings, [float32_record(f"a{i}", x) for i, x in enumerate(X)])
        assert len(read_all(bootstrap, config.topics.labels, 600)) == 600
        assert eventually(lambda: reservoir.sizes()["seen"] == 600)  # written by the labeler's reservoir writer
        reservoir.cycle(0.5, np.random.default_rng(0))
        window = reservoir.window().ids
        server.kill()  # Redis gone mid-stream
        server.wait()
        inputs |= produce(bootstrap, config.topics.embeddings, [float32_record(f"b{i}", x) for i, x in enumerate(X)])
        assert len(read_all(bootstrap, config.topics.labels, 1200)) == 1200  # labels keep flowing
        deadline = time.monotonic() + 10  # the write is attempted after delivery, before the commit
        while running.labeler.metrics.samples_skipped._value.get() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running.labeler.metrics.samples_skipped._value.get() > 0
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for_port(port)
        assert reservoir.window().ids == window  # the window survived (AOF)
        seen = reservoir.sizes()["seen"]  # as the AOF kept it
        inputs |= produce(bootstrap, config.topics.embeddings, [float32_record(f"c{i}", x) for i, x in enumerate(X)])
        labels = read_all(bootstrap, config.topics.labels, 1800)
        reliability(account("Redis killed mid-stream, restarted (AOF)", inputs, labels,
                            crashes=not running.thread.is_alive()))
        assert len(labels) == 1800
        deadline = time.monotonic() + 10  # the next batches past the retry backoff write again
        while reservoir.sizes()["seen"] == seen and time.monotonic() < deadline:
            produce(bootstrap, config.topics.embeddings, [float32_record(f"d{i}", x) for i, x in enumerate(X[:20])])
            time.sleep(0.2)
        assert reservoir.sizes()["seen"] > seen  # writes resumed after the restart
    finally:
        running.stop()
        server.kill()
        server.wait()


def test_broker_paused_then_resumed_loses_nothing(tmp_path, model_dir, reliability, reliability_run, caplog):
    from stream_dec.config import config_from_mapping

    port = free_port()
    broker = start_tansu(port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    config = config_from_mapping({
        "kafka": {"bootstrap.servers": bootstrap, "consumer": {"session.timeout.ms": 30000}},
        "labeler": {"model_dir": str(model_dir), "max_wait_ms": 20, "max_batch": 20, "device": "cpu",
                    "log_interval_s": 1.0},
        "log": {"format": "text"},
    }, source="test")
    ensure_topics(config)
    X, _ = wordnet_slice(classes=6, per_class=100, seed=22 + reliability_run)
    n = 6000
    try:
        records = [float32_record(f"a{i}", X[i % len(X)]) for i in range(n)]
        inputs = produce(bootstrap, config.topics.embeddings, records)
        running = Running(config)
        at = int(np.random.default_rng(reliability_run).integers(200, 2000))
        wait_for_records(bootstrap, config.topics.labels, at)
        broker.send_signal(signal.SIGSTOP)  # mid-stream: the batch in flight waits for its acknowledgement
        time.sleep(10)
        broker.send_signal(signal.SIGCONT)
        labels = read_all(bootstrap, config.topics.labels, n, timeout=120,
                          distinct=lambda m: orjson.loads(m.value())["id"])
        reliability(account("broker paused (SIGSTOP) 10 s, resumed", inputs, labels,
                            crashes=not running.thread.is_alive()))
        assert running.thread.is_alive()
        running.stop()
        assert {orjson.loads(m.value())["id"] for m in labels} == {f"a{i}" for i in range(n)}  # nothing lost
        said = [r.getMessage() for r in caplog.records if r.name.startswith("stream_dec")]
        # the log says what happened wherever the pause caught the labeler: delivering a batch
        # (waiting, then resuming), committing (how long it took) or between batches (the
        # status line's broker query timing out)
        waited = any("waiting for the broker to acknowledge" in line for line in said)
        assert waited or any("the broker took" in line or "the broker did not answer" in line for line in said), said
        assert not waited or any("the broker acknowledged the batch after" in line for line in said)
    finally:
        broker.send_signal(signal.SIGCONT)
        broker.terminate()
        broker.wait(10)
