"""The real-time labeler: consume -> decode -> label -> produce -> commit.

One :class:`Labeler` is one member of the labelers' consumer group. Each batch goes
through :meth:`Labeler.process`:

1. consume up to ``max_batch`` messages, waiting at most ``max_wait_ms``;
2. decode them into one float32 array; undecodable ones become dead letters;
3. label the array with the current model version (one model call per batch);
4. produce the labels (keyed by the input key) and the dead letters, without waiting;
5. commit, oldest batch first: once the broker has acknowledged every record of a
   batch (failures are produced again, never dropped), add its samples to the
   reservoir writer's local sample (:class:`~stream_dec.stream.reservoir.SampleWriter`:
   a thread of its own writes it to Redis once a ``write_interval_ms``, so writing
   never holds labels) and commit each partition's last offset + 1. Up to ``max_in_flight``
   batches wait for their acknowledgement while the next ones are labelled; one more
   and the labeler waits for the oldest. In ``exactly-once`` mode steps 4-5 are one
   producer transaction carrying the offsets instead.

With ``model_thread`` (at-least-once mode only) step 3 runs on a thread of its
own: while it labels one batch, the labeler's thread produces the batch before and
consumes and decodes the one after (without waiting for more messages while a batch is
being labelled), since torch releases the GIL while it multiplies. Batches are still
produced in order, each with the version that labelled it.

Cold start: a labeler started before any model version exists (``predictor=None``)
only samples each batch into the reservoir, producing and committing nothing, and
remembers the first offset it saw per partition. When version 1 arrives on the
versions topic it seeks back there and labels everything, so the updater can train
the first model from the stream itself and no input goes unlabelled.

A rebalance (whose callbacks run inside ``consume``) first finishes the batch being
labelled, then waits for every batch in flight and commits it, so the revoked
partitions' work is committed before they move; stopping does the same. A crash
before a batch is committed repeats its labels (at most ``max_in_flight`` batches) on
restart but never skips an input; consumers dedupe by the ``(topic, partition,
offset)`` every label carries. Each input is offered to the reservoir once: not again
when a cold start seeks back, nor for a retried transaction.

A label or dead letter too large for the broker becomes a smaller dead letter
(:func:`smaller_record`); a permanent produce error
(:class:`~stream_dec.stream.kafka.DeliveryFailed`: authorisation, a missing topic)
stops the labeler at once with that error, committing nothing past the last delivered
batch, so a fixed deployment resumes where it stopped.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import orjson
import torch
from confluent_kafka import (TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException, Message, Producer,
                             TopicPartition)

from stream_dec.config import Config, LabelerConfig, TopicsConfig
from stream_dec.io.wire import (DecodedBatch, InputLimits, InputMessage, Rejection, columns, decode_batch,
                                encode_labels)
from stream_dec.model.predictor import Predictor
from stream_dec.stream.kafka import Backoff, Delivery, DeliveryFailed, Record, Ticket, classify
from stream_dec.stream.observability import LabelerMetrics, StatsLine
from stream_dec.stream.reservoir import Reservoir, SampleWriter
from stream_dec.stream.versions import VersionFollower

log = logging.getLogger("stream_dec.labeler")
SLOW_BROKER_S = 1.0
"""A commit or an acknowledgement that takes longer than this is logged (the broker is slow, down or paused)."""
GIL_SWITCH_S = 0.0002
"""The interpreter's switch interval while a model thread runs (``sys.setswitchinterval``;
Python's default is 0.005). Each torch operation of the model step releases the GIL and
takes it back; at the default the model thread waited up to 5 ms for it each time while
the labeler's thread ran Python, which made the model step several times slower."""


DETAIL_BYTES = 1024
"""Longest ``error-detail`` or ``content-type`` header of a dead letter (both may quote producer input)."""


