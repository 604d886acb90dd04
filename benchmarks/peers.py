"""The labeler against what a user would write by hand, side by side on one backlog.

Starts the Tansu broker, produces one backlog of N real embeddings (768-d float32 by
default: two wordnet 384-d embeddings side by side) to a 3-partition topic, then runs,
in interleaved rounds, each peer from the start of that backlog with its own consumer
group and its own labels topic:

- ``labeler``: stream-dec's labeler with its default config (validation, dead-letter
  routing, reservoir sampling on: a Redis started here);
- ``labeler-unsampled``: the same with ``sample_rate = 0``: what reservoir sampling costs;
- ``labeler-float32``: the same with ``precision = "float32"``: what the folded bfloat16
  model step saves (the same labels; nothing where ``auto`` picks float32);
- ``labeler-samples-float32``: the same with ``[reservoir] sample_precision = "float32"``:
  what bfloat16 samples save;
- ``labeler-each-batch``: the same with ``[reservoir] write_interval_ms = 0``: each
  batch's samples written as it comes, not a local sample merged once a second;
- ``labeler-write-5s``: the same with ``write_interval_ms = 5000``: a local sample merged
  once every 5 seconds;
- ``labeler-model-thread``: the same with ``[labeler] model_thread = true``: the model
  step on a thread of its own, beside the labeler's;
- ``batch-loop``: the 30-line loop a user writes with confluent-kafka: ``consume(1000)``,
  one model call, produce each label, ``flush``, synchronous commit;
- ``quix``: a Quix Streams application as its docs write one (a StreamingDataFrame
  whose ``apply`` calls ``Predictor.predict`` on each message, ``to_topic``), on
  ``--quix`` messages (``pip install -e '.[bench]'``);
- ``naive``: poll one, label one, produce one, flush, commit (on ``--naive`` messages);
- ``kafka-floor``: not a labeler but the least CPU any labeler on these clients spends: the
  labeler's consumer and producer settings, ``consume(max_batch)``, one ``produce`` per
  message of a label whose bytes were built before the clock started (the cluster from
  the check's table), an asynchronous commit per batch, no decoding, no model, no wait
  for acknowledgements until the end. What a label costs above it plus the model step
  (``--stages``) is stream-dec's own work.

Each peer is timed from its first label to its last committed offset: labels/s and the
process's CPU seconds per label (Python plus librdkafka threads). Every run is checked:
labels = distinct source offsets = committed offsets = N, and the clusters equal
``Predictor.predict`` on the same rows (or, on a near tie, a cluster within 1e-5 of the
top soft assignment: a peer labelling one row at a time sums in another order). Prints each round, then per peer the median
labels/s and CPU per label, and the paired per-round ratios (labeler / peer, median).

Run from the repository root::

    python benchmarks/peers.py                      # 100,000 x 768-d float32, 3 rounds
    python benchmarks/peers.py --format json --dim 384
    python benchmarks/peers.py --stages             # where the labeler's CPU goes, per stage
    python benchmarks/peers.py --window full        # the reservoir of a service past its first version
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import logging
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
import orjson
import redis
import torch
from confluent_kafka import Consumer, Producer, TopicPartition

from labeler_throughput import FORMATS, default_model, load, produce_all, service_config, start_broker
from stream_dec.config import config_from_mapping
from stream_dec.local import free_port, redis_binary, wait_for_port
from stream_dec.model import ModelVersion
from stream_dec.model.predictor import Predictor
from stream_dec.stream.kafka import consumer_settings, ensure_topics, producer_settings
from stream_dec.stream.labeler import build_labeler
from stream_dec.stream.reservoir import Reservoir


def spread_model(dim: int, X: np.ndarray) -> ModelVersion:
    """The default shape (untrained: labelling costs the same), its 24 centres at the codes of 24
    backlog rows, so that labels vary and checking them against Predictor means something."""
    model = default_model(dim).to_model()
    rows = np.random.default_rng(0).choice(len(X), model.n_clusters, replace=False)
    with torch.no_grad():
        model.centres.copy_(model.encode(torch.from_numpy(np.ascontiguousarray(X[rows], dtype=np.float32))))
    return ModelVersion.from_model(model, version=1)


def decode(value: bytes, content_type: str) -> np.ndarray:
    if content_type == FORMATS["float32"]:
        return np.frombuffer(value, "<f4")
    return np.asarray(orjson.loads(value)["embedding"], dtype=np.float32)


def label_value(message, cluster: int, confidence: float) -> bytes:
    return orjson.dumps({"id": message.key().decode(), "cluster": cluster, "confidence": confidence,
                         "source": {"topic": message.topic(), "partition": message.partition(),
                                    "offset": message.offset()}})


def clients(config, version, linger_ms: int) -> tuple[Predictor, Consumer, Producer]:
    """A hand-written peer's model and clients: librdkafka's defaults, as a user would start."""
    consumer = Consumer({"bootstrap.servers": config.kafka["bootstrap.servers"], "group.id": config.labeler.group_id,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([config.topics.embeddings])
    producer = Producer({"bootstrap.servers": config.kafka["bootstrap.servers"], "linger.ms": linger_ms})
    return Predictor(version, "cpu"), consumer, producer


def batch_loop(config, version, n: int, marks: list) -> None:
    """What a user writes by hand: consume a batch, one model call, produce, flush, commit."""
    predictor, consumer, producer = clients(config, version, linger_ms=5)
    done = 0
    while done < n:
        messages = [m for m in consumer.consume(1000, 1.0) if not m.error()]
        if not messages:
            continue
        marks.append(mark()) if not marks else None
        X = np.stack([decode(m.value(), config.labeler.content_type) for m in messages])
        clusters, confidence = predictor.predict(X)
        for m, cluster, conf in zip(messages, clusters.tolist(), confidence.tolist()):
            producer.produce(config.topics.labels, label_value(m, cluster, conf), m.key())
        producer.flush()
        consumer.commit(asynchronous=False)
        done += len(messages)
    marks.append(mark())
    consumer.close()


def kafka_floor(config, version, n: int, marks: list, clusters: dict[tuple[int, int], int]) -> None:
    """The Kafka clients' part of a label alone (see the module docstring); ``clusters``
    maps (partition, offset) to the label's cluster."""
    consumer, producer = Consumer(consumer_settings(config)), Producer(producer_settings(config))
    consumer.subscribe([config.topics.embeddings])
    topic = config.topics.embeddings
    labels = {key: orjson.dumps({"id": f"{key[0]}-{key[1]}", "cluster": cluster, "confidence": 0.5, "version": 1,
                                 "source": {"topic": topic, "partition": key[0], "offset": key[1]}})
              for key, cluster in clusters.items()}
    produce, done, last = producer.produce, 0, {}
    while done < n:
        messages = [m for m in consumer.consume(config.labeler.max_batch, config.labeler.max_wait_ms / 1000)
                    if not m.error()]
        if not messages:
            continue
        marks.append(mark()) if not marks else None
        for m in messages:
            key = last[m.partition()] = m.partition(), m.offset()
            produce(config.topics.labels, labels[key], m.key())
        producer.poll(0)
        consumer.commit(offsets=[TopicPartition(topic, p, o + 1) for p, o in last.values()], asynchronous=True)
        done += len(messages)
    producer.flush()
    consumer.commit(offsets=[TopicPartition(topic, p, o + 1) for p, o in last.values()], asynchronous=False)
    marks.append(mark())
    consumer.close()


