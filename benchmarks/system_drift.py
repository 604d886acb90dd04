"""A drift run through the whole system: broker, Redis, labeler, updater, versions topic.

Replays wordnet_nouns through the embeddings topic following the ``shift`` scenario of
``stream-dec evaluate`` (half of the classes start rare and become common, a quarter
fade out). The system starts empty: the labeler samples the first window into the
reservoir, the updater trains version 1, and every later step's new half-window makes
the updater cycle the reservoir, run the configured strategy behind the promotion gate
and publish (or keep the current version). Prints per version: ACC of the labels on
the labels topic against the true classes, label agreement with the previous version
(on the retained samples), relative drift, update seconds and how long the labeler
took to switch.

Run from the repository root::

    python benchmarks/system_drift.py [--window 4000] [--steps 3] [--strategy ewc]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import numpy as np
import orjson
import redis
from confluent_kafka import Consumer, Producer

from stream_dec.config import Config, kafka_settings
from stream_dec.continual.scenarios import scenario_windows
from stream_dec.model.metrics import cluster_accuracy
from stream_dec.stream.kafka import VERSION_BYTES, consumer_settings, ensure_topics, producer_settings
from stream_dec.stream.labeler import Labeler
from stream_dec.stream.lease import Lease
from stream_dec.stream.reservoir import Reservoir
from stream_dec.stream.updater import Updater
from stream_dec.stream.versions import VersionFollower, decode_record

from dec_quality import load  # noqa: E402
from labeler_throughput import start_broker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--strategy", default="ewc")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    X, y = load("wordnet", None)
    plan = scenario_windows(y, scenario="shift", window=args.window, steps=args.steps, seed=args.seed)
    broker_port, redis_port = 19492, 16392
    broker = start_broker(broker_port)
    folder = tempfile.mkdtemp()
    redis_server = subprocess.Popen([shutil.which("redis-server"), "--port", str(redis_port), "--dir", folder,
                                     "--save", "", "--appendonly", "yes"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    suffix = uuid.uuid4().hex[:6]
    base = Config()
    config = dataclasses.replace(
        base,
        kafka={"bootstrap.servers": f"127.0.0.1:{broker_port}", "consumer": {"session.timeout.ms": 6000}},
        topics=dataclasses.replace(base.topics, embeddings=f"emb-{suffix}", labels=f"lab-{suffix}",
                                   dead_letters=f"dlq-{suffix}", versions=f"ver-{suffix}"),
        model=dataclasses.replace(base.model, name=f"drift-{suffix}", clusters=int(np.unique(y).size)),
        train=dataclasses.replace(base.train, device="cpu"),
        update=dataclasses.replace(base.update, strategy=args.strategy),
        labeler=dataclasses.replace(base.labeler, group_id=f"g-{suffix}", input_dim=384, device="cpu",
                                    content_type="application/x-float32", log_interval_s=3600.0),
        reservoir=dataclasses.replace(base.reservoir, capacity=args.window),
        redis=dataclasses.replace(base.redis, url=f"redis://127.0.0.1:{redis_port}/0"),
        updater=dataclasses.replace(base.updater, min_initial=args.window, update_every=args.window // 2,
                                    interval_s=1e9, lease_ttl_ms=600_000, poll_s=0.2),
    )
    ensure_topics(config)
    client = redis.Redis("127.0.0.1", redis_port)
    name = config.model.name
    labeler = Labeler(config, None, Consumer(consumer_settings(config)), Producer(producer_settings(config)),
                      follower=VersionFollower(kafka_settings(config, "consumer"), config.topics.versions, name),
                      reservoir=Reservoir(client, name, args.window))
    updater = Updater(config, Reservoir(client, name, args.window),
                      Lease(client, f"stream-dec:{name}:updater-lease", config.updater.lease_ttl_ms),
                      Producer({**producer_settings(config), "message.max.bytes": VERSION_BYTES}),
                      VersionFollower(kafka_settings(config, "consumer"), config.topics.versions, name))
    switched: dict[int, float] = {}
    published: dict[int, float] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if labeler.predictor is not None:
                switched.setdefault(labeler.predictor.version, time.monotonic())
            for v in updater.published:
                published.setdefault(v, time.monotonic())
            time.sleep(0.005)

    threads = [threading.Thread(target=t) for t in (labeler.run, updater.run, watch)]
    for t in threads:
        t.start()
    bootstrap = config.kafka["bootstrap.servers"]
    try:
        for step, window in enumerate(plan):
            rows = window.rows if step == 0 else window.added
            finished = len(updater.published) + len(updater.rejections)
            produce_rows(bootstrap, config.topics.embeddings, X, rows)
            deadline = time.monotonic() + 600
            while len(updater.published) + len(updater.rejections) == finished and time.monotonic() < deadline:
                time.sleep(0.2)  # until this step's update has published or been rejected
            while (updater.published and labeler.predictor is None or
                   labeler.predictor and updater.published and labeler.predictor.version < updater.published[-1]):
                time.sleep(0.05)
            time.sleep(1.0)
        total = sum(len(w.rows if i == 0 else w.added) for i, w in enumerate(plan))
        labels = read_labels(bootstrap, config.topics.labels, total)
        headers = version_headers(config)
    finally:
        labeler.stop.set()
        updater.stop.set()
        stop.set()
        for t in threads:
            t.join(60)
        redis_server.terminate()
        broker.terminate()
    report(labels, y, headers, updater, switched, published, args)


def produce_rows(bootstrap: str, topic: str, X: np.ndarray, rows: np.ndarray) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for row in rows:
        producer.produce(topic, X[row].astype("<f4").tobytes(), str(int(row)).encode())
        producer.poll(0)
    producer.flush(60)


def read_labels(bootstrap: str, topic: str, expected: int) -> list[dict]:
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    labels, deadline = {}, time.monotonic() + 120
    while len(labels) < expected and time.monotonic() < deadline:
        for m in consumer.consume(10000, 0.5):
            if m.error() is None:
                label = orjson.loads(m.value())
                labels[(label["source"]["partition"], label["source"]["offset"])] = label
    consumer.close()
    return list(labels.values())


def version_headers(config) -> dict:
    """Every version header on the versions topic, by version number."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    consumer = Consumer({**kafka_settings(config, "consumer"), "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(config.topics.versions, 0, OFFSET_BEGINNING)])
    _, high = consumer.get_watermark_offsets(TopicPartition(config.topics.versions, 0), timeout=10)
    headers, position = {}, 0
    while position < high:
        for m in consumer.consume(100, 1.0):
            if m.error() is None:
                position = m.offset() + 1
                version = decode_record(m.value(), source="benchmark")
                headers[version.header.version] = version.header
    consumer.close()
    return headers


