"""Metrics of the labeler and the updater: Prometheus collectors and structured log lines.

Each labeler owns a :class:`LabelerMetrics`, each updater an :class:`UpdaterMetrics`, with
its own registry, served on ``[metrics] port`` when it is not 0 (the labeler and the
updater read their own config files, so each has its own port). The labeler's figures
also go to the log every ``log_interval_s`` as one line: rate, batch latency, inputs' age
when consumed, consumer lag, dead letters, version; the updater logs one line per update.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from stream_dec.model.checkpoint import VersionHeader

log = logging.getLogger("stream_dec.labeler")


def serve(registry: CollectorRegistry, host: str, port: int) -> None:
    """Expose ``registry`` on ``/metrics`` over HTTP at ``host:port``."""
    start_http_server(port, addr=host, registry=registry)
    logging.getLogger("stream_dec.metrics").info("metrics on http://%s:%d/metrics", host, port)


class ModelGauges:
    """The model version a service is using, and when that version was made."""

    def __init__(self, registry: CollectorRegistry, version_help: str) -> None:
        self.version = Gauge("stream_dec_model_version", version_help, registry=registry)
        self.created = Gauge("stream_dec_model_created_timestamp_seconds", "When the model version in use was "
                             "created (Unix seconds; 0 before the first version)", registry=registry)

    def show(self, header: VersionHeader | None) -> None:
        """Set both gauges from a version header (None: no version yet).

        >>> from stream_dec.model.checkpoint import VersionHeader
        >>> gauges = ModelGauges(CollectorRegistry(), "version")
        >>> gauges.show(VersionHeader(dims=(4, 2), n_clusters=2, alpha=1.0, version=3,
        ...                           created_at="2026-01-01T00:00:00+00:00", sha256="0" * 64))
        >>> gauges.version._value.get(), gauges.created._value.get()
        (3.0, 1767225600.0)
        """
        self.version.set(header.version if header else 0)
        created = datetime.fromisoformat(header.created_at).timestamp() if header and header.created_at else 0
        self.created.set(created)


class LabelerMetrics:
    """Counters and gauges of one labeler (names prefixed ``stream_dec_``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.labels = Counter("stream_dec_labels", "Labels produced and acknowledged", registry=r)
        self.dead_letters = Counter("stream_dec_dead_letters", "Inputs sent to the dead-letter topic",
                                    ["reason"], registry=r)
        self.batches = Counter("stream_dec_batches", "Batches processed", registry=r)
        self.batch_seconds = Histogram("stream_dec_batch_seconds", "Consume-to-commit time of a batch",
                                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                       registry=r)
        self.input_age = Histogram("stream_dec_input_age_seconds", "Age of a batch's last input when consumed, from "
                                   "its Kafka timestamp: how long inputs waited before the labeler",
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                                   registry=r)
        self.lag = Gauge("stream_dec_consumer_lag", "Messages behind the end of the assigned partitions", registry=r)
        self.model = ModelGauges(r, "Model version labelling now")
        self.samples_offered = Counter("stream_dec_samples_offered", "Samples written to the reservoir", registry=r)
        self.samples_skipped = Counter("stream_dec_samples_skipped", "Samples not written: Redis unavailable",
                                       registry=r)
        self.retries = Counter("stream_dec_retries", "Produce or commit attempts retried after an error",
                               ["operation"], registry=r)
        self.commit_failures = Counter("stream_dec_commit_failures", "Offset commits the broker refused (the "
                                       "inputs are labelled again after a restart or rebalance)", registry=r)
        self.version_errors = Counter("stream_dec_version_follower_errors", "Errors reading the versions topic "
                                      "(consumer errors and rejected records)", registry=r)


class UpdaterMetrics:
    """Counters and gauges of one updater (names prefixed ``stream_dec_``).

    The gauges of an update describe the last candidate the gate judged, published or not.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter("stream_dec_update_cycles", "Reservoir cycles run by this updater", registry=r)
        self.updates = Counter("stream_dec_updates", "Candidate versions by outcome: published, rejected by the "
                               "promotion gate, or dropped because the lease was lost", ["outcome"], registry=r)
        self.gate_failures = Counter("stream_dec_gate_failures", "Promotion-gate checks failed (limits: the "
                                     "update's agreement/drift/id limits; loss; held_out)", ["check"], registry=r)
        self.agreement = Gauge("stream_dec_update_agreement", "Label agreement of the last candidate with the "
                               "current version, on retained or on held-out old samples", ["samples"], registry=r)
        self.drift = Gauge("stream_dec_update_relative_drift", "Largest centre move of the last candidate, in "
                           "median gaps between neighbouring centres", registry=r)
        self.seconds = Histogram("stream_dec_update_seconds", "Time to build and judge a candidate (cold start, "
                                 "or strategy and promotion gate)",
                                 buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), registry=r)
        self.model = ModelGauges(r, "Current version (published or caught up)")
        self.clusters = Gauge("stream_dec_model_clusters", "Cluster ids of the current version", registry=r)
        self.leader = Gauge("stream_dec_updater_leader", "1 while this updater holds the lease", registry=r)
        self.reservoir = Gauge("stream_dec_reservoir_samples", "Samples in the reservoir's window and staging "
                               "area, at the last trigger check", ["area"], registry=r)
        self.window_age = Gauge("stream_dec_reservoir_window_age_seconds", "Age of the window's samples at the "
                                "last cycle (since a labeler offered them)", ["quantile"], registry=r)
        self.outages = Counter("stream_dec_updater_outages", "Broker or Redis errors the updater retried",
                               ["service"], registry=r)
        self.failures = Counter("stream_dec_updater_failures", "Update passes that failed with an unexpected "
                                "error (logged with its traceback; the updater carries on)", registry=r)
        self.bad_samples = Counter("stream_dec_reservoir_bad_samples", "Reservoir samples that could not be read "
                                   "(corrupt, or another width) and were removed", registry=r)
        self.lease_errors = Counter("stream_dec_lease_renewal_errors", "Lease renewals that failed with a Redis "
                                    "error (retried at the next tick)", registry=r)
        self.version_errors = Counter("stream_dec_version_follower_errors", "Errors reading the versions topic "
                                      "(consumer errors and rejected records)", registry=r)


class StatsLine:
    """Accumulates per-batch figures and logs one structured line per interval."""

    def __init__(self, interval_s: float) -> None:
        self.interval = interval_s
        self.dead_total = 0
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self.started, self.count, self.dead, self.latencies, self.ages = now, 0, 0, [], []

    def add(self, labels: int, dead_letters: int, seconds: float, age: float | None = None) -> None:
        """A batch: its labels and dead letters, seconds in the labeler, and its inputs' age when consumed."""
        self.count += labels
        self.dead += dead_letters
        self.dead_total += dead_letters
        self.latencies.append(seconds)
        if age is not None:
            self.ages.append(age)

    def due(self) -> bool:
        return time.monotonic() - self.started >= self.interval

    def emit(self, lag: int | None, version: int) -> None:
        now = time.monotonic()
        fields = {
            "event": "stats", "rate": round(self.count / max(now - self.started, 1e-9), 1),
            "labels": self.count, "dead_letters": self.dead, "dead_letters_total": self.dead_total,
            "batches": len(self.latencies), "batch_ms_p50": _milliseconds(self.latencies, 50),
            "batch_ms_p99": _milliseconds(self.latencies, 99), "input_age_ms_p50": _milliseconds(self.ages, 50),
            "input_age_ms_p99": _milliseconds(self.ages, 99), "lag": lag, "version": version,
        }
        log.info("stats", extra={"fields": fields})
        self._reset(now)


def _milliseconds(seconds: list[float], q: float) -> float | None:
    """The ``q``-th percentile of ``seconds`` in milliseconds, rounded to 0.01; None for none."""
    return round(float(np.percentile(np.asarray(seconds) * 1000, q)), 2) if seconds else None