def naive(config, version, n: int, marks: list) -> None:
    """Per message: poll one, label one, produce one, flush, commit."""
    predictor, consumer, producer = clients(config, version, linger_ms=0)
    done = 0
    while done < n:
        m = consumer.poll(1.0)
        if m is None or m.error():
            continue
        marks.append(mark()) if not marks else None
        cluster, confidence = predictor.predict(decode(m.value(), config.labeler.content_type)[None])
        producer.produce(config.topics.labels, label_value(m, int(cluster[0]), float(confidence[0])), m.key())
        producer.flush()
        consumer.commit(m, asynchronous=False)
        done += 1
    marks.append(mark())
    consumer.close()


def quix(config, version, n: int, marks: list) -> None:
    """A Quix Streams application as its docs write one: a StreamingDataFrame that labels each
    message with stream-dec's Predictor and sends the label to the output topic."""
    from quixstreams import Application

    predictor = Predictor(version, "cpu")
    app = Application(broker_address=config.kafka["bootstrap.servers"], consumer_group=config.labeler.group_id,
                      auto_offset_reset="earliest", loglevel="WARNING", auto_create_topics=False)
    source = app.topic(config.topics.embeddings, key_deserializer="bytes", value_deserializer="bytes")
    labels = app.topic(config.topics.labels, key_serializer="bytes", value_serializer="bytes")
    content_type = config.labeler.content_type

    def label(value: bytes, key: bytes, timestamp: int, headers) -> bytes:
        marks.append(mark()) if not marks else None
        cluster, confidence = predictor.predict(decode(value, content_type)[None])
        meta = message_context()
        return orjson.dumps({"id": key.decode(), "cluster": int(cluster[0]), "confidence": float(confidence[0]),
                             "source": {"topic": meta.topic, "partition": meta.partition, "offset": meta.offset}})

    from quixstreams import message_context

    sdf = app.dataframe(source).apply(label, metadata=True)
    sdf.to_topic(labels)
    app.run(count=n, collect=False)
    marks.append(mark())


