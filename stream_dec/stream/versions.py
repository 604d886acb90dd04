"""Model versions on the compacted centre-versions topic.

One record per version, key = model name, value = ``b"SDV1"`` + uint32 header length +
the version's JSON header + its safetensors bytes (:func:`encode_record`). The record
carries everything a labeler needs to reproduce labels (all tensors, the header with
version, parent, strategy, created-at, metrics and the sha256 of the tensors).

:func:`decode_record` accepts a record only if its framing, checksum, field types and
tensor shapes are valid, it belongs to the expected model, its input width matches,
and its version is newer than the one in use; anything else raises
:class:`VersionRejected`. Nothing is ever unpickled.

One history, one writer. The updater that holds the lease publishes through
:class:`VersionPublisher`: a transactional producer whose ``transactional.id`` is fixed
per model, so taking the lease (``init_transactions``) fences every older leader's
producer, and each publish is one transaction that commits or aborts. Taking the lease
also writes an *epoch marker* (key ``<model>:epoch``, value ``SDE1`` + the lease's
fencing epoch) before the new leader reads the topic to its end, and every version
record carries the epoch it was published under. :class:`VersionFollower` (labelers and
updaters alike) reads the topic in order and rejects a version record whose epoch is
older than the newest marker or record it has seen: a paused leader's publish that
lands after the takeover is rejected by every reader, and one that landed before it is
part of the history the new leader read and built on. So there is one history, also on
a broker whose transactions do not fence (Tansu 0.6 lets a fenced producer's open
transaction through). Two different records with one number are settled the same way
everywhere: the newer epoch wins, else the first in topic order (a WARNING).

Beside each version, in the same transaction, the updater may publish its cluster
catalogue (:class:`~stream_dec.model.catalogue.Catalogue`; key ``<model>:catalogue``,
value ``SDC1`` + JSON): what each cluster id is. Compaction keeps the newest; each
carries its version number and its parent's terms. Labelers skip these records;
``stream-dec inspect`` reads them (:func:`read_catalogues`).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from stream_dec.errors import CheckpointError, StreamDecError
from stream_dec.model import ModelVersion
from stream_dec.model.catalogue import Catalogue
from stream_dec.model.checkpoint import VersionHeader

log = logging.getLogger(__name__)

MAGIC = b"SDV1"
EPOCH_MAGIC = b"SDE1"
CATALOGUE_MAGIC = b"SDC1"
_LENGTH = struct.Struct(">I")
_EPOCH = struct.Struct(">Q")


def epoch_key(model: str) -> bytes:
    """Key of a model's epoch markers (the versions themselves are keyed by the model name)."""
    return f"{model}:epoch".encode()


def catalogue_key(model: str) -> bytes:
    """Key of a model's cluster catalogues."""
    return f"{model}:catalogue".encode()


def encode_catalogue(catalogue: Catalogue) -> bytes:
    """The value of a catalogue record."""
    return CATALOGUE_MAGIC + catalogue.to_json()


def decode_catalogue(value: bytes | None) -> Catalogue | None:
    """The catalogue in a record's value; None for anything else."""
    if not value or not value.startswith(CATALOGUE_MAGIC):
        return None
    try:
        return Catalogue.from_json(value[len(CATALOGUE_MAGIC):])
    except ValueError:
        return None


def encode_epoch(epoch: int) -> bytes:
    """The value of an epoch marker.

    >>> decode_epoch(encode_epoch(7))
    7
    """
    return EPOCH_MAGIC + _EPOCH.pack(epoch)


def decode_epoch(value: bytes | None) -> int | None:
    """The epoch of a marker's value; None for anything else."""
    if not value or len(value) != len(EPOCH_MAGIC) + _EPOCH.size or not value.startswith(EPOCH_MAGIC):
        return None
    return _EPOCH.unpack_from(value, len(EPOCH_MAGIC))[0]


class VersionRejected(StreamDecError):
    """A version record that must not be used (names the record and why)."""


class StaleVersion(VersionRejected):
    """A valid record whose version is not newer than the one in use.

    ``known``: a record already seen (the same tensors, e.g. our own publish read back,
    or an older version replayed from the start of the topic); otherwise a second,
    different record for a number in use, which is worth a warning.
    """

    def __init__(self, message: str, version: int, current: int, known: bool = True) -> None:
        super().__init__(message)
        self.version, self.current, self.known = version, current, known