def transactional_id(settings: LabelerConfig) -> str:
    """The exactly-once producer's ``transactional.id``: ``<group_id>-<instance_id or host name>``.

    Stable across restarts of one replica and unique across replicas (it was
    ``<group_id>-<PID>``: PID 1 in every container, so replicas fenced each other).
    """
    return f"{settings.group_id}-{settings.instance_id or socket.gethostname()}"


def input_limits(settings: LabelerConfig) -> InputLimits:
    """``[labeler]``'s limits on what a producer controls."""
    return InputLimits(value_bytes=settings.max_message_bytes, key_bytes=settings.max_key_bytes,
                       header_bytes=settings.max_header_bytes, id_bytes=settings.max_id_bytes)


def input_messages(messages: list[Message], _new=tuple.__new__) -> list[InputMessage]:
    """The parts of each consumed message the decoder needs; consumer errors are logged and left out.

    A producer's messages usually carry equal headers, so they are parsed
    (:func:`header_fields`) once per run of messages whose headers are equal. Each
    InputMessage is built with ``tuple.__new__``: a NamedTuple's own constructor is a
    Python function, the largest per-message cost of a batch after the model.
    """
    inputs: list[InputMessage] = []
    headers, fields = None, header_fields(None)
    for message in messages:
        if message.error():
            log.warning("consumer error: %s", message.error())
            continue
        if (current := message.headers()) != headers:
            headers, fields = current, header_fields(current)
        inputs.append(_new(InputMessage, (message.topic(), message.partition(), message.offset(), message.key(),
                                          message.value(), *fields)))
    return inputs


def input_age(messages: list[Message], now: float) -> float | None:
    """Seconds from the Kafka timestamp of the batch's last message to ``now`` (at least 0),
    or None when it has none: how long inputs waited before the labeler consumed them. The
    timestamp is the producer's clock (CreateTime) unless the topic uses LogAppendTime.

    >>> from confluent_kafka import TIMESTAMP_CREATE_TIME
    >>> input_age([Message(topic="t", value=b"v", timestamp=(TIMESTAMP_CREATE_TIME, 9_500))], now=10.0)
    0.5
    """
    for message in reversed(messages):
        if not message.error():
            kind, milliseconds = message.timestamp()
            return None if kind == TIMESTAMP_NOT_AVAILABLE else max(0.0, now - milliseconds / 1000)
    return None


def header_fields(headers: list[tuple[str, bytes | None]] | None) -> tuple[str | None, int]:
    """A message's content-type (the last such header, any case) and the size of its headers.

    >>> header_fields([("Content-Type", b"application/json"), ("trace", None)])
    ('application/json', 33)
    >>> header_fields(None)
    (None, 0)
    """
    content_type, size = None, 0
    for name, value in headers or ():
        size += len(name) + len(value or b"")
        if name.lower() == "content-type":
            content_type = (value or b"").decode("utf-8", errors="replace")
    return content_type, size


def dead_letter(rejection: Rejection, topic: str, max_bytes: int, max_key_bytes: int = 4096) -> Record:
    """The dead-letter record: original key and bytes, headers naming the error.

    The value is cut past ``max_bytes`` and the key past ``max_key_bytes`` (headers
    ``truncated-from-bytes`` and ``key-truncated-from-bytes`` give the original sizes);
    the full message stays in the source topic at the offset the headers name.
    """
    message = rejection.message
    value, key = message.value or b"", message.key
    headers = [
        ("error", rejection.reason.encode()),
        ("error-detail", rejection.detail.encode("utf-8", errors="replace")[:DETAIL_BYTES]),
        *source_headers(message.topic, message.partition, message.offset),
    ]
    if message.content_type is not None:
        headers.append(("content-type", message.content_type.encode("utf-8", errors="replace")[:DETAIL_BYTES]))
    if len(value) > max_bytes:
        headers.append(("truncated-from-bytes", str(len(value)).encode()))
        value = value[:max_bytes]
    if key is not None and len(key) > max_key_bytes:
        headers.append(("key-truncated-from-bytes", str(len(key)).encode()))
        key = key[:max_key_bytes]
    return Record(topic, key, value, headers)


