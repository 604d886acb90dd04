"""Kafka clients: construction from config, topic creation, and delivery that loses nothing.

:class:`Delivery` produces a list of records and returns only when the broker has
acknowledged every one of them: records whose delivery report carries an error are
produced again after a growing backoff, for as long as it takes (a broker outage
stalls the labeler; it never drops a batch).
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream_dec.config import Config, kafka_settings

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
VERSION_BYTES = 64 * 1024 * 1024
"""Largest version record (all tensors, EWC's Fisher included) the versions producer sends."""


class Record(NamedTuple):
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers | None = None


def consumer_settings(config: Config) -> dict:
    """Consumer properties: ``[kafka]`` + ``[kafka.consumer]``, with stream-dec's commit rules forced.

    Offsets are committed only by the labeler, after delivery (auto-commit off). The
    fetch wait defaults to 10 ms (librdkafka: 500 ms) so a quiet partition does not hold
    a label back, and the prefetch queue to 256 MiB (librdkafka: 64 MiB): at 64 MiB the
    fetcher stalled while a batch was labelled, so fetching and labelling took turns
    (384-d JSON: 14,600 -> 32,800 labels/s). Override either in ``[kafka.consumer]``.
    """
    return {
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 10,
        "queued.max.messages.kbytes": 262144,
        **kafka_settings(config, "consumer"),
        "group.id": config.labeler.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }


def producer_settings(config: Config, transactional_id: str | None = None) -> dict:
    """Producer properties: idempotent, acks from all in-sync replicas, small linger."""
    settings = {"linger.ms": 5, "acks": "all", "enable.idempotence": True, **kafka_settings(config, "producer")}
    if transactional_id:
        settings["transactional.id"] = transactional_id
    return settings


class Backoff:
    """Exponential backoff between ``first_ms`` and ``max_ms``.

    >>> b = Backoff(100, 400)
    >>> [b.next_delay() for _ in range(4)]
    [0.1, 0.2, 0.4, 0.4]
    """

    def __init__(self, first_ms: int, max_ms: int) -> None:
        self.first, self.max = first_ms / 1000, max_ms / 1000
        self.delay = self.first

    def next_delay(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.max)
        return delay

    def reset(self) -> None:
        self.delay = self.first


class Ticket:
    """The records of one batch on their way to the broker.

    >>> ticket = Ticket()
    >>> ticket.waiting = 2
    >>> ticket.report(None, None)
    >>> ticket.waiting, ticket.done
    (1, False)
    """

    def __init__(self) -> None:
        self.waiting = 0
        self.failed: list[tuple[Record, KafkaError]] = []

    @property
    def done(self) -> bool:
        """Every record acknowledged by the broker."""
        return self.waiting == 0 and not self.failed

    def report(self, error: KafkaError | None, message: Message) -> None:
        """Delivery report: count the record; keep what is needed to produce a failed one again."""
        self.waiting -= 1
        if error is not None:
            self.failed.append((Record(message.topic(), message.key(), message.value(), message.headers()), error))


class Delivery:
    """Produce batches of records and wait until all are acknowledged, re-sending failures.

    Parameters
    ----------
    producer
        A confluent-kafka ``Producer``.
    backoff
        Wait between rounds of re-sending failed records.
    """

    def __init__(self, producer: Producer, backoff: Backoff) -> None:
        self.producer = producer
        self.backoff = backoff

    def submit(self, records: list[Record]) -> Ticket:
        """Produce ``records`` without waiting; the ticket counts their acknowledgements."""
        ticket = Ticket()
        self._produce(ticket, records)
        return ticket

    def wait(self, ticket: Ticket) -> None:
        """Return when every record of ``ticket`` has been acknowledged, producing failed ones again."""
        started, waited = time.monotonic(), False
        while True:
            while ticket.waiting > 0:
                if self.producer.flush(1.0) > 0 and ticket.waiting > 0:
                    log.warning("waiting for the broker to acknowledge %d records", ticket.waiting)
                    waited = True
            if not ticket.failed:
                if waited:
                    log.warning("the broker acknowledged the batch after %.1fs; resuming", time.monotonic() - started)
                self.backoff.reset()
                return
            failed, ticket.failed = ticket.failed, []
            delay = self.backoff.next_delay()
            log.warning("%d records not acknowledged (%s); producing them again in %.1fs", len(failed), failed[0][1],
                        delay)
            time.sleep(delay)
            self._produce(ticket, [record for record, _ in failed])

    def _produce(self, ticket: Ticket, records: list[Record]) -> None:
        ticket.waiting += len(records)
        for record in records:
            while True:
                try:
                    self.producer.produce(record.topic, record.value, record.key, headers=record.headers,
                                          on_delivery=ticket.report)
                    break
                except BufferError:  # local queue full: serve delivery reports, then try again
                    self.producer.poll(0.1)


def ensure_topics(config: Config, partitions: dict[str, int] | None = None, timeout: float = 30.0) -> None:
    """Create the configured topics if missing (versions topic compacted); existing ones are kept."""
    admin = AdminClient(kafka_settings(config, "admin"))
    partitions = partitions or {}
    topics = config.topics
    wanted = [
        NewTopic(topics.embeddings, partitions.get(topics.embeddings, 3), 1),
        NewTopic(topics.labels, partitions.get(topics.labels, 3), 1),
        NewTopic(topics.dead_letters, partitions.get(topics.dead_letters, 1), 1),
        NewTopic(topics.versions, 1, 1, config={"cleanup.policy": "compact", "max.message.bytes": str(VERSION_BYTES)}),
    ]
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