def report(labels, y, headers, updater, switched, published, args) -> None:
    print(f"shift scenario, window {args.window}, {args.steps} steps, strategy {args.strategy}: "
          f"{len(labels)} labels, {updater.cycles} update cycles, {len(updater.published)} versions published")
    print("| version | strategy | labels | ACC of labels | agreement | rel. drift max | update s | switch s |")
    print("|---|---|---|---|---|---|---|---|")
    by_version: dict[int, list[dict]] = {}
    for label in labels:
        by_version.setdefault(label["version"], []).append(label)
    nan = float("nan")
    for version in sorted(set(by_version) | set(headers)):
        rows = by_version.get(version, [])
        acc = cluster_accuracy(y[[int(r["id"]) for r in rows]], np.array([r["cluster"] for r in rows])) if rows else nan
        header = headers.get(version)
        m = header.metrics if header else {}
        print(f"| {version} | {header.strategy if header else '?'} | {len(rows)} | {acc:.4f} | "
              f"{m.get('agreement', nan):.4f} | {m.get('relative_drift_max', nan):.4f} | {m.get('seconds', nan):.2f} | "
              f"{switched.get(version, nan) - published.get(version, nan):.3f} |")
    for reason in updater.rejections:
        print(f"gate kept the current version: {reason}")

if __name__ == "__main__":
    main()
