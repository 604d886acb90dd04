"""Kafka clients: construction from config, topic creation, and delivery that loses nothing.

:class:`Delivery` produces a list of records and returns only when the broker has
acknowledged every one of them. Each produce error is one of three kinds
(:func:`classify`):

- ``retry``: the broker is down, slow or electing a leader. The records are produced
  again after a growing backoff, for as long as it takes (an outage stalls the labeler;
  it never drops a batch).
- ``too-large``: the record exceeds the producer's or the broker's size limit. The
  delivery's ``shrink`` function replaces it by a smaller stand-in (the labeler: a
  dead letter, cut to fit), produced in its place; a record that cannot shrink further
  is a permanent error.
- ``permanent``: authorisation, a missing topic, a record the broker will never take.
  :class:`DeliveryFailed` is raised at once: retrying would stall the service forever,
  so it stops with one clear message and commits nothing past the last delivered batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream_dec.config import Config, kafka_settings
from stream_dec.errors import ConfigError, StreamDecError
from stream_dec.logs import ClientLog

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


CLIENT_LOG = ClientLog()
"""Every client's ``logger``: librdkafka's lines through stream-dec's logging, rate-limited."""


def client_settings(config: Config, role: Literal["consumer", "producer", "admin"]) -> dict:
    """``[kafka]`` + ``[kafka.<role>]``, with librdkafka's log routed through :data:`CLIENT_LOG`."""
    return {"logger": CLIENT_LOG, **kafka_settings(config, role)}


def check_settings(config: Config) -> None:
    """Build, and drop, one client per role from ``[kafka]``: librdkafka names a misspelt
    property, a bad value or an unreadable certificate file at once, as one
    :class:`~stream_dec.errors.ConfigError` (instead of a traceback, or an updater retrying
    forever)."""
    for role in ("consumer", "producer", "admin"):
        settings = {**kafka_settings(config, role), "logger": _Silent()}  # its connection attempts say nothing
        try:
            if role == "consumer":
                Consumer({**settings, "group.id": "stream-dec-settings-check"}).close()
            elif role == "producer":
                Producer(settings)
            else:
                AdminClient(settings)
        except KafkaException as exc:
            raise ConfigError(f"[kafka] settings of the {role}: {exc.args[0].str()}") from None


class _Silent:
    """A librdkafka ``logger`` that drops every line."""

    def log(self, *args) -> None:
        return None


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
        **client_settings(config, "consumer"),
        "group.id": config.labeler.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }


def producer_settings(config: Config, transactional_id: str | None = None) -> dict:
    """Producer properties: idempotent, acks from all in-sync replicas, small linger."""
    settings = {"linger.ms": 5, "acks": "all", "enable.idempotence": True, **client_settings(config, "producer")}
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


class DeliveryFailed(StreamDecError):
    """A produce error that no retry can mend (authorisation, missing topic, a record refused for good)."""

    def __init__(self, topic: str, error: KafkaError | str) -> None:
        detail = error.str() if isinstance(error, KafkaError) else error
        name = f" ({error.name()})" if isinstance(error, KafkaError) else ""
        super().__init__(f"cannot produce to topic '{topic}': {detail}{name}; nothing past the last delivered batch "
                         f"was committed, so a restart after the fix resumes there")
        self.topic, self.error = topic, error


TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
TRANSIENT = frozenset({
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.BROKER_NOT_AVAILABLE, KafkaError.KAFKA_STORAGE_ERROR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
})
"""Errors that pass by themselves (outages, elections, timeouts) beside those librdkafka marks retriable."""


def classify(error: KafkaError) -> Literal["retry", "too-large", "permanent"]:
    """What to do about a produce error (see the module docstring).

    >>> classify(KafkaError(KafkaError._MSG_TIMED_OUT)), classify(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    ('retry', 'too-large')
    >>> classify(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)), classify(KafkaError(KafkaError.INVALID_RECORD))
    ('permanent', 'permanent')
    """
    if error.code() in TOO_LARGE:
        return "too-large"
    if error.fatal():
        return "permanent"
    return "retry" if error.retriable() or error.code() in TRANSIENT else "permanent"


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


