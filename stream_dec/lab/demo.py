"""The whole loop on a drifting stream: used by ``stream-dec demo`` and ``benchmarks/system_drift.py``.

:class:`DriftRun` starts a labeler (cold start: no model yet) and an updater in threads
against a broker and Redis, replays labelled embeddings through the embeddings topic
following the ``shift`` scenario (half of the classes start rare and become common, a
quarter fade out), waits for each step's update to be published or rejected, and
reports per model version: ACC of its labels against the true classes, label agreement
with the previous version, relative drift, update seconds and how long the labeler took
to switch. A status callback receives a :class:`Status` about once a second (the live
view); :func:`plot_versions` draws the per-version summary.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from stream_dec.config import Config, kafka_settings
from stream_dec.lab.scenarios import scenario_windows
from stream_dec.model.metrics import cluster_accuracy
from stream_dec.stream.kafka import consumer_settings, ensure_topics, producer_settings
from stream_dec.stream.labeler import Labeler
from stream_dec.stream.reservoir import Reservoir, connect
from stream_dec.stream.updater import Updater, build_updater
from stream_dec.stream.versions import VersionFollower


@dataclass(frozen=True)
class Status:
    """What the live view shows."""

    step: int
    produced: int
    labelled: int
    rate: float
    lag: int
    version: int
    rolling_acc: float
    agreement: float
    drift: float


@dataclass(frozen=True)
class VersionRow:
    """One model version's figures."""

    version: int
    strategy: str
    labels: int
    acc: float
    agreement: float
    relative_drift: float
    update_seconds: float
    switch_seconds: float


def isolated(config: Config, bootstrap: str, redis_url: str) -> Config:
    """``config`` pointed at the given services, with fresh topic, group and model names."""
    suffix = uuid.uuid4().hex[:6]
    return dataclasses.replace(
        config,
        kafka={**config.kafka, "bootstrap.servers": bootstrap},
        topics=dataclasses.replace(config.topics, embeddings=f"embeddings-{suffix}", labels=f"labels-{suffix}",
                                   dead_letters=f"dead-letters-{suffix}", versions=f"versions-{suffix}"),
        model=dataclasses.replace(config.model, name=f"demo-{suffix}"),
        labeler=dataclasses.replace(config.labeler, group_id=f"labelers-{suffix}"),
        redis=dataclasses.replace(config.redis, url=redis_url),
    )


