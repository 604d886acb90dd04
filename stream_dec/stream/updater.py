"""The updater: one elected process that turns the reservoir into new model versions.

Each pass of :meth:`Updater.run`:

1. hold the lease (a second updater waits here; a dead holder's lease expires); on
   taking it, start the tenure: fence the previous leader's producer and write the
   lease's epoch marker (:class:`~stream_dec.stream.versions.VersionPublisher`);
2. catch up with the versions topic (the newest valid version is the current one);
3. when due (``update_every`` new samples offered, or ``interval_s`` passed):
   cycle the reservoir window, then
   - cold start (no version yet, ``min_initial`` samples staged): train DEC -> version 1;
   - otherwise run the configured strategy and the promotion gate
     (:func:`~stream_dec.continual.gate.promotion_gate`): the update's limits (agreement, drift, no permuted ids),
     DEC loss on the window not worse than the current version's (for an update that
     changed the encoder), and agreement >= ``min_agreement`` also on the old window's
     samples the cycle dropped (:meth:`Reservoir.held_out`), which the update never saw:
     a strategy that chooses by the retained samples at hand (``grow``, ``recentre``)
     can keep them and still relabel more old samples than it reports;
4. describe the new version's clusters on the window (:func:`~stream_dec.model.catalogue.build_catalogue`:
   sizes, drift, exemplars, terms of the samples' texts), renew the lease, then publish
   the new version with its catalogue, stamped with the lease's epoch: a
   publish that lands after a newer leader's marker (this one was paused past its
   lease) is rejected by every reader; a failed gate keeps the current version and logs
   why. The reservoir cycle, too, runs only while the lease is ours (checked in Redis).

Every step is counted in :class:`~stream_dec.stream.observability.UpdaterMetrics`
(served on ``[metrics] port``); each gate decision is one log line (``event: gate``).
A broker or Redis outage is logged and retried with backoff (see :meth:`Updater.run`);
so is any other failure of a pass (a bad sample, a strategy that fails on a window):
no data can put the updater in a crash loop. Unreadable reservoir samples are removed
and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import redis
from confluent_kafka import KafkaException

from stream_dec.config import Config, UpdaterConfig
from stream_dec.continual import Strategy, Update, Window, apply_strategy, limits_of, make_strategy
from stream_dec.continual.gate import Limits, Verdict, promotion_gate
from stream_dec.model import DEC, ModelVersion, fit_dec
from stream_dec.model.training import TrainReport
from stream_dec.model.catalogue import Catalogue, build_catalogue
from stream_dec.stream.kafka import VERSION_BYTES, Backoff, client_settings, producer_settings
from stream_dec.stream.lease import Lease
from stream_dec.stream.observability import UpdaterMetrics
from stream_dec.stream.reservoir import LeaseLost, Reservoir, WindowSamples
from stream_dec.stream.versions import Fenced, VersionFollower, VersionPublisher

log = logging.getLogger("stream_dec.updater")


class Updater:
    """One updater process; see the module docstring. :func:`build_updater` wires one from a config.

    Parameters
    ----------
    settings
        Its ``[updater]`` section: triggers, cold start size, poll, catalogue texts.
    reservoir, lease, publisher, follower
        The Redis reservoir and lease, and the versions topic's writer and reader.
    replace_fraction
        Share of the window each cycle replaces (``[reservoir] replace_fraction``).
    first_version
        Trains version 1 on the cold-start window: ``X -> (model, TrainReport)``.
    strategy
        Makes the update strategy for one cycle from a seed.
    limits
        The promotion gate's limits.
    seed, metrics
        Seed of its random choices (reservoir cycles, strategy seeds); its Prometheus collectors.

    ``cycles``, ``published``, ``rejections``, ``gates``, ``failures`` and :attr:`metrics`
    record what it did.
    """

    def __init__(self, settings: UpdaterConfig, reservoir: Reservoir, lease: Lease, publisher: VersionPublisher,
                 follower: VersionFollower, *, replace_fraction: float,
                 first_version: Callable[[np.ndarray], tuple[DEC, TrainReport]],
                 strategy: Callable[[int], Strategy], limits: Limits, seed: int = 0,
                 metrics: UpdaterMetrics | None = None) -> None:
        self.settings, self.replace_fraction = settings, replace_fraction
        self.first_version, self.strategy, self.limits = first_version, strategy, limits
        self.reservoir, self.lease, self.publisher, self.follower = reservoir, lease, publisher, follower
        self.tenure = 0
        """The lease epoch whose marker this updater wrote (0: none yet, or fenced since)."""
        self.rng = np.random.default_rng(seed)
        self.stop = threading.Event()
        self.current: ModelVersion | None = None
        self.catalogue: Catalogue | None = None
        """The catalogue of the last version this updater published."""
        self.last_update = time.monotonic()
        self.published: list[int] = []
        self.cycles = 0
        self.rejections: list[str] = []
        self.gates: deque[dict] = deque(maxlen=1000)
        """The latest gate decisions: the ``event: gate`` log fields plus ``at`` (``time.monotonic()``)
        and ``reasons``."""
        self.failures = 0
        self.metrics = metrics or UpdaterMetrics()

    def run(self) -> None:
        """Loop until :attr:`stop` is set; release the lease on the way out.

        An unreachable broker or Redis is logged and retried with backoff: the updater
        never exits for it. Any other error of a pass is logged with its traceback,
        counted (``stream_dec_updater_failures``) and retried after the backoff too. A
        version whose publication failed is not adopted; if its record still lands, the
        next catch-up adopts it (first record of a number wins everywhere, since every
        reader follows the topic in order).
        """
        poll_ms = int(self.settings.poll_s * 1000)
        backoff = Backoff(max(poll_ms, 1), max(poll_ms, 30_000))
        waiting_logged = False
        try:
            while not self.stop.is_set():
                try:
                    if not self.lead():
                        if not waiting_logged:
                            log.info("another updater holds the lease (%s); waiting", self.lease.holder())
                            waiting_logged = True
                        self.stop.wait(self.settings.poll_s)
                        continue
                    waiting_logged = False
                    self.catch_up()
                    if self.due():
                        self.update()
                    backoff.reset()
                    self.stop.wait(self.settings.poll_s)
                except (KafkaException, redis.RedisError) as exc:
                    delay = backoff.next_delay()
                    service = "redis" if isinstance(exc, redis.RedisError) else "kafka"
                    self.metrics.outages.labels(service).inc()
                    log.warning("%s unavailable (%s); retrying in %.1fs", service, exc, delay)
                    self.stop.wait(delay)
                except Exception:  # noqa: BLE001 - no data may stop the updater; the traceback is logged
                    delay = backoff.next_delay()
                    self.failures += 1
                    self.metrics.failures.inc()
                    log.exception("update pass failed; the updater carries on in %.1fs", delay)
                    self.stop.wait(delay)
        finally:
            self.metrics.leader.set(0)
            try:
                self.lease.release()
            except redis.RedisError as exc:
                log.warning("could not release the lease (%s); it expires by itself", exc)

    def lead(self) -> bool:
        """Hold the lease (step 1); True while this updater is the leader.

        On taking it (a new epoch), start the tenure before anything else: fence older
        leaders and mark the epoch on the versions topic (:meth:`begin_tenure`).
        """
        leader = self.lease.acquire()
        self.metrics.leader.set(int(leader))
        if leader and self.tenure != self.lease.epoch:
            self.begin_tenure()
        return leader

    def begin_tenure(self) -> None:
        """Just took the lease: fence older leaders and mark the epoch on the topic, before reading it."""
        self.publisher.begin_tenure(self.lease.epoch)
        self.tenure = self.lease.epoch
        log.info("holding the lease, epoch %d: older leaders are fenced", self.tenure)

    def catch_up(self) -> None:
        """Adopt the newest valid version on the topic (another updater may have published)."""
        current = self.current.header.version if self.current else 0
        newer = self.follower.latest(current)
        if newer is not None:
            self._adopt(newer)
            log.info("current version is %d", newer.header.version)

    def _adopt(self, version: ModelVersion) -> None:
        self.current = version
        self.metrics.model.show(version.header)
        self.metrics.clusters.set(version.header.n_clusters)

    def due(self) -> bool:
        sizes = self.reservoir.sizes()
        for area in ("window", "staging"):
            self.metrics.reservoir.labels(area).set(sizes[area])
        if self.current is None:
            return sizes["staging"] >= self.settings.min_initial
        elapsed = time.monotonic() - self.last_update
        return sizes["seen"] >= self.settings.update_every or (sizes["seen"] > 0 and
                                                               elapsed >= self.settings.interval_s)

    def update(self) -> ModelVersion | None:
        """One update cycle (steps 3-4); returns the published version, if any."""
        self.last_update = time.monotonic()
        self.cycles += 1
        self.metrics.cycles.inc()
        fraction = self.replace_fraction if self.current else 1.0
        try:
            self.reservoir.cycle(fraction, self.rng, lease=(self.lease.key, self.lease.token),
                                 next_fraction=self.replace_fraction if self.current else None)
        except LeaseLost as exc:
            self.metrics.updates.labels("lease_lost").inc()
            log.warning("%s", exc)
            return None
        dim = self.current.header.dims[0] if self.current else None
        window = self.reservoir.window(dim)
        held_out = self.reservoir.held_out(window.X.shape[1]) if self.current else None
        removed = window.removed + (held_out.removed if held_out else 0)
        if removed:
            self.metrics.bad_samples.inc(removed)
            log.warning("removed %d unreadable reservoir samples (corrupt, or not %s wide)", removed,
                        window.X.shape[1])
        if len(window.ids):
            ages = time.time() - window.arrived
            oldest, median = float(ages.max()), float(np.median(ages))
            self.metrics.window_age.labels("oldest").set(oldest)
            self.metrics.window_age.labels("median").set(median)
            log.info("update cycle: window of %d (%d retained), samples %.0f s old (median), the oldest %.0f s",
                     len(window.ids), window.kept, median, oldest)
        if len(window.ids) < 2:
            log.warning("update cycle: a window of %d samples is too small to train on; skipped", len(window.ids))
            return None
        started = time.perf_counter()
        with self.lease.kept() as lost:  # training may outlast the lease's lifetime
            candidate = (self._cold_start(window.X) if self.current is None
                         else self._continual(window.X, window.retained, held_out.X))
        self.metrics.seconds.observe(time.perf_counter() - started)
        if candidate is None:
            return None
        if lost.is_set() or not self.lease.renew():
            self.metrics.updates.labels("lease_lost").inc()
            log.warning("lost the lease during the update; version %d not published", candidate.header.version)
            return None
        candidate = candidate.stamped(self.lease.epoch)
        catalogue = self._catalogue(candidate, window)
        log.info("publishing version %d (lease epoch %d)", candidate.header.version, candidate.header.epoch)
        try:
            self.publisher.publish(candidate, catalogue)
        except Fenced as exc:
            self.tenure = 0
            self.metrics.updates.labels("lease_lost").inc()
            log.warning("%s", exc)
            return None
        self.follower.adopt(candidate)
        self._adopt(candidate)
        self.catalogue = catalogue
        self.metrics.updates.labels("published").inc()
        self.published.append(candidate.header.version)
        log.info("published version %d (%s) after %.1fs", candidate.header.version, candidate.header.strategy,
                 time.perf_counter() - started)
        return candidate

    def _catalogue(self, candidate: ModelVersion, window: WindowSamples) -> Catalogue | None:
        """The candidate's cluster catalogue on the window; None (logged) if it cannot be made:
        a catalogue never holds a version back."""
        parent = self.current
        previous = self.catalogue if self.catalogue and parent and self.catalogue.version == parent.header.version \
            else None
        try:
            return build_catalogue(candidate.to_model(), window.X, window.ids, window.texts or None,
                                   version=candidate.header.version, parent=parent, previous=previous,
                                   n_texts=self.settings.catalogue_texts)
        except Exception:  # noqa: BLE001 - the version is published without it
            log.exception("could not build the cluster catalogue of version %d", candidate.header.version)
            return None

    def _cold_start(self, X: np.ndarray) -> ModelVersion:
        model, report = self.first_version(X)
        metrics = {"loss": report.self_train.loss, "seconds": sum(report.seconds.values())}
        return ModelVersion.from_model(model, version=1, strategy="train", metrics=metrics)

    def _continual(self, X: np.ndarray, retained: np.ndarray, held_out: np.ndarray) -> ModelVersion | None:
        strategy = self.strategy(int(self.rng.integers(2**31)))
        update = apply_strategy(strategy, self.current, Window.of(X, retained), self.limits)
        verdict = promotion_gate(update, held_out, self.limits)
        self._record(update, verdict)
        if not verdict.passed:
            self.metrics.updates.labels("rejected").inc()
            self.rejections.append(verdict.reasons)
            log.warning("update rejected by the promotion gate, keeping version %d: %s",
                        self.current.header.version, verdict.reasons)
            return None
        return update.to_version()

    def _record(self, update: Update, verdict: Verdict) -> None:
        """The gate's figures as metrics and one structured log line (``event: gate``)."""
        report, m = update.report, self.metrics
        m.agreement.labels("retained").set(report.agreement)
        if verdict.held_out_agreement is not None:
            m.agreement.labels("held_out").set(verdict.held_out_agreement)
        m.drift.set(report.relative_drift_max)
        for check in verdict.failed:
            m.gate_failures.labels(check).inc()
        fields = {"event": "gate", "passed": verdict.passed, "strategy": report.strategy,
                  "current_version": self.current.header.version, "agreement": report.agreement,
                  "held_out_agreement": verdict.held_out_agreement, "relative_drift": report.relative_drift_max,
                  "loss": report.loss, "previous_loss": report.previous_loss,
                  "clusters": update.proposal.model.n_clusters, "seconds": report.seconds, "failed": verdict.failed}
        self.gates.append({**fields, "at": time.monotonic(), "reasons": verdict.reasons})
        log.info("promotion gate: %s (held-out agreement %s)", "pass" if verdict.passed else "fail",
                 "n/a" if verdict.held_out_agreement is None else f"{verdict.held_out_agreement:.4f}",
                 extra={"fields": fields})


def build_updater(config: Config, client: redis.Redis, metrics: UpdaterMetrics | None = None) -> Updater:
    """An :class:`Updater` wired from ``config``: reservoir and lease on ``client``, publisher and
    follower on the versions topic, failures counted in ``metrics``."""
    metrics = metrics or UpdaterMetrics()
    name = config.model.name
    publisher = VersionPublisher({**producer_settings(config), "message.max.bytes": VERSION_BYTES},
                                 config.topics.versions, name, transactional=config.updater.transactional)
    return Updater(config.updater,
                   Reservoir(client, name, config.reservoir.capacity, config.reservoir.staging_capacity or None),
                   Lease(client, f"stream-dec:{name}:updater-lease", config.updater.lease_ttl_ms,
                         on_renewal_error=metrics.lease_errors.inc),
                   publisher,
                   VersionFollower(client_settings(config, "consumer"), config.topics.versions, name,
                                   on_error=metrics.version_errors.inc),
                   replace_fraction=config.reservoir.replace_fraction,
                   first_version=lambda X: fit_dec(X, config.model, config.train, config.model.clusters),
                   strategy=lambda seed: make_strategy(config.update.strategy, config, seed=seed),
                   limits=limits_of(config), seed=config.train.seed, metrics=metrics)