def labeler(config, version, n: int, marks: list, instrument: Callable | None = None,
            window: np.ndarray | None = None) -> None:
    """stream-dec's labeler, default settings, the reservoir on; ``instrument(labeler)`` runs
    before it starts. ``window``: rows that fill the reservoir's window first, cycled as an
    updater past its first version does (staging then keeps what the next cycle takes),
    instead of a new deployment's empty reservoir."""
    client = redis.Redis.from_url(config.redis.url)
    reservoir = Reservoir(client, f"peers-{uuid.uuid4().hex[:8]}", config.reservoir.capacity,
                          precision=config.reservoir.sample_precision)
    if window is not None:
        rng = np.random.default_rng(0)
        reservoir.offer([f"w{i}" for i in range(len(window))], window, time.time(), rng)
        reservoir.cycle(1.0, rng, next_fraction=config.reservoir.replace_fraction)
    received = client.info("stats")["total_net_input_bytes"]
    redis_cpu = redis_cpu_seconds(client)
    running = build_labeler(config, Predictor(version, "cpu", config.labeler.precision),
                            Consumer(consumer_settings(config)), Producer(producer_settings(config)), reservoir=reservoir)
    if instrument is not None:
        instrument(running)
    original = running.process

    def timed(messages):  # the clock starts at the first batch consumed
        if messages and not marks:
            marks.append(mark())
        original(messages)

    running.process = timed
    thread = threading.Thread(target=running.run)
    thread.start()
    while running.metrics.labels._value.get() < n:  # counted when acknowledged, then committed at once
        time.sleep(0.001)
    if running.sampler is not None:  # what the writer still holds is part of the run: write it
        running.sampler.flush()
    marks.append(mark())
    running.stop.set()  # commits synchronously what is left, leaves the group
    thread.join()
    offered, skipped = (int(c._value.get()) for c in (running.metrics.samples_offered, running.metrics.samples_skipped))
    if offered or skipped:  # the reservoir writer skips a batch it has no room for: say how many
        received = client.info("stats")["total_net_input_bytes"] - received
        print(f"    reservoir: {offered:,} samples offered to Redis, {skipped:,} skipped; Redis received "
              f"{received / 2**20:,.1f} MiB and used {redis_cpu_seconds(client) - redis_cpu:.2f} CPU-s", flush=True)


def start_redis() -> tuple[subprocess.Popen, int]:
    """A redis-server of its own, nothing persisted, on a free port: (process, port)."""
    port = free_port()
    process = subprocess.Popen([redis_binary(), "--port", str(port), "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process, port


def embeddings(dim: int) -> np.ndarray:
    """The backlog's rows: wordnet's 384-d embeddings, else two side by side, cut to ``dim``."""
    words, _ = load("wordnet", None)
    return words if dim == 384 else np.concatenate([words, np.roll(words, 1, axis=0)], axis=1)[:, :dim]


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (user + system)."""
    cpu = client.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def stages(config, version, n: int, window: np.ndarray | None = None) -> None:
    """One :func:`labeler` run with a thread-CPU timer around each stage: the CPU
    microseconds per label of the labeler's thread in each (the model step's of the model
    thread, where it runs), of that thread in all, and of the whole process (librdkafka's
    threads, the model thread and the reservoir writer's too)."""
    import stream_dec.stream.labeler as module
    import stream_dec.stream.reservoir as reservoir_module
    import stream_dec.stream.sampling as sampling

    spent: collections.Counter = collections.Counter()

    def timed(name, function):
        def run(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - started
        return run

    def instrument(running) -> None:
        spent.clear()  # what filled the window before the labeler started is not its cost
        running.predictor.predict = timed("model (Predictor.predict)", running.predictor.predict)
        running.run = timed("labeler thread, all", running.run)
        for name in ("_labels", "_deliver_and_commit", "settle"):  # labels' bytes; produce; commit
            setattr(running, name, timed(name, getattr(running, name)))
        if running.sampler is not None:  # the local sample in the labeler's thread; writes in the writer's
            running.sampler.submit = timed("reservoir: submit (local sample)", running.sampler.submit)
            running.sampler.reservoir.write = timed("reservoir writer thread: write", running.sampler.reservoir.write)

    patched = [(module, "input_messages", "input_messages"), (module, "decode_batch", "decode_batch"),
               (sampling, "winners", "reservoir: Algorithm R's draws (winners, in submit)"),
               (reservoir_module, "pack_many", "reservoir writer thread: pack_many (in write)")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]
    for owner, name, label in patched:
        setattr(owner, name, timed(label, getattr(owner, name)))
    marks: list = []
    try:
        labeler(config, version, n, marks, instrument, window)
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)
    spent["process, all threads"] = marks[-1][1] - marks[0][1]
    print(f"sample_rate {config.reservoir.sample_rate:g}:\n| stage | CPU us per label |\n|---|---|")
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds / n * 1e6:.1f} |")


def variant(section: str, **changes) -> Callable:
    """The :func:`labeler` peer with fields of ``[section]`` changed: what one setting costs."""
    def run(config, version, n: int, marks: list, window: np.ndarray | None = None) -> None:
        changed = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})
        labeler(changed, version, n, marks, window=window)
    return run


