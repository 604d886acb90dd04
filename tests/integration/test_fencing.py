"""One history of versions: a leader paused past its lease cannot fork it (real Tansu, real Redis).

The pause is injected where it hurts: after the paused leader's last lease check and
before its publish (the thread publishing waits on an event, as a process under SIGSTOP
would). Meanwhile its lease expires and a second updater takes over; the first resumes
and publishes its version 2 before the second publishes its own version 2.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from stream_dec.stream.kafka import consumer_settings, producer_settings
from stream_dec.stream.labeler import build_labeler
from stream_dec.stream.reservoir import Reservoir, connect
from stream_dec.stream.versions import VersionFollower, VersionRejected
from tests.conftest import wordnet_slice
from tests.integration.conftest import make_updater
from tests.integration.reliability import Row

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


class PausedBeforePublish:
    """Wraps a real VersionPublisher: from the ``pause_at``-th publish on, each waits for ``resume``."""

    def __init__(self, publisher, pause_at: int) -> None:
        self.publisher, self.pause_at, self.calls = publisher, pause_at, 0
        self.paused, self.resume = threading.Event(), threading.Event()
        self.held: list = []
        self.outcome: list[str] = []

    def begin_tenure(self, epoch: int, timeout: float = 30.0) -> None:
        self.publisher.begin_tenure(epoch, timeout)

    def publish(self, version, timeout: float = 30.0) -> None:
        self.calls += 1
        if self.calls >= self.pause_at:
            self.held.append(version)
            self.paused.set()
            self.resume.wait(60)
        try:
            self.publisher.publish(version, timeout)
        except Exception as exc:
            self.outcome.append(type(exc).__name__)
            raise
        self.outcome.append("published")


def wait_until(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def offer(config, n: int, seed: int) -> None:
    X, _ = wordnet_slice(classes=6, per_class=50, seed=seed)
    Reservoir(connect(config.redis), config.model.name, config.reservoir.capacity).offer(
        [f"s{seed}-{i}" for i in range(n)], X[:n], time.time(), np.random.default_rng(seed))


@pytest.mark.parametrize("transactional", [True, False], ids=["transactions", "epoch-check-only"])
def test_a_leader_paused_past_its_lease_cannot_fork_the_history(loop_service, reliability, transactional):
    config = dataclasses.replace(
        loop_service,
        labeler=dataclasses.replace(loop_service.labeler, input_dim=384, model_dir=""),
        updater=dataclasses.replace(loop_service.updater, lease_ttl_ms=2000, transactional=transactional,
                                    interval_s=1e6),
        update=dataclasses.replace(loop_service.update, min_agreement=0.0, max_drift=10.0))  # every update passes
    seen: list[tuple[int, int, str]] = []  # every version a reader adopted, in order
    watcher = VersionFollower(consumer_settings(config), config.topics.versions, config.model.name)
    labeler = build_labeler(config, None, Consumer(consumer_settings(config)), Producer(producer_settings(config)),
                      follower=VersionFollower(consumer_settings(config), config.topics.versions, config.model.name),
                      reservoir=Reservoir(connect(config.redis), config.model.name, 300))
    first, second = make_updater(config), make_updater(config)
    first.publisher = PausedBeforePublish(first.publisher, pause_at=2)  # v1 goes out; v2 is held
    stop_watching = threading.Event()

    def watch() -> None:
        current = 0
        while not stop_watching.is_set():
            found = watcher.poll(current)
            if found is not None:
                seen.append((found.header.version, found.header.epoch, found.header.sha256))
                current = found.header.version
            time.sleep(0.01)

    threads = [threading.Thread(target=t, daemon=True) for t in (labeler.run, first.run, watch)]
    for t in threads:
        t.start()
    try:
        offer(config, 300, seed=40)
        wait_until(lambda: first.published == [1], what="the cold start")
        offer(config, 150, seed=41)
        assert first.publisher.paused.wait(60), "the first updater never reached its second publish"
        held = first.publisher.held[0]
        # paused past its lease: the second takes over, builds on version 1 and publishes version 2
        second_thread = threading.Thread(target=second.run, daemon=True)
        second_thread.start()
        wait_until(lambda: second.tenure > first.tenure, what="the takeover")
        first.publisher.resume.set()  # SIGCONT: the paused leader publishes its version 2 ...
        wait_until(lambda: first.publisher.outcome[1:], what="the late publish to finish")
        time.sleep(1.0)  # ... which every reader sees (or not) before the new leader's version 2
        rejected_late = watcher.rejected
        offer(config, 150, seed=42)
        wait_until(lambda: second.published == [2], what="the second updater's publish")
        time.sleep(1.0)
        winner = second.current
        second.stop.set()
        second_thread.join(30)  # releases the lease: the first may lead again and must catch up
        wait_until(lambda: first.current is not None and first.current.header.sha256 == winner.header.sha256,
                   timeout=30, what="the first updater to adopt the second's version 2")
    finally:
        first.publisher.resume.set()
        stop_watching.set()
        for updater in (first, second):
            updater.stop.set()
        labeler.stop.set()
        for t in threads:
            t.join(30)

    fresh = VersionFollower(consumer_settings(config), config.topics.versions, config.model.name).latest()
    served = {sha for _, _, sha in seen} | {labeler.predictor.header.sha256, fresh.header.sha256}
    forked = held.header.sha256 in served
    reliability(Row(f"updater paused past its lease, another publishes, then it resumes "
                    f"({'transactions' if transactional else 'epoch check only'})",
                    inputs=None, lost=0, duplicates=int(forked), dead_lettered=rejected_late,
                    crashes=first.failures + second.failures))
    assert held.header.version == 2 and held.header.epoch == 1 and winner.header.epoch == 2
    assert not forked  # the late version 2 never became a version anyone serves
    assert fresh.header.sha256 == winner.header.sha256 == labeler.predictor.header.sha256
    assert [(v, e) for v, e, _ in seen] == [(1, 1), (2, 2)]
    if first.publisher.outcome[1] == "published":  # landed (no fencing by the broker): readers rejected it
        assert rejected_late >= 1
    with pytest.raises(VersionRejected):
        watcher._judge(held.header, 2, "test")  # noqa: SLF001  (the rule every reader applies)
