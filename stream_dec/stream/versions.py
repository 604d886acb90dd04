"""Model versions on the compacted centre-versions topic.

One record per version, key = model name, value = ``b"SDV1"`` + uint32 header length +
the version's JSON header + its safetensors bytes (:func:`encode_record`). The record
carries everything a labeler needs to reproduce labels (all tensors, the header with
version, parent, strategy, created-at, metrics and the sha256 of the tensors).

:func:`decode_record` accepts a record only if its framing, checksum, field types and
tensor shapes are valid, it belongs to the expected model, its input width matches,
and its version is newer than the one in use; anything else raises
:class:`VersionRejected`. Nothing is ever unpickled.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from stream_dec.errors import CheckpointError, StreamDecError
from stream_dec.model import ModelVersion

log = logging.getLogger(__name__)

MAGIC = b"SDV1"
_LENGTH = struct.Struct(">I")


class VersionRejected(StreamDecError):
    """A version record that must not be used (names the record and why)."""


class StaleVersion(VersionRejected):
    """A valid record whose version is not newer than the one in use."""

    def __init__(self, message: str, version: int, current: int) -> None:
        super().__init__(message)
        self.version, self.current = version, current


def encode_record(version: ModelVersion) -> bytes:
    """The topic value for ``version``."""
    header, payload = version.to_bytes()
    return MAGIC + _LENGTH.pack(len(header)) + header + payload


def decode_record(value: bytes | None, *, source: str, model: str | None = None, key: bytes | None = None,
                  current: int = 0, dim: int | None = None) -> ModelVersion:
    """Verify and decode a version record; raise :class:`VersionRejected` if it must not be used."""
    if model is not None and key != model.encode():
        raise VersionRejected(f"{source}: key {key!r} is not model {model!r}")
    if not value or len(value) < len(MAGIC) + _LENGTH.size or not value.startswith(MAGIC):
        raise VersionRejected(f"{source}: not a stream-dec version record (bad framing)")
    (length,) = _LENGTH.unpack_from(value, len(MAGIC))
    start = len(MAGIC) + _LENGTH.size
    if start + length > len(value):
        raise VersionRejected(f"{source}: truncated record (header says {length} bytes)")
    try:
        version = ModelVersion.from_bytes(value[start:start + length], value[start + length:], source=source)
    except CheckpointError as exc:
        raise VersionRejected(str(exc)) from None
    if version.header.version <= current:
        raise StaleVersion(f"{source}: version {version.header.version} is not newer than {current}",
                           version.header.version, current)
    if dim is not None and version.header.dims[0] != dim:
        raise VersionRejected(f"{source}: input width {version.header.dims[0]}, the labeler expects {dim}")
    return version


def publish(producer: Producer, topic: str, model: str, version: ModelVersion, timeout: float = 30.0) -> None:
    """Produce ``version`` and wait for the broker's acknowledgement (raises on failure)."""
    errors = []
    producer.produce(topic, encode_record(version), model.encode(),
                     on_delivery=lambda err, _msg: errors.append(err) if err else None)
    if producer.flush(timeout) > 0 or errors:
        raise KafkaException(errors[0] if errors else "version record not acknowledged in time")


class VersionFollower:
    """Reads the versions topic (one partition, no consumer group) and yields new valid versions.

    Parameters
    ----------
    settings
        Consumer properties (bootstrap, security); a private group id is added.
    topic, model
        Versions topic and model name (the record key).
    on_error
        Called (e.g. a metric's ``inc``) for each consumer error and rejected record;
        both are also logged.
    """

    def __init__(self, settings: dict, topic: str, model: str, on_error: Callable[[], None] | None = None) -> None:
        self.topic, self.model = topic, model
        self.on_error = on_error or (lambda: None)
        self.consumer = Consumer({**settings, "group.id": f"stream-dec-versions-{id(self)}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.rejected = 0
        self.position = 0
        """The offset after the last record read: a caught-up :meth:`latest` returns at once."""

    def latest(self, current: int = 0, dim: int | None = None, timeout: float = 10.0) -> ModelVersion | None:
        """Read to the end of the topic; the newest valid version above ``current``, if any."""
        _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=timeout)
        newest = None
        while self.position < high:
            messages = self.consumer.consume(1000, 1.0)
            if not messages:
                break
            found = self._newest(messages, current, dim)
            if found is not None:
                newest, current = found, found.header.version
        return newest

    def poll(self, current: int, dim: int | None = None) -> ModelVersion | None:
        """Non-blocking: the newest valid version above ``current`` among records that arrived."""
        return self._newest(self.consumer.consume(100, 0), current, dim)

    def _newest(self, messages, current: int, dim: int | None) -> ModelVersion | None:
        newest = None
        for message in messages:
            if message.error() is None:
                self.position = message.offset() + 1
            found = self._accept(message, current, dim)
            if found is not None:
                newest, current = found, found.header.version
        return newest

    def _accept(self, message, current: int, dim: int | None) -> ModelVersion | None:
        if message.error() is not None:
            self.on_error()
            log.warning("versions topic '%s': consumer error %s", self.topic, message.error())
            return None
        source = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        try:
            return decode_record(message.value(), source=source, model=self.model, key=message.key(),
                                 current=current, dim=dim)
        except VersionRejected as exc:
            self.rejected += 1
            known = isinstance(exc, StaleVersion) and exc.version == exc.current  # e.g. our own publish
            if not known:
                self.on_error()
            log.log(logging.DEBUG if known else logging.WARNING, "rejected version record: %s", exc)
            return None

    def close(self) -> None:
        self.consumer.close()