class Fenced(StreamDecError):
    """This updater's producer was fenced by a newer leader's (same ``transactional.id``)."""


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
    """Produce ``version`` outside any lease and wait for the acknowledgement (tools and tests;
    the updater uses :class:`VersionPublisher`)."""
    _acknowledged(producer, topic, encode_record(version), model.encode(), f"version {version.header.version}",
                  timeout)


def _acknowledged(producer: Producer, topic: str, value: bytes, key: bytes, what: str, timeout: float) -> None:
    """Produce one record and wait for the broker's acknowledgement; ``KafkaException`` otherwise."""
    errors = []
    producer.produce(topic, value, key, on_delivery=lambda err, _msg: errors.append(err) if err else None)
    if producer.flush(timeout) > 0 or errors:
        raise KafkaException(errors[0] if errors else KafkaError(KafkaError._TIMED_OUT, f"{what} not acknowledged"))


class VersionPublisher:
    """The leader's way onto the versions topic: one transaction per version, fenced per model.

    Parameters
    ----------
    settings
        Producer properties (bootstrap, security, ``message.max.bytes``).
    topic, model
        Versions topic and model name (the record key); the ``transactional.id`` is
        ``stream-dec-updater-<model>``, the same in every updater of the model.
    transactional
        False for a broker without transactions: plain idempotent produces, and the
        epoch check in every reader keeps one history.

    Call :meth:`begin_tenure` on taking the lease: a new producer whose
    ``init_transactions`` fences the previous leader's, so a publish that leader had in
    flight aborts instead of landing. :meth:`publish` raises :class:`Fenced` when a newer
    leader fenced this one.
    """

    def __init__(self, settings: dict, topic: str, model: str, transactional: bool = True) -> None:
        self.settings, self.topic, self.model, self.transactional = settings, topic, model, transactional
        self.transactional_id = f"stream-dec-updater-{model}"
        self.producer: Producer | None = None

    def begin_tenure(self, epoch: int, timeout: float = 30.0) -> None:
        """Start the lease tenure ``epoch``: a fresh producer (with transactions, fencing every
        older one), then the epoch marker, acknowledged before this returns. Read the topic to
        its end after this, before publishing."""
        self.close()
        extra = {"transactional.id": self.transactional_id} if self.transactional else {}
        self.producer = Producer({**self.settings, **extra})
        if self.transactional:
            self.producer.init_transactions(timeout)
        self._write(encode_epoch(epoch), epoch_key(self.model), f"epoch marker {epoch}", timeout)

    def publish(self, version: ModelVersion, catalogue: Catalogue | None = None, timeout: float = 30.0) -> None:
        """Publish ``version`` (and its ``catalogue``, in the same transaction): committed and
        acknowledged on return, else raises.

        Raises :class:`Fenced` if a newer leader fenced this producer, ``KafkaException``
        for anything else (the transaction is aborted first). Call :meth:`begin_tenure` first.
        """
        extra = [] if catalogue is None else [(encode_catalogue(catalogue), catalogue_key(self.model))]
        self._write(encode_record(version), self.model.encode(), f"version {version.header.version}", timeout,
                    extra)

    def _write(self, value: bytes, key: bytes, what: str, timeout: float,
               extra: list[tuple[bytes, bytes]] = ()) -> None:
        if not self.transactional:
            _acknowledged(self.producer, self.topic, value, key, what, timeout)
            for extra_value, extra_key in extra:
                _acknowledged(self.producer, self.topic, extra_value, extra_key, f"{what}'s catalogue", timeout)
            return
        try:
            self.producer.begin_transaction()
            self.producer.produce(self.topic, value, key)
            for extra_value, extra_key in extra:
                self.producer.produce(self.topic, extra_value, extra_key)
            self.producer.commit_transaction(timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal() or error.code() in (KafkaError.PRODUCER_FENCED, KafkaError._FENCED):
                self.close()
                raise Fenced(f"{what} not published: a newer updater took over the versions topic "
                             f"({error.str()})") from None
            self._abort(timeout)
            raise

    def _abort(self, timeout: float) -> None:
        try:
            self.producer.abort_transaction(timeout)
        except KafkaException as exc:  # the next tenure's init_transactions aborts it for good
            log.warning("could not abort the version transaction (%s); starting a fresh producer", exc.args[0])
            self.close()

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(0)
            self.producer = None


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
    keep_catalogues
        Decode the catalogue records into :attr:`catalogues` (else they are skipped unread).
    """

    def __init__(self, settings: dict, topic: str, model: str, on_error: Callable[[], None] | None = None,
                 keep_catalogues: bool = False) -> None:
        self.topic, self.model = topic, model
        self.catalogue_key = catalogue_key(model)
        self.catalogues: dict[int, Catalogue] | None = {} if keep_catalogues else None
        """Per version number, the catalogue read for it (with ``keep_catalogues``)."""
        self.on_error = on_error or (lambda: None)
        self.consumer = Consumer({**settings, "group.id": f"stream-dec-versions-{id(self)}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                                  "isolation.level": "read_committed"})
        self.epoch_key = epoch_key(model)
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.rejected = 0
        self.position = 0
        """The offset after the last record read: a caught-up :meth:`latest` returns at once."""
        self.epoch = 0
        """The newest fencing epoch among accepted records."""
        self.accepted: dict[int, VersionHeader] = {}
        """Per version number, the header of the record accepted for it (the history read so far)."""

    def latest(self, current: int = 0, dim: int | None = None, timeout: float = 10.0) -> ModelVersion | None:
        """Read to the end of the topic (as it is now); the newest valid version above ``current``, if any.

        Raises ``KafkaException`` if the end is not reached within ``timeout`` seconds:
        a partial read would hide a newer version or epoch marker.
        """
        deadline = time.monotonic() + timeout
        partition = TopicPartition(self.topic, 0)
        _, high = self.consumer.get_watermark_offsets(partition, timeout=timeout)
        newest = None
        while self._position(partition) < high:
            if time.monotonic() > deadline:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"versions topic '{self.topic}' not read "
                                                                       f"to its end ({high}) in {timeout}s"))
            found = self._newest(self.consumer.consume(1000, 0.1), current, dim)
            if found is not None:
                newest, current = found, found.header.version
        return newest

    def _position(self, partition: TopicPartition) -> int:
        """The next offset to read: past control records (transaction markers) too."""
        offset = self.consumer.position([partition])[0].offset
        return max(offset, self.position)

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
        if message.key() == self.epoch_key and decode_epoch(message.value()) is not None:
            self.epoch = max(self.epoch, decode_epoch(message.value()))
            return None
        if message.key() == self.catalogue_key:
            if self.catalogues is not None:
                catalogue = decode_catalogue(message.value())
                if catalogue is None:
                    log.warning("versions topic '%s': %s is not a readable cluster catalogue", self.topic, source)
                else:
                    self.catalogues[catalogue.version] = catalogue
            return None
        try:
            version = decode_record(message.value(), source=source, model=self.model, key=message.key(), dim=dim)
            self._judge(version.header, current, source)
        except VersionRejected as exc:
            self.rejected += 1
            known = isinstance(exc, StaleVersion) and exc.known
            if not known:
                self.on_error()
            log.log(logging.DEBUG if known else logging.WARNING, "rejected version record: %s", exc)
            return None
        self.adopt(version)
        return version

    def adopt(self, version: ModelVersion) -> None:
        """Note a version as accepted (a caller's own publish is noted so that reading it back is quiet)."""
        self.accepted[version.header.version] = version.header
        self.epoch = max(self.epoch, version.header.epoch)

    def _judge(self, header: VersionHeader, current: int, source: str) -> None:
        """Raise :class:`VersionRejected` unless the record extends the history (or, from a newer
        epoch, replaces the current version's record)."""
        if header.epoch < self.epoch:
            raise VersionRejected(f"{source}: version {header.version} was published under lease epoch "
                                  f"{header.epoch}, older than epoch {self.epoch}: a late publish of an updater "
                                  f"that lost its lease")
        if header.version > current:
            return
        seen = self.accepted.get(header.version)
        if seen is None or seen.sha256 == header.sha256:  # a replay, or the record we hold read back
            raise StaleVersion(f"{source}: version {header.version} is not newer than {current}", header.version,
                               current)
        if header.version == current and header.epoch > seen.epoch:
            log.warning("%s: version %d from lease epoch %d replaces the record from epoch %d", source,
                        header.version, header.epoch, seen.epoch)
            return
        raise StaleVersion(f"{source}: a second record for version {header.version} (epoch {header.epoch}); the "
                           f"first one, from epoch {seen.epoch}, stays", header.version, current, known=False)

    def close(self) -> None:
        self.consumer.close()


def read_catalogues(settings: dict, topic: str, model: str,
                    timeout: float = 10.0) -> tuple[dict[int, VersionHeader], dict[int, Catalogue]]:
    """The accepted versions' headers and the catalogues of those versions still on the topic."""
    follower = VersionFollower(settings, topic, model, keep_catalogues=True)
    try:
        follower.latest(timeout=timeout)
    finally:
        follower.close()
    headers = dict(follower.accepted)
    return headers, {v: c for v, c in sorted(follower.catalogues.items()) if v in headers}