def source_headers(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The headers of a dead letter that name its input."""
    return [("source-topic", topic.encode()), ("source-partition", str(partition).encode()),
            ("source-offset", str(offset).encode())]


def smaller_record(record: Record, dead_letters: str) -> Record | None:
    """A smaller stand-in for a record the producer or broker refused as too large.

    A label becomes a dead letter ``label-too-large`` without key or value, naming its
    input (still in the source topic); a dead letter loses half its value, then its key.
    None once nothing is left to cut.

    >>> from stream_dec.io.wire import encode_label
    >>> label = Record("labels", b"k" * 10, encode_label("k", 1, 0.5, 1, "emb", 0, 7))
    >>> dead = smaller_record(label, "dlq")
    >>> dead.topic, dead.key, dead.value, dict(dead.headers)["error"], dict(dead.headers)["source-offset"]
    ('dlq', None, b'', b'label-too-large', b'7')
    >>> smaller_record(dead, "dlq") is None
    True
    """
    size = len(record.key or b"") + len(record.value)
    if record.topic != dead_letters:
        source = orjson.loads(record.value)["source"]
        headers = [("error", b"label-too-large"),
                   ("error-detail", f"the label ({size} bytes of key and value) is larger than the broker accepts; "
                                    f"the input is at its source offset".encode()),
                   *source_headers(source["topic"], source["partition"], source["offset"])]
        return Record(dead_letters, None, b"", headers)
    headers = list(record.headers or ())
    names = {name for name, _ in headers}
    if record.value:
        if "truncated-from-bytes" not in names:
            headers.append(("truncated-from-bytes", str(len(record.value)).encode()))
        return Record(record.topic, record.key, record.value[:len(record.value) // 2], headers)
    if record.key:
        if "key-truncated-from-bytes" not in names:
            headers.append(("key-truncated-from-bytes", str(len(record.key)).encode()))
        return Record(record.topic, None, b"", headers)
    return None


def offset_ranges(messages: list[InputMessage]) -> dict[tuple[str, int], tuple[int, int]]:
    """Per (topic, partition), the first and last offset in ``messages``, in any order.

    Computed a column at a time (numpy), not message by message.

    >>> offset_ranges([InputMessage("t", 1, 9, None, b"", None), InputMessage("t", 0, 4, None, b"", None),
    ...                InputMessage("t", 1, 7, None, b"", None)])
    {('t', 0): (4, 4), ('t', 1): (7, 9)}
    """
    if not messages:
        return {}
    topics, partitions, offsets = columns(messages, "topic", "partition", "offset")
    names = sorted(set(topics))
    which = np.fromiter(partitions, np.int64, len(partitions))
    if len(names) > 1:  # topic number and partition in one int64
        number = {name: i for i, name in enumerate(names)}
        which |= np.fromiter(map(number.__getitem__, topics), np.int64, len(topics)) << 32
    offsets = np.fromiter(offsets, np.int64, len(offsets))
    ranges = {}
    for code in np.unique(which).tolist():
        within = offsets[which == code]
        ranges[(names[code >> 32], code & 0xFFFFFFFF)] = (int(within.min()), int(within.max()))
    return ranges


def next_offsets(messages: list[InputMessage]) -> list[TopicPartition]:
    """Per partition, the offset to commit after ``messages``: the highest offset + 1."""
    return [TopicPartition(t, p, last + 1) for (t, p), (_, last) in offset_ranges(messages).items()]


def latest_offsets(batches: list[list[TopicPartition]]) -> list[TopicPartition]:
    """Per partition, the highest of the offsets to commit after several batches.

    >>> [(tp.partition, tp.offset) for tp in latest_offsets([[TopicPartition("t", 0, 5)],
    ...                                                      [TopicPartition("t", 0, 9), TopicPartition("t", 1, 2)]])]
    [(0, 9), (1, 2)]
    """
    latest: dict[tuple[str, int], int] = {}
    for offsets in batches:
        for tp in offsets:
            latest[(tp.topic, tp.partition)] = max(tp.offset, latest.get((tp.topic, tp.partition), tp.offset))
    return [TopicPartition(t, p, offset) for (t, p), offset in latest.items()]


def commit_callback(metrics: LabelerMetrics) -> Callable[[KafkaError | None, list[TopicPartition]], None]:
    """The consumer's ``on_commit`` callback: log and count each commit the broker refused.

    An asynchronous commit's failure arrives only here; the inputs it covered are labelled
    again after a restart or rebalance unless a later commit covers them.
    """
    def committed(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        failed = [p for p in partitions or () if p.error is not None]
        if error is None and not failed:
            return
        metrics.commit_failures.inc()
        detail = error or "; ".join(f"{p.topic}[{p.partition}]@{p.offset}: {p.error}" for p in failed)
        log.warning("commit failed (%s): these inputs will be labelled again after a restart or rebalance unless a "
                    "later commit covers them", detail)
    return committed


class Labelling(NamedTuple):
    """A decoded batch whose model step may still be running (on the model thread)."""

    started: float  # time.perf_counter() when consumed
    age: float | None  # its inputs' age when consumed (:func:`input_age`)
    inputs: list[InputMessage]
    batch: DecodedBatch
    version: int  # of the model that labels it
    result: Future  # (clusters, confidence)


class InFlight(NamedTuple):
    """A labelled batch whose records are on their way to the broker."""

    ticket: Ticket
    offsets: list[TopicPartition]
    ids: list[str]  # of the rows the reservoir has not been offered yet
    X: np.ndarray
    texts: list[str | None] | None
    sent: float  # time.monotonic() when produced


def _abortable(error: KafkaError | str) -> bool:
    """Whether a failed transaction may be aborted and its batch tried again (else the error is permanent)."""
    if not isinstance(error, KafkaError) or error.fatal():
        return False
    return error.retriable() or error.txn_requires_abort() or classify(error) != "permanent"


def first_offsets(messages: list[InputMessage]) -> list[TopicPartition]:
    """Per partition, the offset to seek back to in order to re-process ``messages``."""
    return [TopicPartition(t, p, first) for (t, p), (first, _) in offset_ranges(messages).items()]


class Labeler:
    """One labeler process; see the module docstring for the batch path.

    Parameters
    ----------
    settings
        Its ``[labeler]`` section.
    topics
        The topics it reads and writes (``[topics]``).
    predictor
        The model version to label with.
    consumer, producer
        confluent-kafka clients built from :func:`~stream_dec.stream.kafka.consumer_settings`
        and :func:`~stream_dec.stream.kafka.producer_settings`.
    metrics
        Prometheus collectors (a fresh set by default).
    follower
        Reads the versions topic; a newer valid version replaces the predictor between
        batches (no batch mixes versions).
    reservoir, sample_rate, write_interval_s
        Receives a ``sample_rate`` share of each batch after delivery, before commit,
        written to Redis once every ``write_interval_s`` (:class:`SampleWriter`). Redis
        being down only counts samples as skipped: labels keep flowing.

    :func:`build_labeler` wires one from a whole config.
    """

    def __init__(self, settings: LabelerConfig, topics: TopicsConfig, predictor: Predictor | None,
                 consumer: Consumer, producer: Producer, metrics: LabelerMetrics | None = None,
                 follower: VersionFollower | None = None, reservoir: Reservoir | None = None,
                 sample_rate: float = 1.0, write_interval_s: float = 1.0) -> None:
        self.settings, self.topics, self.sample_rate = settings, topics, sample_rate
        self.predictor = predictor
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics or LabelerMetrics()
        self.stop = threading.Event()
        self.limits = input_limits(self.settings)
        self.backoff = Backoff(self.settings.retry_backoff_ms, self.settings.retry_backoff_max_ms)
        self.delivery = Delivery(producer, self.backoff,
                                 shrink=lambda record: smaller_record(record, topics.dead_letters))
        self.stats = StatsLine(self.settings.log_interval_s)
        self.transactional = self.settings.delivery == "exactly-once"
        self.follower, self.reservoir = follower, reservoir
        if predictor is None and (follower is None or reservoir is None or not self.settings.input_dim):
            raise ValueError("a labeler without a model (cold start) needs the versions topic, a reservoir "
                             "and [labeler] input_dim")
        self.metrics.model.show(predictor.header if predictor else None)
        self.in_flight: deque[InFlight] = deque()
        self.unlabelled_from: dict[tuple[str, int], int] = {}
        self.sampled_until: dict[tuple[str, int], int] = {}
        """Cold start: per partition, the offset after the last one already offered to the reservoir."""
        self.rng = np.random.default_rng()
        self.sampler = None if reservoir is None else SampleWriter(
            reservoir, self.metrics.samples_offered.inc, self.metrics.samples_skipped.inc, retry_s=self.backoff.max,
            write_interval_s=write_interval_s)
        # exactly-once labels one batch at a time: a failed transaction rewinds to its batch's offsets
        overlap = settings.model_thread and not self.transactional
        self.model_thread = ThreadPoolExecutor(1, "model", initializer=torch.set_num_threads,
                                               initargs=(settings.threads,)) if overlap else None
        self.labelling: Labelling | None = None
        """The batch consumed last, its model step perhaps still running; finished after the next is consumed."""

    def run(self) -> None:
        """Label until :attr:`stop` is set, then finish the batch in flight and leave the group.

        Raises :class:`~stream_dec.stream.kafka.DeliveryFailed` on a permanent produce
        error, after leaving the group without committing the batches in flight.

        Starting, it moves every object alive so far (the imported modules, the model:
        most of the process's heap) out of the garbage collector's reach (``gc.freeze``),
        so the full collections that a stream of batches sets off scan only what was
        made since; with a model thread it shortens the interpreter's switch interval
        (:data:`GIL_SWITCH_S`) until it stops. Both are process-wide.
        """
        gc.freeze()
        switch_interval = sys.getswitchinterval()
        if self.model_thread is not None:
            sys.setswitchinterval(GIL_SWITCH_S)
        if self.transactional:
            self.producer.init_transactions(30)
        self.consumer.subscribe([self.topics.embeddings], on_assign=self._assigned, on_revoke=self._revoked)
        if self.predictor is None:
            log.info("no model version yet: sampling %s into the reservoir until version 1 is published",
                     self.topics.embeddings)
        else:
            log.info("labeling %s with model version %d (%s, %s, delivery %s)", self.topics.embeddings,
                     self.predictor.version, self.predictor.device, self.predictor.precision, self.settings.delivery)
        try:
            while not self.stop.is_set():
                self.follow_versions()
                # while a batch is being labelled, take only what has already arrived
                wait = 0 if self.labelling else self.settings.max_wait_ms / 1000
                messages = self.consumer.consume(self.settings.max_batch, wait)
                if self.predictor:
                    self.process(messages)
                elif messages:
                    self.sample_only(messages)
                self.settle()
                if self.stats.due():
                    lag = self.lag()
                    if lag is not None:
                        self.metrics.lag.set(lag)
                    self.stats.emit(lag, self.predictor.version if self.predictor else 0)
            self.process([])
            self.settle(everything=True)
            self.producer.flush(30)
        except DeliveryFailed:
            self.in_flight.clear()  # nothing more is committed: a restart resumes at the last delivered batch
            self.producer.purge()
            raise
        finally:
            self.labelling = None  # left only by an error: not produced, so its inputs are labelled again
            if self.model_thread is not None:
                self.model_thread.shutdown(wait=False, cancel_futures=True)
                sys.setswitchinterval(switch_interval)
            self.consumer.close()  # leaves the group: partitions move at once
            if self.sampler is not None:
                self.sampler.close()  # writes the samples still waiting
            log.info("labeler stopped")

    def process(self, messages: list[Message]) -> None:
        """Decode ``messages`` and start their model step; then produce and commit the batch
        consumed before them (steps 2-5 of the module docstring), whose model step ran
        meanwhile on the model thread. An empty ``messages`` finishes that batch now.
        Without a model thread each batch is finished at once."""
        labelling = self._start(messages) if messages else None
        if self.labelling is not None:
            self._finish(self.labelling)
        if labelling is not None and self.model_thread is None:
            self._finish(labelling)
        else:
            self.labelling = labelling

    def _start(self, messages: list[Message]) -> Labelling | None:
        """Decode a batch and hand it to the model (on the model thread, or here without one)."""
        started = time.perf_counter()
        age = input_age(messages, time.time())
        if age is not None:
            self.metrics.input_age.observe(age)
        inputs = input_messages(messages)
        if not inputs:
            return None
        batch = decode_batch(inputs, dim=self.predictor.dim, default_content_type=self.settings.content_type,
                             limits=self.limits)
        if self.model_thread is not None:
            result = self.model_thread.submit(self.predictor.predict, batch.X)
        else:
            result = Future()
            result.set_result(self.predictor.predict(batch.X))
        return Labelling(started, age, inputs, batch, self.predictor.version, result)

    def _finish(self, labelling: Labelling) -> None:
        """Produce a batch's labels and dead letters once its model step is done; commit it once delivered."""
        started, age, inputs, batch, version, result = labelling
        clusters, confidence = result.result()
        labels = self._labels(inputs, batch.rows, batch.ids, clusters, confidence, version)
        records = [dead_letter(r, self.topics.dead_letters, self.settings.dead_letter_max_bytes,
                               self.settings.max_key_bytes) for r in batch.rejected]
        self._deliver_and_commit(records, labels, inputs, batch)
        self.metrics.labels.inc(len(batch.ids))
        for rejection in batch.rejected:
            self.metrics.dead_letters.labels(rejection.reason).inc()
        seconds = time.perf_counter() - started
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(seconds)
        self.stats.add(len(batch.ids), len(batch.rejected), seconds, age)

    def _labels(self, inputs, rows, ids, clusters, confidence, version: int) -> tuple[str, list, list[bytes]]:
        """The batch's labels as (topic, keys, values), keyed by their inputs' keys."""
        picked = inputs if len(rows) == len(inputs) else [inputs[row] for row in rows.tolist()]  # rows ascend
        topics, partitions, offsets, keys = columns(picked, "topic", "partition", "offset", "key")
        values = encode_labels(ids, clusters.tolist(), confidence.tolist(), version, topics, partitions, offsets)
        return self.topics.labels, keys, values

    def _deliver_and_commit(self, records: list[Record], labels: tuple[str, list, list[bytes]],
                            inputs: list[InputMessage], batch) -> None:
        ids, X, texts = self._not_yet_sampled(inputs, batch)
        if self.transactional:
            if self._transaction(records, labels, inputs):
                self.feed_reservoir(ids, X, texts)
            return
        self.in_flight.append(InFlight(self.delivery.submit(records, labels), next_offsets(inputs), ids, X, texts,
                                       time.monotonic()))  # settled by the run loop, right after this batch

    def _not_yet_sampled(self, inputs: list[InputMessage], batch) -> tuple[list[str], np.ndarray, list | None]:
        """The batch's rows (ids, vectors, texts) minus those offered to the reservoir during a cold start."""
        if not self.sampled_until:
            return batch.ids, batch.X, batch.texts
        fresh = [inputs[row].offset >= self.sampled_until.get((inputs[row].topic, inputs[row].partition), 0)
                 for row in batch.rows.tolist()]
        for m in inputs:  # a partition labelled past what was sampled needs no more checks
            if m.offset + 1 >= self.sampled_until.get((m.topic, m.partition), m.offset + 2):
                del self.sampled_until[(m.topic, m.partition)]
        texts = None if batch.texts is None else [t for t, keep in zip(batch.texts, fresh) if keep]
        return [i for i, keep in zip(batch.ids, fresh) if keep], batch.X[np.asarray(fresh, dtype=bool)], texts

    def settle(self, everything: bool = False) -> None:
        """Commit the batches, oldest first, whose every record the broker has acknowledged.

        With more than ``max_in_flight`` batches in flight, or the oldest unacknowledged for
        over ``SLOW_BROKER_S`` (the wait logs it), it waits for the oldest; ``everything``
        waits for all of them and commits synchronously (before a rebalance moves
        partitions, and on stop).
        """
        self.producer.poll(0)  # serve delivery reports
        full = len(self.in_flight) > self.settings.max_in_flight
        settled = []
        while self.in_flight:
            batch = self.in_flight[0]
            if not batch.ticket.done:
                slow = time.monotonic() - batch.sent > SLOW_BROKER_S
                if not (everything or ((full or slow) and not settled)):
                    break
                self.delivery.wait(batch.ticket)
            self.in_flight.popleft()
            self.feed_reservoir(batch.ids, batch.X, batch.texts)
            settled.append(batch.offsets)
        if settled:
            self._commit(latest_offsets(settled), asynchronous=not everything)

    def sample_only(self, messages: list[Message]) -> None:
        """Cold start: offer the batch to the reservoir; produce and commit nothing."""
        inputs = input_messages(messages)
        for m in inputs:
            self.unlabelled_from.setdefault((m.topic, m.partition), m.offset)
            self.sampled_until[(m.topic, m.partition)] = max(m.offset + 1,
                                                             self.sampled_until.get((m.topic, m.partition), 0))
        batch = decode_batch(inputs, dim=self.settings.input_dim, default_content_type=self.settings.content_type,
                             limits=self.limits)
        self.feed_reservoir(batch.ids, batch.X, batch.texts)

    def follow_versions(self) -> None:
        """Between batches: switch to a newer valid version from the versions topic, if any."""
        if self.follower is None:
            return
        current = self.predictor.version if self.predictor else 0
        newer = self.follower.poll(current, self.predictor.dim if self.predictor else self.settings.input_dim)
        if newer is None:
            return
        self.predictor = Predictor(newer, self.settings.device, self.settings.precision)
        self.metrics.model.show(newer.header)
        log.info("switched from model version %d to %d (%s)", current, newer.header.version, newer.header.strategy)
        for (topic, partition), offset in self.unlabelled_from.items():  # cold start over: label what was sampled
            self.consumer.seek(TopicPartition(topic, partition, offset))
        self.unlabelled_from.clear()

    def feed_reservoir(self, ids: list[str], X: np.ndarray, texts: list[str | None] | None = None) -> None:
        """Hand a ``sample_rate`` share of the batch (with its texts) to the reservoir writer; never
        waits for Redis while there are labels to make (a cold start waits: it only samples)."""
        if self.sampler is None or not ids:
            return
        rate = self.sample_rate
        if rate < 1:  # a share of the rows (copied); at 1, all of them as they are
            chosen = np.flatnonzero(self.rng.random(len(ids)) < rate)
            ids, X = [ids[i] for i in chosen], X[chosen]
            texts = None if texts is None else [texts[i] for i in chosen]
        if ids:
            self.sampler.submit(ids, X, texts, wait=self.predictor is None)

    def _commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        """Commit after delivery; retry retriable errors; a lost generation means re-delivery, not loss.

        An asynchronous commit that fails is covered by the next one (offsets only grow)
        and reported by :meth:`committed`; the synchronous one before a rebalance or stop
        is retried until it lands.
        """
        while True:
            try:
                started = time.monotonic()
                self.consumer.commit(offsets=offsets, asynchronous=asynchronous)
                elapsed = time.monotonic() - started
                if elapsed > SLOW_BROKER_S:  # a synchronous commit blocks silently
                    log.warning("the broker took %.1fs to acknowledge the commit; resuming", elapsed)
                self.backoff.reset()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable():
                    self.metrics.commit_failures.inc()
                    log.warning("commit failed (%s): these inputs will be labelled again after a restart or "
                                "rebalance", error)
                    return
                self.metrics.retries.labels("commit").inc()
                delay = self.backoff.next_delay()
                log.warning("commit failed (%s); retrying in %.1fs", error, delay)
                time.sleep(delay)

    def _transaction(self, records: list[Record], labels: tuple[str, list, list[bytes]],
                     inputs: list[InputMessage]) -> bool:
        """Labels and offsets in one transaction; True once committed.

        On a retriable failure: abort, wait the backoff and rewind to re-process the batch;
        on a permanent one (a fatal producer error, authorisation) raise
        :class:`~stream_dec.stream.kafka.DeliveryFailed`.
        """
        try:
            self.producer.begin_transaction()
            self.delivery.submit(records, labels)  # records too large for the producer: replaced by stand-ins
            self.producer.send_offsets_to_transaction(next_offsets(inputs),
                                                      self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(30)
            self.backoff.reset()
            return True
        except (KafkaException, DeliveryFailed) as exc:
            error = exc.error if isinstance(exc, DeliveryFailed) else exc.args[0]
            if not _abortable(error):
                raise exc if isinstance(exc, DeliveryFailed) else DeliveryFailed(self.topics.labels, error)
            delay = self.backoff.next_delay()
            log.warning("transaction failed (%s); aborting and re-processing the batch in %.1fs", error, delay)
            self.metrics.retries.labels("transaction").inc()
            self.producer.abort_transaction(30)
            time.sleep(delay)
            for partition in first_offsets(inputs):
                self.consumer.seek(partition)
            return False

    def lag(self) -> int | None:
        """Messages between each assigned partition's position and its end; None if unknown.

        Each partition counts at least 0: a broker whose high watermark is not a record
        count (Tansu's is the last batch's base offset + 1) reads behind a labeler that
        has consumed that whole batch, and the lag would go negative. There it is a lower
        bound, short by at most the records of each partition's last producer batch.
        """
        try:
            assigned = self.consumer.assignment()
            total = 0
            for tp, position in zip(assigned, self.consumer.position(assigned)):
                low, high = self.consumer.get_watermark_offsets(tp, timeout=1.0)
                total += max(0, high - (position.offset if position.offset >= 0 else low))
            return total
        except KafkaException as exc:
            log.warning("the broker did not answer the lag query (%s): down or paused? inputs wait, none are "
                        "dropped", exc.args[0])
            return None

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.process([])  # the batch being labelled is produced and committed too
        self.settle(everything=True)
        for p in partitions:  # their new owner starts from the committed offset
            self.unlabelled_from.pop((p.topic, p.partition), None)
            self.sampled_until.pop((p.topic, p.partition), None)
        log.info("revoked %s (their batches are already committed)",
                 ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))


def build_labeler(config: Config, predictor: Predictor | None, consumer: Consumer, producer: Producer,
                  metrics: LabelerMetrics | None = None, follower: VersionFollower | None = None,
                  reservoir: Reservoir | None = None) -> Labeler:
    """A :class:`Labeler` given the sections of ``config`` it uses (``[labeler]``, ``[topics]``, the
    reservoir's ``sample_rate`` and ``write_interval_ms``)."""
    return Labeler(config.labeler, config.topics, predictor, consumer, producer, metrics, follower, reservoir,
                   sample_rate=config.reservoir.sample_rate,
                   write_interval_s=config.reservoir.write_interval_ms / 1000)
