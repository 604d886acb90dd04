"""The real-time labeler: consume -> decode -> label -> produce -> commit.

One :class:`Labeler` is one member of the labelers' consumer group. Each batch goes
through :meth:`Labeler.process`:

1. consume up to ``max_batch`` messages, waiting at most ``max_wait_ms``;
2. decode them into one float32 array; undecodable ones become dead letters;
3. label the array with the current model version (one model call per batch);
4. produce the labels (keyed by the input key) and the dead letters, without waiting;
5. commit, oldest batch first: once the broker has acknowledged every record of a
   batch (failures are produced again, never dropped), offer its samples to the
   reservoir and commit each partition's last offset + 1. Up to ``max_in_flight``
   batches wait for their acknowledgement while the next ones are labelled; one more
   and the labeler waits for the oldest. In ``exactly-once`` mode steps 4-5 are one
   producer transaction carrying the offsets instead.

Cold start: a labeler started before any model version exists (``predictor=None``)
only samples each batch into the reservoir, producing and committing nothing, and
remembers the first offset it saw per partition. When version 1 arrives on the
versions topic it seeks back there and labels everything, so the updater can train
the first model from the stream itself and no input goes unlabelled.

A rebalance (whose callbacks run inside ``consume``) first waits for every batch in
flight and commits it, so the revoked partitions' work is committed before they move;
stopping does the same. A crash before a batch is committed repeats its labels (at most
``max_in_flight`` batches) on restart but never skips an input; consumers dedupe by the
``(topic, partition, offset)`` every label carries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import NamedTuple

import numpy as np
import redis
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from stream_dec.config import Config
from stream_dec.io.wire import InputMessage, Rejection, decode_batch, encode_label
from stream_dec.model.predictor import Predictor
from stream_dec.stream.kafka import Backoff, Delivery, Record, Ticket
from stream_dec.stream.observability import LabelerMetrics, StatsLine
from stream_dec.stream.reservoir import Reservoir
from stream_dec.stream.versions import VersionFollower

log = logging.getLogger("stream_dec.labeler")
SLOW_BROKER_S = 1.0
"""A commit or an acknowledgement that takes longer than this is logged (the broker is slow, down or paused)."""


def input_message(message: Message) -> InputMessage:
    """The parts of a consumed message the decoder needs (content-type from its headers)."""
    content_type = None
    for name, value in message.headers() or ():
        if name.lower() == "content-type":
            content_type = (value or b"").decode("utf-8", errors="replace")
    return InputMessage(message.topic(), message.partition(), message.offset(), message.key(), message.value(),
                        content_type)


def dead_letter(rejection: Rejection, topic: str, max_bytes: int) -> Record:
    """The dead-letter record: original key and bytes (truncated past ``max_bytes``), headers naming the error."""
    message = rejection.message
    value = message.value or b""
    headers = [
        ("error", rejection.reason.encode()),
        ("error-detail", rejection.detail.encode("utf-8", errors="replace")),
        ("source-topic", message.topic.encode()),
        ("source-partition", str(message.partition).encode()),
        ("source-offset", str(message.offset).encode()),
    ]
    if message.content_type is not None:
        headers.append(("content-type", message.content_type.encode("utf-8", errors="replace")))
    if len(value) > max_bytes:
        headers.append(("truncated-from-bytes", str(len(value)).encode()))
        value = value[:max_bytes]
    return Record(topic, message.key, value, headers)


def offset_ranges(messages: list[InputMessage]) -> dict[tuple[str, int], tuple[int, int]]:
    """Per (topic, partition), the first and last offset in ``messages``."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for m in messages:
        first, last = ranges.get((m.topic, m.partition), (m.offset, m.offset))
        ranges[(m.topic, m.partition)] = (min(first, m.offset), max(last, m.offset))
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


class InFlight(NamedTuple):
    """A labelled batch whose records are on their way to the broker."""

    ticket: Ticket
    offsets: list[TopicPartition]
    ids: list[str]
    X: np.ndarray
    sent: float  # time.monotonic() when produced


def first_offsets(messages: list[InputMessage]) -> list[TopicPartition]:
    """Per partition, the offset to seek back to in order to re-process ``messages``."""
    return [TopicPartition(t, p, first) for (t, p), (first, _) in offset_ranges(messages).items()]