def fresh(backlog, name: str):
    """``backlog``'s config with its own consumer group, labels and dead-letter topics (created):
    a run that reads the backlog from its start."""
    suffix = uuid.uuid4().hex[:8]
    config = dataclasses.replace(
        backlog, topics=dataclasses.replace(backlog.topics, labels=f"lab-{suffix}", dead_letters=f"dlq-{suffix}"),
        labeler=dataclasses.replace(backlog.labeler, group_id=f"{name}-{suffix}"))
    ensure_topics(config)
    return config


def mark() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def committed_total(config) -> int:
    consumer = Consumer({"bootstrap.servers": config.kafka["bootstrap.servers"], "group.id": config.labeler.group_id})
    offsets = consumer.committed([TopicPartition(config.topics.embeddings, p) for p in range(3)], timeout=10)
    consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)


def check(config, n: int, expected: dict[tuple[int, int], set[int]]) -> None:
    """Labels = distinct source offsets = committed = n, and every cluster one Predictor gives."""
    consumer = Consumer({"bootstrap.servers": config.kafka["bootstrap.servers"], "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([config.topics.labels])
    seen: dict[tuple[int, int], int] = {}
    deadline = time.monotonic() + 120
    while len(seen) < n and time.monotonic() < deadline:
        for m in consumer.consume(10_000, 0.5):
            if not m.error():
                label = orjson.loads(m.value())
                seen[(label["source"]["partition"], label["source"]["offset"])] = label["cluster"]
    consumer.close()
    assert len(seen) == n, f"{len(seen)} distinct source offsets labelled, expected {n}"
    assert committed_total(config) == n, f"committed {committed_total(config)}, expected {n}"
    wrong = sum(cluster not in expected[key] for key, cluster in seen.items())
    assert not wrong, f"{wrong} labels differ from Predictor.predict"
    assert len(set(seen.values())) > 1, "every label is the same: the check would prove nothing"


def expected_clusters(bootstrap: str, topic: str, content_type: str, version,
                      n: int) -> dict[tuple[int, int], set[int]]:
    """The clusters ``Predictor.predict`` may give each backlog row, keyed by (partition,
    offset): its argmax, and any cluster within float32 noise of it (a peer that labels one
    row at a time sums in another order, and a near tie can fall either way)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    rows: dict[tuple[int, int], np.ndarray] = {}
    while len(rows) < n:
        for m in consumer.consume(10_000, 0.5):
            if not m.error():
                rows[(m.partition(), m.offset())] = decode(m.value(), content_type)
    consumer.close()
    keys = list(rows)
    X = np.stack([rows[k] for k in keys])
    clusters, _ = Predictor(version, "cpu").predict(X)
    q = version.to_model().soft_assign(X).numpy()
    near = q >= q.max(axis=1, keepdims=True) - 1e-5
    return {key: {cluster, *np.flatnonzero(row).tolist()} for key, cluster, row in zip(keys, clusters.tolist(), near)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=3_000, help="messages the naive loop labels")
    parser.add_argument("--quix", type=int, default=20_000, help="messages the Quix Streams app labels")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--format", choices=list(FORMATS), default="float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=19393)
    parser.add_argument("--stages", action="store_true",
                        help="instead of the peers: two labeler runs (the reservoir on, then sample_rate 0) "
                             "with CPU timers around its stages")
    parser.add_argument("--window", choices=["empty", "full"], default="empty",
                        help="the reservoir the labeler starts with: a new deployment's (empty) or a service's "
                             "past its first version (full: staging keeps what the next cycle takes)")
    parser.add_argument("--peers", default="labeler,labeler-unsampled,batch-loop,quix,naive",
                        help="comma-separated peers, run in this order in each round (default: %(default)s; the "
                             "module docstring lists the others); 'labeler' always runs, first unless listed: the "
                             "ratios need it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # [labeler] threads' default; the broker and the clients need the other core
    bootstrap, content_type = f"127.0.0.1:{args.port}", FORMATS[args.format]
    broker = start_broker(args.port)
    redis_server, redis_port = start_redis()
    try:
        X = embeddings(args.dim)
        base = service_config(bootstrap, content_type, as_mapping=True)
        base["redis"] = {"url": f"redis://127.0.0.1:{redis_port}/0"}
        base["labeler"] = {k: v for k, v in base["labeler"].items() if k in ("group_id", "content_type", "device")}
        backlog = config_from_mapping(base, source="peers")
        ensure_topics(backlog)
        produce_all(bootstrap, backlog.topics.embeddings, X, args.messages, content_type)
        version = spread_model(args.dim, X)
        expected = expected_clusters(bootstrap, backlog.topics.embeddings, content_type, version, args.messages)
        window = X[:backlog.reservoir.capacity] if args.window == "full" else None
        print(f"{args.messages:,} x {args.dim}-d {args.format} in 3 partitions; labeler settings: "
              f"{dataclasses.asdict(backlog.labeler) | {'sample_rate': backlog.reservoir.sample_rate}}; "
              f"reservoir window {args.window}")
        if args.stages:
            for rate in (backlog.reservoir.sample_rate, 0.0):
                config = fresh(backlog, "stages")
                stages(dataclasses.replace(config, reservoir=dataclasses.replace(config.reservoir, sample_rate=rate)),
                       version, args.messages, window)
            return
        def windowed(section: str, **changes) -> tuple[Callable, int]:
            """The labeler with ``changes`` to ``[section]``, on the chosen window."""
            return functools.partial(variant(section, **changes), window=window), args.messages

        peers = {"labeler": (functools.partial(labeler, window=window), args.messages),
                 "labeler-unsampled": (variant("reservoir", sample_rate=0.0), args.messages),
                 "labeler-float32": windowed("labeler", precision="float32"),
                 "labeler-samples-float32": windowed("reservoir", sample_precision="float32"),
                 "labeler-each-batch": windowed("reservoir", write_interval_ms=0),
                 "labeler-write-5s": windowed("reservoir", write_interval_ms=5000),
                 "labeler-model-thread": windowed("labeler", model_thread=True),
                 "batch-loop": (batch_loop, args.messages),
                 "quix": (quix, args.quix), "naive": (naive, args.naive),
                 "kafka-floor": (functools.partial(kafka_floor, clusters={key: min(c) for key, c in expected.items()}),
                                 args.messages)}
        chosen = args.peers.split(",")
        order = ([] if "labeler" in chosen else ["labeler"]) + chosen  # each round runs them in this order
        peers = {name: peers[name] for name in order}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in peers}
        for round_ in range(1, args.rounds + 1):
            for name, (run, n) in peers.items():
                config = fresh(backlog, name)
                marks: list[tuple[float, float]] = []
                run(config, version, n, marks)
                (wall0, cpu0), (wall1, cpu1) = marks[0], marks[-1]
                check(config, n, expected)
                results[name].append((n / (wall1 - wall0), (cpu1 - cpu0) / n * 1e6))
                print(f"round {round_} {name:10} {results[name][-1][0]:9,.0f} labels/s "
                      f"{results[name][-1][1]:6.1f} us CPU per label (checked)", flush=True)
        print("| peer | labels/s (median) | CPU us per label (median) | labeler / peer, paired per round (median, range) |")
        print("|---|---|---|---|")
        ours = [rate for rate, _ in results["labeler"]]
        for name, runs in results.items():
            ratios = [a / b for a, (b, _) in zip(ours, runs)]
            print(f"| {name} | {statistics.median(r for r, _ in runs):,.0f} | "
                  f"{statistics.median(c for _, c in runs):.1f} | "
                  f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")
    finally:
        broker.terminate()
        redis_server.terminate()


if __name__ == "__main__":
    main()