class DriftRun:
    """Labeler + updater threads replaying ``X`` (true classes ``y``); see the module docstring."""

    def __init__(self, config: Config, X: np.ndarray, y: np.ndarray, *, window: int, steps: int, seed: int = 0) -> None:
        self.config = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, clusters=int(np.unique(y).size)),
            labeler=dataclasses.replace(config.labeler, input_dim=X.shape[1], content_type="application/x-float32"),
            reservoir=dataclasses.replace(config.reservoir, capacity=window),
            updater=dataclasses.replace(config.updater, min_initial=window, update_every=window // 2, interval_s=1e9),
        )
        self.X, self.y = X.astype(np.float32), y
        self.plan = scenario_windows(y, scenario="shift", window=window, steps=steps, seed=seed)
        self.labels: dict[tuple[int, int], dict] = {}
        self.lock = threading.Lock()  # the reader thread writes labels, the watcher reads them
        self.produced = 0
        self.switched: dict[int, float] = {}
        self.published: dict[int, float] = {}

    def run(self, on_status: Callable[[Status], None] | None = None, timeout_per_step: float = 900) -> list[VersionRow]:
        config = self.config
        ensure_topics(config)
        client = connect(config.redis)
        name = config.model.name
        labeler = Labeler(config, None, Consumer(consumer_settings(config)), Producer(producer_settings(config)),
                          follower=VersionFollower(kafka_settings(config, "consumer"), config.topics.versions, name),
                          reservoir=Reservoir(client, name, config.reservoir.capacity))
        updater = build_updater(config, client)
        stop = threading.Event()
        threads = [threading.Thread(target=labeler.run, daemon=True), threading.Thread(target=updater.run, daemon=True),
                   threading.Thread(target=self._read_labels, args=(stop,), daemon=True),
                   threading.Thread(target=self._watch, args=(stop, labeler, updater, on_status), daemon=True)]
        for thread in threads:
            thread.start()
        try:
            for self.step, window in enumerate(self.plan):
                finished = len(updater.published) + len(updater.rejections)
                self._produce(window.rows if self.step == 0 else window.added)
                deadline = time.monotonic() + timeout_per_step
                while len(updater.published) + len(updater.rejections) == finished and time.monotonic() < deadline:
                    time.sleep(0.1)  # until this step's update is published or rejected
            deadline = time.monotonic() + 60
            while len(self.labels) < self.produced and time.monotonic() < deadline:
                time.sleep(0.1)
            headers = self._version_headers()
        finally:
            labeler.stop.set()
            updater.stop.set()
            stop.set()
            for thread in threads:
                thread.join(60)
            labeler.follower.close()
            updater.follower.close()
            self.rejections = list(updater.rejections)
            del labeler, updater  # librdkafka handles are destroyed with them, before the services stop
            gc.collect()
        return self._rows(headers)

    def _produce(self, rows: np.ndarray) -> None:
        producer = Producer({"bootstrap.servers": self.config.kafka["bootstrap.servers"], "linger.ms": 5})
        for row in rows:
            producer.produce(self.config.topics.embeddings, self.X[row].astype("<f4").tobytes(), str(int(row)).encode())
            producer.poll(0)
        producer.flush(60)
        self.produced += len(rows)

    def _read_labels(self, stop: threading.Event) -> None:
        consumer = Consumer({**kafka_settings(self.config, "consumer"), "group.id": uuid.uuid4().hex,
                             "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        partitions = consumer.list_topics(self.config.topics.labels, timeout=10).topics[self.config.topics.labels]
        consumer.assign([TopicPartition(self.config.topics.labels, p, OFFSET_BEGINNING) for p in partitions.partitions])
        while not stop.is_set():
            for message in consumer.consume(10_000, 0.2):
                if message.error() is None:
                    label = orjson.loads(message.value())
                    label["arrived"] = time.monotonic()
                    with self.lock:
                        self.labels[(label["source"]["partition"], label["source"]["offset"])] = label
        consumer.close()

    def _watch(self, stop, labeler: Labeler, updater: Updater, on_status) -> None:
        last_count, last_time, next_status = 0, time.monotonic(), time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if labeler.predictor is not None:
                self.switched.setdefault(labeler.predictor.version, now)
            for version in updater.published:
                self.published.setdefault(version, now)
            if on_status is not None and now >= next_status:
                with self.lock:
                    count, labels = len(self.labels), list(self.labels.values())
                recent = sorted(labels, key=lambda label: label["arrived"])[-1000:]
                acc = cluster_accuracy(self.y[[int(r["id"]) for r in recent]], np.array([r["cluster"] for r in recent])) \
                    if recent else float("nan")
                metrics = updater.current.header.metrics if updater.current is not None else {}
                on_status(Status(getattr(self, "step", 0), self.produced, count, (count - last_count) / (now - last_time),
                                 self.produced - count, labeler.predictor.version if labeler.predictor else 0, acc,
                                 metrics.get("agreement", float("nan")), metrics.get("relative_drift_max", float("nan"))))
                last_count, last_time, next_status = count, now, now + 1.0
            time.sleep(0.005)

    def _version_headers(self) -> dict:
        """Every version's header, as any reader of the versions topic accepts them."""
        follower = VersionFollower(kafka_settings(self.config, "consumer"), self.config.topics.versions,
                                   self.config.model.name)
        follower.latest()
        follower.close()
        return dict(follower.accepted)

    def _rows(self, headers: dict) -> list[VersionRow]:
        by_version: dict[int, list[dict]] = {}
        for label in self.labels.values():
            by_version.setdefault(label["version"], []).append(label)
        nan, rows = float("nan"), []
        for version in sorted(set(by_version) | set(headers)):
            labels = by_version.get(version, [])
            acc = cluster_accuracy(self.y[[int(r["id"]) for r in labels]], np.array([r["cluster"] for r in labels])) \
                if labels else nan
            header = headers.get(version)
            metrics = header.metrics if header else {}
            rows.append(VersionRow(version, header.strategy if header else "?", len(labels), acc,
                                   metrics.get("agreement", nan), metrics.get("relative_drift_max", nan),
                                   metrics.get("seconds", nan),
                                   self.switched.get(version, nan) - self.published.get(version, nan)))
        return rows


def markdown(rows: list[VersionRow]) -> str:
    """The per-version table."""
    lines = ["| version | strategy | labels | ACC of labels | agreement | rel. drift max | update s | switch s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.version} | {r.strategy} | {r.labels} | {r.acc:.4f} | {r.agreement:.4f} | {r.relative_drift:.4f} | "
              f"{r.update_seconds:.2f} | {r.switch_seconds:.3f} |" for r in rows]
    return "\n".join(lines)


def plot_versions(rows: list[VersionRow], path: Path) -> Path:
    """PNG of ACC, agreement and relative drift per version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = [r.version for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(6, 6), sharex=True)
    for ax, values, label in ((axes[0], [r.acc for r in rows], "ACC of labels"),
                              (axes[1], [r.agreement for r in rows], "agreement"),
                              (axes[2], [r.relative_drift for r in rows], "relative drift")):
        ax.plot(versions, values, marker="o")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("model version")
    axes[-1].set_xticks(versions)
    axes[0].set_title("stream-dec: per model version")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