Shrink = Callable[[Record], "Record | None"]
"""A smaller stand-in for a record refused as too large, or None when there is none."""


class Delivery:
    """Produce batches of records and wait until all are acknowledged, re-sending failures.

    Parameters
    ----------
    producer
        A confluent-kafka ``Producer``.
    backoff
        Wait between rounds of re-sending failed records.
    shrink
        Replaces a record refused as too large (default: none can be replaced, so it is a
        permanent error).
    """

    def __init__(self, producer: Producer, backoff: Backoff, shrink: Shrink | None = None) -> None:
        self.producer = producer
        self.backoff = backoff
        self.shrink = shrink or (lambda record: None)

    def submit(self, records: list[Record], values: tuple[str, list, list] | None = None) -> Ticket:
        """Produce ``records`` without waiting; the ticket counts their acknowledgements.

        ``values`` = (topic, keys, values) are more records without headers (a batch's
        labels), produced without a :class:`Record` each.
        """
        ticket = Ticket()
        if values is not None:
            self._produce_values(ticket, *values)
        self._produce(ticket, records)
        return ticket

    def _produce_values(self, ticket: Ticket, topic: str, keys: list, values: list[bytes]) -> None:
        """The usual path, one ``produce`` call per record; a full queue or a refusal takes :meth:`_produce`."""
        produce, report = self.producer.produce, ticket.report
        for key, value in zip(keys, values):
            try:
                produce(topic, value, key, on_delivery=report)
                ticket.waiting += 1
            except (BufferError, KafkaException):
                self._produce(ticket, [Record(topic, key, value)])

    def wait(self, ticket: Ticket) -> None:
        """Return when every record of ``ticket`` has been acknowledged, producing failed ones again.

        Raises :class:`DeliveryFailed` on a permanent error (see :func:`classify`).
        """
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
            retry = [record for record, error in failed if self._settle_error(ticket, record, error)]
            if retry:
                delay = self.backoff.next_delay()
                log.warning("%d records not acknowledged (%s); producing them again in %.1fs", len(retry),
                            failed[0][1], delay)
                time.sleep(delay)
                self._produce(ticket, retry)

    def _settle_error(self, ticket: Ticket, record: Record, error: KafkaError) -> bool:
        """Handle one refused record; True if it is to be produced again after the backoff."""
        kind = classify(error)
        if kind == "permanent":
            raise DeliveryFailed(record.topic, error)
        if kind == "too-large":
            self._produce(ticket, [self._smaller(record, error)])
            return False
        return True

    def _smaller(self, record: Record, error: KafkaError) -> Record:
        """The stand-in for a record refused as too large; :class:`DeliveryFailed` if there is none."""
        stand_in = self.shrink(record)
        if stand_in is None:
            raise DeliveryFailed(record.topic, f"a record of {_size(record)} bytes is too large ({error.str()}) "
                                               f"and cannot be cut further")
        log.warning("a record of %d bytes for '%s' is too large for the broker (%s); producing a %d-byte "
                    "stand-in to '%s'", _size(record), record.topic, error.str(), _size(stand_in), stand_in.topic)
        return stand_in

    def _produce(self, ticket: Ticket, records: list[Record]) -> None:
        for record in records:
            while True:
                try:
                    self.producer.produce(record.topic, record.value, record.key, headers=record.headers,
                                          on_delivery=ticket.report)
                    ticket.waiting += 1
                    break
                except BufferError:  # local queue full: serve delivery reports, then try again
                    self.producer.poll(0.1)
                except KafkaException as exc:  # refused before it left: too large for the producer, bad topic
                    error = exc.args[0]
                    if classify(error) != "too-large":
                        raise DeliveryFailed(record.topic, error) from None
                    record = self._smaller(record, error)


def _size(record: Record) -> int:
    """Bytes of a record's key, value and headers."""
    headers = sum(len(name) + len(value or b"") for name, value in record.headers or ())
    return len(record.key or b"") + len(record.value or b"") + headers


def ensure_topics(config: Config, partitions: dict[str, int] | None = None, timeout: float = 30.0) -> None:
    """Create the configured topics if missing (versions topic compacted); existing ones are kept."""
    admin = AdminClient(client_settings(config, "admin"))
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