class Labeler:
    """One labeler process; see the module docstring for the batch path.

    Parameters
    ----------
    config
        The validated configuration (``[topics]``, ``[labeler]``).
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
    reservoir
        Receives a ``sample_rate`` share of each batch after delivery, before commit.
        Redis being down only counts samples as skipped: labels keep flowing.
    """

    def __init__(self, config: Config, predictor: Predictor | None, consumer: Consumer, producer: Producer,
                 metrics: LabelerMetrics | None = None, follower: VersionFollower | None = None,
                 reservoir: Reservoir | None = None) -> None:
        self.config = config
        self.settings = config.labeler
        self.predictor = predictor
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics or LabelerMetrics()
        self.stop = threading.Event()
        self.backoff = Backoff(self.settings.retry_backoff_ms, self.settings.retry_backoff_max_ms)
        self.delivery = Delivery(producer, self.backoff)
        self.stats = StatsLine(self.settings.log_interval_s)
        self.transactional = self.settings.delivery == "exactly-once"
        self.follower, self.reservoir = follower, reservoir
        if predictor is None and (follower is None or reservoir is None or not self.settings.input_dim):
            raise ValueError("a labeler without a model (cold start) needs the versions topic, a reservoir "
                             "and [labeler] input_dim")
        self.metrics.version.set(predictor.version if predictor else 0)
        self.in_flight: deque[InFlight] = deque()
        self.unlabelled_from: dict[tuple[str, int], int] = {}
        self.rng = np.random.default_rng()
        self.reservoir_retry_at = 0.0

    def run(self) -> None:
        """Label until :attr:`stop` is set, then finish the batch in flight and leave the group."""
        if self.transactional:
            self.producer.init_transactions(30)
        self.consumer.subscribe([self.config.topics.embeddings], on_assign=self._assigned, on_revoke=self._revoked)
        if self.predictor is None:
            log.info("no model version yet: sampling %s into the reservoir until version 1 is published",
                     self.config.topics.embeddings)
        else:
            log.info("labeling %s with model version %d (%s, delivery %s)", self.config.topics.embeddings,
                     self.predictor.version, self.predictor.device, self.settings.delivery)
        try:
            while not self.stop.is_set():
                self.follow_versions()
                messages = self.consumer.consume(self.settings.max_batch, self.settings.max_wait_ms / 1000)
                if messages:
                    self.process(messages) if self.predictor else self.sample_only(messages)
                self.settle()
                if self.stats.due():
                    self.stats.emit(self.lag(), self.predictor.version if self.predictor else 0)
        finally:
            self.settle(everything=True)
            self.producer.flush(30)
            self.consumer.close()  # leaves the group: partitions move at once
            log.info("labeler stopped")

    def process(self, messages: list[Message]) -> None:
        """Decode, label, produce and commit one batch (steps 2-5 of the module docstring)."""
        started = time.perf_counter()
        inputs = []
        for message in messages:
            if message.error():
                log.warning("consumer error: %s", message.error())
            else:
                inputs.append(input_message(message))
        if not inputs:
            return
        batch = decode_batch(inputs, dim=self.predictor.dim, default_content_type=self.settings.content_type,
                             max_bytes=self.settings.max_message_bytes)
        clusters, confidence = self.predictor.predict(batch.X)
        records = self._label_records(inputs, batch.rows, batch.ids, clusters, confidence)
        records += [dead_letter(r, self.config.topics.dead_letters, self.settings.dead_letter_max_bytes)
                    for r in batch.rejected]
        self._deliver_and_commit(records, inputs, batch)
        self.metrics.labels.inc(len(batch.ids))
        for rejection in batch.rejected:
            self.metrics.dead_letters.labels(rejection.reason).inc()
        seconds = time.perf_counter() - started
        self.metrics.batches.inc()
        self.metrics.batch_seconds.observe(seconds)
        self.stats.add(len(batch.ids), len(batch.rejected), seconds)

    def _label_records(self, inputs, rows, ids, clusters, confidence) -> list[Record]:
        topic, version = self.config.topics.labels, self.predictor.version
        records = []
        for row, identifier, cluster, conf in zip(rows.tolist(), ids, clusters.tolist(), confidence.tolist()):
            m = inputs[row]
            records.append(Record(topic, m.key, encode_label(identifier, cluster, conf, version,
                                                             m.topic, m.partition, m.offset)))
        return records

    def _deliver_and_commit(self, records: list[Record], inputs: list[InputMessage], batch) -> None:
        if self.transactional:
            self.feed_reservoir(batch.ids, batch.X)
            self._transaction(records, inputs)
            return
        self.in_flight.append(InFlight(self.delivery.submit(records), next_offsets(inputs), batch.ids, batch.X,
                                       time.monotonic()))  # settled by the run loop, right after this batch

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
            self.feed_reservoir(batch.ids, batch.X)
            settled.append(batch.offsets)
        if settled:
            self._commit(latest_offsets(settled), asynchronous=not everything)

    def sample_only(self, messages: list[Message]) -> None:
        """Cold start: offer the batch to the reservoir; produce and commit nothing."""
        inputs = [input_message(m) for m in messages if not m.error()]
        for m in inputs:
            self.unlabelled_from.setdefault((m.topic, m.partition), m.offset)
        batch = decode_batch(inputs, dim=self.settings.input_dim, default_content_type=self.settings.content_type,
                             max_bytes=self.settings.max_message_bytes)
        self.feed_reservoir(batch.ids, batch.X)

    def follow_versions(self) -> None:
        """Between batches: switch to a newer valid version from the versions topic, if any."""
        if self.follower is None:
            return
        current = self.predictor.version if self.predictor else 0
        newer = self.follower.poll(current, self.predictor.dim if self.predictor else self.settings.input_dim)
        if newer is None:
            return
        self.predictor = Predictor(newer, self.settings.device)
        self.metrics.version.set(newer.header.version)
        log.info("switched from model version %d to %d (%s)", current, newer.header.version, newer.header.strategy)
        for (topic, partition), offset in self.unlabelled_from.items():  # cold start over: label what was sampled
            self.consumer.seek(TopicPartition(topic, partition, offset))
        self.unlabelled_from.clear()

    def feed_reservoir(self, ids: list[str], X: np.ndarray) -> None:
        """Offer a ``sample_rate`` share of the batch to the reservoir; never blocks labels on Redis."""
        if self.reservoir is None or not ids:
            return
        chosen = np.flatnonzero(self.rng.random(len(ids)) < self.config.reservoir.sample_rate)
        if not len(chosen):
            return
        if time.monotonic() < self.reservoir_retry_at:
            self.metrics.samples_skipped.inc(len(chosen))
            return
        try:
            self.reservoir.offer([ids[i] for i in chosen], X[chosen], time.time(), self.rng)
            self.metrics.samples_offered.inc(len(chosen))
        except redis.RedisError as exc:
            self.metrics.samples_skipped.inc(len(chosen))
            self.reservoir_retry_at = time.monotonic() + self.backoff.max
            log.warning("reservoir write failed (%s); samples skipped, labels keep flowing", exc)

    def _commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        """Commit after delivery; retry retriable errors; a lost generation means re-delivery, not loss.

        An asynchronous commit that fails is covered by the next one (offsets only grow);
        the synchronous one before a rebalance or stop is retried until it lands.
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
                    log.warning("commit failed (%s): these inputs will be labelled again after a restart or "
                                "rebalance", error)
                    return
                self.metrics.retries.labels("commit").inc()
                delay = self.backoff.next_delay()
                log.warning("commit failed (%s); retrying in %.1fs", error, delay)
                time.sleep(delay)

    def _transaction(self, records: list[Record], inputs: list[InputMessage]) -> None:
        """Labels and offsets in one transaction; on failure abort and rewind to re-process the batch."""
        try:
            self.producer.begin_transaction()
            for record in records:
                self.producer.produce(record.topic, record.value, record.key, headers=record.headers)
            self.producer.send_offsets_to_transaction(next_offsets(inputs),
                                                      self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(30)
        except KafkaException as exc:
            log.warning("transaction failed (%s); aborting and re-processing the batch", exc.args[0])
            self.metrics.retries.labels("transaction").inc()
            self.producer.abort_transaction(30)
            for partition in first_offsets(inputs):
                self.consumer.seek(partition)

    def lag(self) -> int | None:
        """Messages between each assigned partition's position and its end; None if unknown."""
        try:
            assigned = self.consumer.assignment()
            total = 0
            for tp, position in zip(assigned, self.consumer.position(assigned)):
                low, high = self.consumer.get_watermark_offsets(tp, timeout=1.0)
                total += high - (position.offset if position.offset >= 0 else low)
            return total
        except KafkaException as exc:
            log.warning("the broker did not answer the lag query (%s): down or paused? inputs wait, none are "
                        "dropped", exc.args[0])
            return None

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.settle(everything=True)
        for p in partitions:  # their new owner starts from the committed offset
            self.unlabelled_from.pop((p.topic, p.partition), None)
        log.info("revoked %s (their batches are already committed)",
                 ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

