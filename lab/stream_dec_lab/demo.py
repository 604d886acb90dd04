"""The whole loop on a drifting stream: used by ``stream-dec demo`` and ``benchmarks/system_drift.py``.

:class:`DriftRun` starts a labeler (cold start: no model yet) and an updater in threads
against a broker and Redis, replays labelled embeddings (with their texts, as JSON, when
the data has them) through the embeddings topic following the ``shift`` scenario (half
of the classes start rare and become common, a quarter fade out), and waits for each
step's update to be published or rejected. The class mix drifts, so ACC moves whatever
the model does: every figure is set beside frozen version 1 (and the parent version)
labelling the same samples. A :class:`DemoResult` holds, per model version, ACC of its
labels against the true classes next to those baselines, agreement, relative drift,
update seconds and how long the labeler took to switch; every gate decision on a time
axis; the rolling ACC timeline; and the catalogues read back from the versions topic.
A status callback receives a :class:`Status` about once a second (:class:`LiveView`
shows it); :func:`plot_timeline` draws the run.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TextIO

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from stream_dec.config import Config, kafka_settings
from stream_dec.io.wire import FLOAT32, JSON
from stream_dec_lab.scenarios import scenario_windows
from stream_dec.model import ModelVersion
from stream_dec.model.metrics import cluster_accuracy
from stream_dec.stream.kafka import consumer_settings, ensure_topics, producer_settings
from stream_dec.stream.labeler import Labeler, build_labeler
from stream_dec.stream.reservoir import Reservoir, connect
from stream_dec.stream.updater import Updater, build_updater
from stream_dec.stream.versions import VersionFollower, read_catalogues


DEMO_DATA = Path(__file__).parent / "data" / "wordnet_demo.npz"  # see data/README.md


@dataclass(frozen=True)
class Status:
    """What the live view shows (``frozen_acc``: version 1's rolling ACC on the same labels)."""

    step: int
    steps: int
    phase: str
    produced: int
    labelled: int
    rate: float
    lag: int
    version: int
    rolling_acc: float
    frozen_acc: float
    decisions: int

    def line(self) -> str:
        gain = self.rolling_acc - self.frozen_acc
        return (f"step {self.step}/{self.steps} | {self.phase} | produced {self.produced} | labelled {self.labelled} "
                f"| {self.rate:.0f} labels/s | lag {self.lag} | version {self.version} | rolling ACC "
                f"{_figure(self.rolling_acc)} (frozen v1 {_figure(self.frozen_acc)}, {_figure(gain, signed=True)})")


@dataclass(frozen=True)
class VersionRow:
    """One model version's figures; ``frozen_acc`` and ``parent_acc``: version 1 and the parent
    version labelling the same samples (what not updating would have scored)."""

    version: int
    strategy: str
    labels: int
    acc: float
    frozen_acc: float
    parent_acc: float
    agreement: float
    relative_drift: float
    update_seconds: float
    switch_seconds: float


@dataclass(frozen=True)
class Decision:
    """What became of one update: published as ``version``, or rejected (``reasons``)."""

    at: float  # seconds since the replay started
    position: int  # input records produced before it: it applies to the records after
    step: int
    published: bool
    version: int | None
    strategy: str
    agreement: float
    held_out_agreement: float
    drift: float
    reasons: str

    def line(self) -> str:
        figures = (f"agreement {self.agreement:.4f}, held-out {self.held_out_agreement:.4f}, "
                   f"relative drift {self.drift:.4f}") if self.step else "cold start"
        if self.published:
            return f"step {self.step}: version {self.version} published ({self.strategy}; {figures})"
        return f"step {self.step}: update rejected, kept the current version ({self.strategy}; {figures}): " \
               f"{self.reasons}"


@dataclass
class DemoResult:
    """Everything a run measured; ``interrupted``: Ctrl-C ended it early (figures so far)."""

    rows: list[VersionRow]
    decisions: list[Decision]
    timeline: dict[str, list[float]]  # stream position, live and frozen rolling ACC
    catalogues: dict  # version -> Catalogue, as read from the versions topic
    produced: int
    min_agreement: float
    max_drift: float
    interrupted: bool = False


def _cell(value: float, spec: str = ".4f") -> str:
    """A table figure; "-" where there is none (version 1 has no parent, an unlabelled version no ACC)."""
    return "-" if value != value else format(value, spec)


def _figure(value: float, signed: bool = False) -> str:
    if value != value:  # NaN: nothing to show yet
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


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


ROLLING = 1000
"""Labels in a rolling ACC: the latest to arrive in the live line, the latest in stream order in the timeline."""


class DriftRun:
    """Labeler + updater threads replaying ``X`` (true classes ``y``, optional ``texts``); see the
    module docstring."""

    def __init__(self, config: Config, X: np.ndarray, y: np.ndarray, *, window: int, steps: int, seed: int = 0,
                 texts: Sequence[str] | None = None) -> None:
        self.config = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, clusters=int(np.unique(y).size)),
            labeler=dataclasses.replace(config.labeler, input_dim=X.shape[1],
                                        content_type=FLOAT32 if texts is None else JSON),
            reservoir=dataclasses.replace(config.reservoir, capacity=window),
            updater=dataclasses.replace(config.updater, min_initial=window, update_every=window // 2, interval_s=1e9),
        )
        self.X, self.y, self.texts = X.astype(np.float32), y, texts
        self.plan = scenario_windows(y, scenario="shift", window=window, steps=steps, seed=seed)
        self.labels: dict[tuple[int, int], dict] = {}
        self.lock = threading.Lock()  # the reader thread writes labels, the watcher reads them
        self.produced = self.step = 0
        self.started = time.monotonic()
        self.switched: dict[int, float] = {}
        self.published: dict[int, float] = {}
        self.models: dict[int, ModelVersion] = {}
        self.predicted: dict[int, np.ndarray] = {}  # version -> its label for every row of X
        self.gates: list[dict] = []
        self.interrupted = False

    def run(self, on_status: Callable[[Status], None] | None = None, timeout_per_step: float = 900) -> DemoResult:
        """Replay the plan; Ctrl-C ends it early with the figures so far (``interrupted``)."""
        config = self.config
        # one input partition: the labeler reads in the order produced, so the reservoir, hence every
        # version and gate decision, is the same in every run with the same seed
        ensure_topics(config, partitions={config.topics.embeddings: 1})
        client = connect(config.redis)
        name = config.model.name
        labeler = build_labeler(config, None, Consumer(consumer_settings(config)), Producer(producer_settings(config)),
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
            self.started = time.monotonic()
            for self.step, window in enumerate(self.plan):
                finished = len(updater.published) + len(updater.rejections)
                self._produce(window.rows if self.step == 0 else window.added)
                deadline = time.monotonic() + timeout_per_step
                while len(updater.published) + len(updater.rejections) == finished and time.monotonic() < deadline:
                    time.sleep(0.1)  # until this step's update is published or rejected
            deadline = time.monotonic() + 60
            while len(self.labels) < self.produced and time.monotonic() < deadline:
                time.sleep(0.1)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            labeler.stop.set()
            updater.stop.set()
            stop.set()
            for thread in threads:
                thread.join(60)
            labeler.follower.close()
            updater.follower.close()
            self.gates = list(updater.gates)
            del labeler, updater  # librdkafka handles are destroyed with them, before the services stop
            gc.collect()
        headers, catalogues = read_catalogues(kafka_settings(config, "consumer"), config.topics.versions, name)
        return DemoResult(self._rows(headers), self._decisions(headers), self._timeline(), catalogues,
                          self.produced, config.update.min_agreement, config.update.max_drift, self.interrupted)

    def _produce(self, rows: np.ndarray) -> None:
        producer = Producer({"bootstrap.servers": self.config.kafka["bootstrap.servers"], "linger.ms": 5})
        for row in rows.tolist():
            if self.texts is None:
                value = self.X[row].astype("<f4").tobytes()
            else:
                value = orjson.dumps({"id": str(row), "embedding": self.X[row], "text": self.texts[row]},
                                     option=orjson.OPT_SERIALIZE_NUMPY)
            producer.produce(self.config.topics.embeddings, value, str(row).encode())
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
            current = updater.current
            if current is not None and current.header.version not in self.models:
                self.models[current.header.version] = current
                self.predicted[current.header.version] = current.to_model().predict(self.X)[0]
            for version in updater.published:
                self.published.setdefault(version, now)
            if on_status is not None and now >= next_status:
                with self.lock:
                    labels = list(self.labels.values())
                recent = sorted(labels, key=lambda label: label["arrived"])[-ROLLING:]
                live, frozen = self._accuracies(recent)
                decided = len(updater.published) + len(updater.rejections)
                on_status(Status(self.step, len(self.plan) - 1, self._phase(updater, decided, now), self.produced,
                                 len(labels), (len(labels) - last_count) / (now - last_time),
                                 self.produced - len(labels), labeler.predictor.version if labeler.predictor else 0,
                                 live, frozen, decided))
                last_count, last_time, next_status = len(labels), now, now + 1.0
            time.sleep(0.005)

    @staticmethod
    def _phase(updater: Updater, decided: int, now: float) -> str:
        busy = updater.cycles > decided  # an update (or the first training) is running
        if not updater.published:
            return f"training version 1 ({now - updater.last_update:.0f} s)" if busy else "collecting the first window"
        return f"training an update ({now - updater.last_update:.0f} s)" if busy else "labelling"

    def _accuracies(self, labels: list[dict]) -> tuple[float, float]:
        """ACC of ``labels`` as delivered, and of version 1 labelling the same samples."""
        nan = float("nan")
        if not labels:
            return nan, nan
        rows = np.array([int(label["id"]) for label in labels])
        live = cluster_accuracy(self.y[rows], np.array([label["cluster"] for label in labels]))
        frozen = cluster_accuracy(self.y[rows], self.predicted[1][rows]) if 1 in self.predicted else nan
        return live, frozen

    def _rows(self, headers: dict) -> list[VersionRow]:
        by_version: dict[int, list[dict]] = {}
        for label in self.labels.values():
            by_version.setdefault(label["version"], []).append(label)
        nan, rows = float("nan"), []
        for version in sorted(set(by_version) | set(headers)):
            labels = by_version.get(version, [])
            live, frozen = self._accuracies(labels)
            ids = np.array([int(label["id"]) for label in labels], dtype=np.int64)
            parent = self.predicted.get(version - 1)
            parent_acc = cluster_accuracy(self.y[ids], parent[ids]) if parent is not None and len(ids) else nan
            header = headers.get(version)
            metrics = header.metrics if header else {}
            rows.append(VersionRow(version, header.strategy if header else "?", len(labels), live, frozen, parent_acc,
                                   metrics.get("agreement", nan), metrics.get("relative_drift_max", nan),
                                   metrics.get("seconds", nan),
                                   self.switched.get(version, nan) - self.published.get(version, nan)))
        return rows

    def _decisions(self, headers: dict) -> list[Decision]:
        """The cold start, then every gate decision in order (one per step)."""
        nan = float("nan")
        positions = np.cumsum([len(self.plan[0].rows)] + [len(w.added) for w in self.plan[1:]]).tolist()
        decisions = []
        if 1 in headers:
            decisions.append(Decision(self.published.get(1, nan) - self.started, 0, 0, True, 1,
                                      headers[1].strategy, nan, nan, nan, ""))
        for step, gate in enumerate(self.gates, start=1):
            published = gate["passed"] and gate["current_version"] + 1 in headers
            held_out = gate["held_out_agreement"]
            decisions.append(Decision(gate["at"] - self.started, positions[min(step, len(positions) - 1)], step,
                                      published,
                                      gate["current_version"] + 1 if published else None, gate["strategy"],
                                      gate["agreement"], nan if held_out is None else held_out,
                                      gate["relative_drift"], gate["reasons"]))
        return decisions

    def _timeline(self) -> dict[str, list[float]]:
        """Rolling ACC (live, and version 1 on the same samples) at up to 200 stream positions (the
        input offset: the demo's input topic has one partition)."""
        labels = sorted(self.labels.values(), key=lambda label: label["source"]["offset"])
        series: dict[str, list[float]] = {"position": [], "live": [], "frozen": []}
        for end in np.unique(np.linspace(min(ROLLING, len(labels)), len(labels), 200).astype(int)):
            if end == 0:
                continue
            live, frozen = self._accuracies(labels[max(0, end - ROLLING):end])
            series["position"].append(labels[end - 1]["source"]["offset"] + 1)
            series["live"].append(live)
            series["frozen"].append(frozen)
        return series


def markdown(result: DemoResult) -> str:
    """The per-version table (with what version 1 and the parent scored on the same samples) and
    the gate decisions."""
    lines = ["| version | strategy | labels | ACC of its labels | frozen v1, same samples | gain over v1 | "
             "parent, same samples | agreement | rel. drift max | update s | switch s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.version} | {r.strategy} | {r.labels} | {_cell(r.acc)} | {_cell(r.frozen_acc)} | "
              f"{_cell(r.acc - r.frozen_acc, '+.4f')} | {_cell(r.parent_acc)} | {_cell(r.agreement)} | "
              f"{_cell(r.relative_drift)} | {_cell(r.update_seconds, '.2f')} | {_cell(r.switch_seconds, '.3f')} |"
              for r in result.rows]
    lines += ["", "Decisions (seconds since the replay started):"]
    lines += [f"- [{d.at:.1f} s] {d.line()}" for d in result.decisions]
    if result.interrupted:
        lines += ["", "Interrupted: figures so far."]
    return "\n".join(lines)


def plot_timeline(result: DemoResult, path: Path) -> Path:
    """PNG along the stream (input records): rolling ACC of the live labels and of frozen version 1
    on the same samples, their difference, and each gate decision's agreement and drift beside
    their limits; published versions are green lines, rejected updates red ones, each drawn where
    it starts to apply."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, live, frozen = (np.array(result.timeline[k], dtype=float) for k in ("position", "live", "frozen"))
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True, height_ratios=(3, 1.6, 1.6, 1.6))
    axes[0].plot(t, live, label="live (each label by the version that made it)", color="tab:blue")
    axes[0].plot(t, frozen, label="frozen version 1, same samples", color="tab:grey", linestyle="--")
    axes[0].set_ylabel(f"rolling ACC\n(last {ROLLING} labels)")
    axes[1].axhline(0, color="black", linewidth=0.8)
    axes[1].fill_between(t, live - frozen, 0, where=live >= frozen, color="tab:green", alpha=0.4, interpolate=True)
    axes[1].fill_between(t, live - frozen, 0, where=live < frozen, color="tab:red", alpha=0.4, interpolate=True)
    axes[1].set_ylabel("live - frozen")
    updates = [d for d in result.decisions if d.step > 0]
    for ax, field, limit, name, limit_name in ((axes[2], "agreement", result.min_agreement, "agreement", "min_agreement"),
                                               (axes[3], "drift", result.max_drift, "relative drift", "max_drift")):
        for published, marker, colour in ((True, "o", "tab:green"), (False, "X", "tab:red")):
            chosen = [d for d in updates if d.published == published]
            ax.scatter([d.position for d in chosen], [getattr(d, field) for d in chosen], marker=marker, color=colour,
                       s=50, zorder=3, label="published" if published else "rejected")
        if field == "agreement":
            held = [d for d in updates if d.held_out_agreement == d.held_out_agreement]
            ax.scatter([d.position for d in held], [d.held_out_agreement for d in held], marker="s", facecolor="none",
                       edgecolor="black", s=50, zorder=3, label="held-out agreement")
        ax.axhline(limit, color="tab:red", linestyle=":", label=f"{limit_name} {limit:g}")
        values = [getattr(d, field) for d in updates] + [limit]
        low, high = min(values), max(values)
        margin = max(0.02, 0.15 * (high - low))
        ax.set_ylim(low - margin, high + margin)
        ax.set_ylabel(name)
        ax.legend(fontsize=7, loc="lower left", ncol=4)
    for d in result.decisions:
        for ax in axes:
            ax.axvline(d.position, color="tab:green" if d.published else "tab:red", alpha=0.5,
                       linestyle="-" if d.published else ":")
        axes[0].annotate(f"v{d.version}" if d.published else "rejected", (d.position, 1.0), xycoords=("data", "axes fraction"),
                         fontsize=8, xytext=(2, -10), textcoords="offset points",
                         color="tab:green" if d.published else "tab:red")
    axes[0].legend(fontsize=8, loc="lower left")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("input records (stream position); a decision applies to the records after its line")
    axes[0].set_title("stream-dec demo: live labels against a frozen version 1" +
                      (" (interrupted)" if result.interrupted else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class LiveView(logging.Handler):
    """The demo's status line. On a terminal it is rewritten in place and log records print
    above it (never through it); without one, it prints one line every ``interval`` seconds.
    Install it as the root logger's handler for the run."""

    def __init__(self, stream: TextIO, interval: float = 10.0) -> None:
        super().__init__()
        self.stream, self.interval, self.tty = stream, interval, stream.isatty()
        self.text, self.next_line = "", 0.0
        self.guard = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def show(self, status: Status) -> None:
        text = status.line()
        with self.guard:
            if self.tty:
                self.text = text[: shutil.get_terminal_size().columns - 1]  # a wrapped line cannot be rewritten
                self.stream.write("\r\033[K" + self.text)
            elif time.monotonic() >= self.next_line:
                self.stream.write(text + "\n")
                self.next_line = time.monotonic() + self.interval
            self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        with self.guard:
            self.stream.write(("\r\033[K" + message + "\n" + self.text) if self.tty else message + "\n")
            self.stream.flush()

    def end(self) -> None:
        """Leave the status line (call before printing anything else)."""
        with self.guard:
            if self.tty and self.text:
                self.stream.write("\n")
                self.stream.flush()
            self.text = ""
