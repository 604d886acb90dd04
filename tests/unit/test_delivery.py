"""Produce-error classification and the stand-ins for records too large (pure parts of the delivery path)."""

import logging

from confluent_kafka import KafkaError, TopicPartition

from stream_dec.io.wire import encode_label
from stream_dec.stream.kafka import Record, classify
from stream_dec.stream.labeler import commit_callback, smaller_record
from stream_dec.stream.observability import LabelerMetrics


def test_outages_retry_sizes_shrink_and_refusals_stop():
    assert {classify(KafkaError(code)) for code in (KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT,
                                                    KafkaError.NOT_ENOUGH_REPLICAS)} == {"retry"}
    assert {classify(KafkaError(code)) for code in (KafkaError.MSG_SIZE_TOO_LARGE,
                                                    KafkaError.RECORD_LIST_TOO_LARGE)} == {"too-large"}
    permanent = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                 KafkaError._UNKNOWN_TOPIC, KafkaError.INVALID_RECORD, KafkaError.SASL_AUTHENTICATION_FAILED)
    assert {classify(KafkaError(code)) for code in permanent} == {"permanent"}
    assert classify(KafkaError(KafkaError._MSG_TIMED_OUT, fatal=True)) == "permanent"


def test_a_dead_letter_shrinks_until_nothing_is_left_then_gives_up():
    record = Record("dlq", b"k" * 100, b"v" * 1000, [("error", b"bad-json")])
    sizes = []
    while record is not None:
        sizes.append((len(record.key or b""), len(record.value)))
        record = smaller_record(record, "dlq")
        if record is not None:
            headers = dict(record.headers)
            assert headers["truncated-from-bytes"] == b"1000"  # the original size, kept through every cut
    assert sizes[:3] == [(100, 1000), (100, 500), (100, 250)] and sizes[-1] == (0, 0)
    assert all(a > b or ka > kb for (ka, a), (kb, b) in zip(sizes, sizes[1:]))  # strictly smaller each time


def test_a_label_too_large_names_its_input():
    label = Record("labels", b"key", encode_label("id", 3, 0.9, 2, "emb", 4, 99))
    dead = smaller_record(label, "dlq")
    headers = dict(dead.headers)
    assert (dead.topic, headers["source-topic"], headers["source-partition"], headers["source-offset"]) == \
        ("dlq", b"emb", b"4", b"99")


def test_refused_commits_are_counted_and_logged(caplog):
    metrics = LabelerMetrics()
    callback = commit_callback(metrics)
    callback(None, [TopicPartition("emb", 0, 10)])  # a commit that landed
    assert metrics.commit_failures._value.get() == 0
    with caplog.at_level(logging.WARNING, logger="stream_dec.labeler"):
        callback(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [TopicPartition("emb", 0, 10)])
    assert metrics.commit_failures._value.get() == 1 and "commit failed" in caplog.text


def test_the_exactly_once_identity_is_stable_per_replica_and_unique_across_replicas():
    """It was <group>-<PID>: PID 1 in every container, so compose replicas fenced each other."""
    import socket

    from stream_dec.config import LabelerConfig
    from stream_dec.stream.labeler import transactional_id

    default = LabelerConfig(group_id="labelers")
    assert transactional_id(default) == transactional_id(default) == f"labelers-{socket.gethostname()}"
    assert transactional_id(LabelerConfig(group_id="labelers", instance_id="labeler-2")) == "labelers-labeler-2"
