"""Reservoir -> updater -> versions topic -> labelers, with the real broker and Redis."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import orjson
import pytest
from confluent_kafka import Consumer, Producer

from stream_dec.cli import main
from stream_dec.config import TranslateConfig, kafka_settings
from stream_dec_lab.demo import DEMO_DATA
from stream_dec.continual import Limits, Window, apply_strategy
from stream_dec.continual.translate import Translate
from stream_dec.model import DEC, ModelVersion
from stream_dec.model.metrics import label_agreement
from stream_dec.model.predictor import Predictor
from stream_dec.stream.kafka import VERSION_BYTES, consumer_settings, ensure_topics, producer_settings
from stream_dec.stream.labeler import build_labeler
from stream_dec.stream.observability import serve
from stream_dec.stream.reservoir import Reservoir, connect
from stream_dec.stream.updater import Updater
from stream_dec.stream.versions import (
    MAGIC,
    VersionFollower,
    VersionRejected,
    catalogue_key,
    decode_record,
    encode_record,
    epoch_key,
    publish,
    read_catalogues,
)
from tests.conftest import wordnet_slice
from tests.integration.conftest import (
    float32_record,
    make_updater,
    free_port,
    produce,
    read_all,
    start_tansu,
    to_toml,
    wait_for_line,
    wait_for_records,
)
from tests.integration.reliability import Row, account

pytestmark = pytest.mark.integration


def follower(config) -> VersionFollower:
    return VersionFollower(kafka_settings(config, "consumer"), config.topics.versions, config.model.name)


def versions_producer(config) -> Producer:
    return Producer({"bootstrap.servers": config.kafka["bootstrap.servers"], "message.max.bytes": VERSION_BYTES})


def translated(version: ModelVersion, X: np.ndarray) -> ModelVersion:
    return apply_strategy(Translate(ratio=1.0), version, Window.of(X), Limits(10, 0)).to_version()


def test_labeler_hot_swaps_between_batches_and_labels_carry_the_version(loop_service):
    config = loop_service
    v1 = ModelVersion.load(config.labeler.model_dir)
    X, _ = wordnet_slice(classes=6, per_class=40, seed=12)
    labeler = build_labeler(config, Predictor(v1, "cpu"), Consumer(consumer_settings(config)),
                      Producer(producer_settings(config)), follower=follower(config))
    thread = threading.Thread(target=labeler.run, daemon=True)
    thread.start()
    bootstrap = config.kafka["bootstrap.servers"]
    produce(bootstrap, config.topics.embeddings, [float32_record(f"a{i}", x) for i, x in enumerate(X)])
    assert len(read_all(bootstrap, config.topics.labels, len(X))) == len(X)
    v2 = translated(v1, X)
    publish(versions_producer(config), config.topics.versions, config.model.name, v2)
    deadline = time.monotonic() + 30
    while labeler.predictor.version != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    produce(bootstrap, config.topics.embeddings, [float32_record(f"b{i}", x) for i, x in enumerate(X)])
    labels = [orjson.loads(m.value()) for m in read_all(bootstrap, config.topics.labels, 2 * len(X))]
    labeler.stop.set()
    thread.join(30)
    after = {label["id"]: label for label in labels if label["id"].startswith("b")}
    expected = v2.to_model().predict(X)[0]
    assert all(after[f"b{i}"]["version"] == 2 and after[f"b{i}"]["cluster"] == expected[i] for i in range(len(X)))
    assert all(label["version"] == 1 for label in labels if label["id"].startswith("a"))
    assert labeler.metrics.model.version._value.get() == 2


@pytest.mark.reliability
def test_hostile_version_records_are_rejected_and_the_labeler_keeps_its_version(loop_service, reliability):
    config = loop_service
    v1 = ModelVersion.load(config.labeler.model_dir)
    X, _ = wordnet_slice(classes=6, per_class=10, seed=13)
    v2 = translated(v1, X)
    good = encode_record(v2)
    header_length = int.from_bytes(good[4:8], "big")
    tampered = bytearray(good)
    tampered[-1] ^= 0xFF
    evil = pickle.dumps({"boom": 1})
    header = json.loads(good[8:8 + header_length]) | {"sha256": hashlib.sha256(evil).hexdigest()}
    header_bytes = json.dumps(header).encode()
    pickled = MAGIC + len(header_bytes).to_bytes(4, "big") + header_bytes + evil
    wrong_shape = encode_record(ModelVersion.from_model(DEC((100, 8), 6), version=3))
    deep = b'{"a": ' * 5000 + b"1" + b"}" * 5000
    deep_json = MAGIC + len(deep).to_bytes(4, "big") + deep + good[8 + header_length:]
    infinite = json.dumps(json.loads(good[8:8 + header_length]) | {"latent_radius": 1e999}).encode()
    inf_radius = MAGIC + len(infinite).to_bytes(4, "big") + infinite + good[8 + header_length:]
    producer = versions_producer(config)
    for key, value in [(config.model.name, bytes(tampered)), (config.model.name, good[:200]),
                       (config.model.name, pickled), (config.model.name, wrong_shape),
                       (config.model.name, encode_record(v1)), ("other-model", good), (config.model.name, b"junk"),
                       (config.model.name, deep_json), (config.model.name, inf_radius)]:
        producer.produce(config.topics.versions, value, key.encode())
    producer.flush(10)
    watcher = follower(config)
    adopted = watcher.latest(current=1, dim=384)
    rejected = watcher.rejected
    publish(producer, config.topics.versions, config.model.name, v2)
    deadline, found = time.monotonic() + 10, None
    while found is None and time.monotonic() < deadline:  # the follower also sees records that arrive later
        found = watcher.poll(1, 384)
    reliability(Row("hostile version records (checksum, truncated, pickle, shapes, stale, key, junk, deep JSON, "
                    "infinite radius) + 1 good", inputs=10, labels=None, lost=int(found is None), duplicates=None,
                    dead_lettered=rejected))
    assert adopted is None and rejected == 9
    assert found is not None and found.header.version == 2


def test_two_updaters_one_publishes(loop_service):
    config = loop_service
    X, _ = wordnet_slice(classes=6, per_class=50, seed=14)
    reservoir = Reservoir(connect(config.redis), config.model.name, config.reservoir.capacity)
    reservoir.offer([f"s{i}" for i in range(len(X))], X, time.time(), np.random.default_rng(0))
    updaters = [make_updater(config), make_updater(config)]
    threads = [threading.Thread(target=u.run, daemon=True) for u in updaters]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while not any(u.published for u in updaters) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    for u in updaters:
        u.stop.set()
    for t in threads:
        t.join(30)
    assert sorted(len(u.published) for u in updaters) == [0, 1]
    assert follower(config).latest().header.version == 1


def test_texts_ride_from_json_input_to_the_catalogue_published_with_the_version(loop_service, tmp_path, capsys):
    config = dataclasses.replace(loop_service, labeler=dataclasses.replace(loop_service.labeler, input_dim=384))
    with np.load(DEMO_DATA) as demo:  # real WordNet definitions and their embeddings
        rows = np.flatnonzero(demo["y"] < 6)[:300]
        X, texts = demo["X"][rows].astype(np.float32), [str(t) for t in demo["texts"][rows]]
    produce(config.kafka["bootstrap.servers"], config.topics.embeddings,
            [(f"t{i}".encode(), orjson.dumps({"id": f"t{i}", "embedding": x.tolist(), "text": texts[i]}),
              [("content-type", b"application/json")]) for i, x in enumerate(X)])
    labeler = build_labeler(config, None, Consumer(consumer_settings(config)), Producer(producer_settings(config)),
                      follower=follower(config),
                      reservoir=Reservoir(connect(config.redis), config.model.name, config.reservoir.capacity))
    thread = threading.Thread(target=labeler.run, daemon=True)
    thread.start()
    updater = run_until_published(make_updater(config), timeout=120)
    labeler.stop.set()
    thread.join(30)
    assert updater.published == [1]
    headers, catalogues = read_catalogues(kafka_settings(config, "consumer"), config.topics.versions,
                                          config.model.name)
    catalogue = catalogues[1]
    assert sorted(headers) == [1]
    labels, _ = updater.current.to_model().predict(X)
    assert catalogue.samples == 300 and [c.size for c in catalogue.clusters] == np.bincount(labels, minlength=6).tolist()
    for card in catalogue.clusters:  # terms, texts and exemplars come from the cluster's own members
        members = [texts[i] for i in np.flatnonzero(labels == card.cluster)]
        assert all(labels[int(e[1:])] == card.cluster for e in card.exemplars)
        assert all(any(m.startswith(t) for m in members) for t in card.texts)
        assert len(card.texts) == min(3, len(members))
        assert all(term in " ".join(members).lower() for term in card.terms) and (card.terms or not members)
    status = main(["inspect", "--versions-topic", config.topics.versions, "--config",
                   str(updater_toml(config, tmp_path / "u.toml")[-1])])
    stdout = capsys.readouterr().out
    assert status == 0 and stdout.startswith("version 1: 6 clusters on 300 samples") and "terms: " in stdout


def updater_toml(config, path) -> list[str]:
    """Write ``config`` as the TOML an `update-loop` process reads; its command line."""
    data = {"kafka": {"bootstrap.servers": config.kafka["bootstrap.servers"]},
            "topics": dataclasses.asdict(config.topics),
            "model": {**dataclasses.asdict(config.model), "hidden_dims": list(config.model.hidden_dims)},
            "train": dataclasses.asdict(config.train), "update": dataclasses.asdict(config.update),
            "reservoir": dataclasses.asdict(config.reservoir), "redis": dataclasses.asdict(config.redis),
            "updater": dataclasses.asdict(config.updater), "log": {"format": "text", "level": "INFO"}}
    path.write_text(to_toml(data))
    return [sys.executable, "-m", "stream_dec", "update-loop", "--config", str(path)]


def run_until_published(updater: Updater, timeout: float = 60.0) -> Updater:
    """Run ``updater`` in a thread until it publishes a version (or the timeout); stop it."""
    thread = threading.Thread(target=updater.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not updater.published and time.monotonic() < deadline:
        time.sleep(0.2)
    updater.stop.set()
    thread.join(30)
    return updater


def version_messages(config, timeout: float = 3.0) -> list:
    """The records of the versions topic, in order, without the updaters' epoch markers and catalogues."""
    records = read_all(config.kafka["bootstrap.servers"], config.topics.versions, 10**6, timeout=timeout)
    return [m for m in records if m.key() not in (epoch_key(config.model.name), catalogue_key(config.model.name))]


def versions_on_topic(config) -> list[int]:
    """Version numbers of every version record on the versions topic, in order; -1 for one that fails to
    decode (the updaters' epoch markers and catalogues are left out)."""
    numbers = []
    for message in version_messages(config):
        try:
            numbers.append(decode_record(message.value(), source="test", model=config.model.name,
                                         key=message.key()).header.version)
        except VersionRejected:
            numbers.append(-1)
    return numbers


@pytest.mark.reliability
def test_updater_killed_mid_update_the_next_takes_over_after_the_lease(loop_service, tmp_path, reliability):
    config = loop_service
    slow = dataclasses.replace(config, train=dataclasses.replace(config.train, pretrain_epochs=400))
    X, _ = wordnet_slice(classes=6, per_class=50, seed=15)
    Reservoir(connect(config.redis), config.model.name, 300).offer([f"s{i}" for i in range(300)], X, time.time(),
                                                            np.random.default_rng(1))
    log_path = tmp_path / "first.log"
    first = subprocess.Popen(updater_toml(slow, tmp_path / "updater.toml"), stderr=open(log_path, "w"))
    wait_for_line(log_path, "update cycle")
    first.send_signal(signal.SIGKILL)  # mid fine-tune: the lease is never released
    first.wait(10)
    half_published = follower(config).latest()
    Reservoir(connect(config.redis), config.model.name, 300).offer([f"t{i}" for i in range(300)], X, time.time(),
                                                            np.random.default_rng(2))
    second = make_updater(config)
    lease_held = not second.lease.acquire()  # the dead updater's lease is still there ...
    run_until_published(second)
    numbers = versions_on_topic(config)
    reliability(Row("updater kill -9 mid fine-tune; next updater after the lease", inputs=None, labels=None,
                    lost=int(second.published != [1]), duplicates=len(numbers) - len(set(numbers)),
                    dead_lettered=numbers.count(-1), crashes=int("Traceback" in log_path.read_text())))
    assert half_published is None  # nothing half-published
    assert lease_held
    assert second.published == [1]  # ... until it expires; then the next updater publishes
    assert numbers == [1]


@pytest.mark.reliability
def test_updater_killed_mid_publish_labelers_keep_a_whole_version(loop_service, tmp_path, reliability):
    """The broker is paused so the kill lands inside publish(); a version is one record: whole or absent."""
    port = free_port()
    broker = start_tansu(port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = dataclasses.replace(  # the test is about publishing: an EWC fine-tune (~1 s) the gate lets through
        loop_service, kafka={**loop_service.kafka, "bootstrap.servers": f"127.0.0.1:{port}"},
        update=dataclasses.replace(loop_service.update, strategy="ewc", min_agreement=0.0, max_drift=10.0),
        updater=dataclasses.replace(loop_service.updater, max_loss_increase=10.0))
    bootstrap = config.kafka["bootstrap.servers"]
    v1 = ModelVersion.load(config.labeler.model_dir)
    labeler, first = None, None
    try:
        ensure_topics(config)
        publish(versions_producer(config), config.topics.versions, config.model.name, v1)
        X, _ = wordnet_slice(classes=6, per_class=50, seed=19)
        Reservoir(connect(config.redis), config.model.name, 300).offer([f"s{i}" for i in range(300)], X, time.time(),
                                                                np.random.default_rng(3))
        labeler = build_labeler(config, Predictor(v1, "cpu"), Consumer(consumer_settings(config)),
                          Producer(producer_settings(config)), follower=follower(config))
        labeling = threading.Thread(target=labeler.run, daemon=True)
        labeling.start()
        inputs = produce(bootstrap, config.topics.embeddings, [float32_record(f"a{i}", x) for i, x in enumerate(X)])
        wait_for_records(bootstrap, config.topics.labels, len(X))
        log_path = tmp_path / "first.log"
        first = subprocess.Popen(updater_toml(config, tmp_path / "updater.toml"), stderr=open(log_path, "w"))
        wait_for_line(log_path, "update cycle")
        broker.send_signal(signal.SIGSTOP)
        wait_for_line(log_path, "publishing version 2")
        time.sleep(0.5)  # inside publish(), waiting for the paused broker's acknowledgement
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        broker.send_signal(signal.SIGCONT)
        inputs |= produce(bootstrap, config.topics.embeddings, [float32_record(f"b{i}", x) for i, x in enumerate(X)])
        labels = read_all(bootstrap, config.topics.labels, 2 * len(X), timeout=60)
        landed = versions_on_topic(config)  # [1] or [1, 2]: the request may have reached the broker whole
        Reservoir(connect(config.redis), config.model.name, 300).offer([f"t{i}" for i in range(300)], X, time.time(),
                                                                np.random.default_rng(4))
        second = run_until_published(make_updater(config))
        numbers = versions_on_topic(config)
        versions_seen = {orjson.loads(m.value())["version"] for m in labels}
        row = account("updater kill -9 mid-publish (broker paused); labeler running", inputs, labels,
                      crashes=int(not labeling.is_alive()) + int("Traceback" in log_path.read_text()))
        reliability(dataclasses.replace(row, lost=row.lost + int(second.published != [max(landed) + 1]),
                                        duplicates=row.duplicates + len(numbers) - len(set(numbers)),
                                        dead_lettered=numbers.count(-1)))
        assert landed in ([1], [1, 2]) and -1 not in numbers  # never a half-written record
        assert second.published == [max(landed) + 1]  # the next version number
        assert versions_seen <= set(landed)  # labels carry a whole version: the old one, or the landed one
        assert row.lost == 0 and row.duplicates == 0 and row.crashes == 0
    finally:
        broker.send_signal(signal.SIGCONT)
        if labeler is not None:
            labeler.stop.set()
        if first is not None and first.poll() is None:
            first.kill()
        broker.terminate()
        broker.wait(10)


def test_cold_start_from_an_empty_system_labels_every_input(loop_service):
    """No model anywhere: labelers sample the stream, the updater trains v1, then everything is labelled."""
    config = loop_service
    config = dataclasses.replace(config, labeler=dataclasses.replace(config.labeler, input_dim=384, model_dir=""),
                                 updater=dataclasses.replace(config.updater, update_every=10**6, interval_s=1e6))
    started = time.time()
    labeler = build_labeler(config, None, Consumer(consumer_settings(config)), Producer(producer_settings(config)),
                      follower=follower(config), reservoir=Reservoir(connect(config.redis), config.model.name, 300))
    updater = make_updater(config)
    threads = [threading.Thread(target=labeler.run, daemon=True), threading.Thread(target=updater.run, daemon=True)]
    for t in threads:
        t.start()
    X, _ = wordnet_slice(classes=6, per_class=60, seed=16)
    bootstrap = config.kafka["bootstrap.servers"]
    produce(bootstrap, config.topics.embeddings, [float32_record(f"c{i}", x) for i, x in enumerate(X)])
    labels = [orjson.loads(m.value()) for m in read_all(bootstrap, config.topics.labels, len(X), timeout=90)]
    labeler.stop.set()
    updater.stop.set()
    for t in threads:
        t.join(30)
    assert updater.published == [1]  # only the cold start can run: update_every is out of reach
    oldest, median = (updater.metrics.window_age.labels(q)._value.get() for q in ("oldest", "median"))
    assert 0 <= median <= oldest <= time.time() - started  # the window trained on: samples of this test
    assert sorted({label["id"] for label in labels}) == sorted(f"c{i}" for i in range(len(X)))
    assert labeler.metrics.samples_offered._value.get() == len(X)  # sampled once, not again after the seek back
    by_id = {label["id"]: label for label in labels}
    expected = follower(config).latest().to_model().predict(X)[0]
    assert all(by_id[f"c{i}"]["version"] == 1 and by_id[f"c{i}"]["cluster"] == expected[i] for i in range(len(X)))


@pytest.mark.parametrize("gate", ["loose", "strict"])
def test_updater_metrics_follow_the_gate(loop_service, gate):
    """A cold start, then one continual update that the gate lets through (loose) or stops
    (strict: translate all the way, no label may change); the updater's Prometheus metrics,
    scraped over HTTP, say what happened, and the held-out gauge is the agreement of the two
    versions on the samples the cycle dropped."""
    config = loop_service
    limits = ({"strategy": "ewc", "min_agreement": 0.0, "max_drift": 10.0} if gate == "loose" else
              {"strategy": "translate", "translate": TranslateConfig(ratio=1.0), "min_agreement": 1.0})
    config = dataclasses.replace(config, update=dataclasses.replace(config.update, **limits),
                                 updater=dataclasses.replace(config.updater, max_loss_increase=10.0))
    X, _ = wordnet_slice(classes=6, per_class=50, seed=20)
    reservoir = Reservoir(connect(config.redis), config.model.name, config.reservoir.capacity)
    reservoir.offer([f"s{i}" for i in range(len(X))], X, time.time(), np.random.default_rng(5))
    updater = make_updater(config)
    port = free_port()
    serve(updater.metrics.registry, "127.0.0.1", port)
    thread = threading.Thread(target=updater.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not updater.published and time.monotonic() < deadline:
        time.sleep(0.2)
    new, _ = wordnet_slice(classes=12, per_class=25, seed=21)  # half of the classes are new
    reservoir.offer([f"t{i}" for i in range(len(new))], new, time.time(), np.random.default_rng(6))
    while len(updater.published) + len(updater.rejections) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    updater.stop.set()
    thread.join(30)
    value = updater.metrics.registry.get_sample_value
    held_out = value("stream_dec_update_agreement", {"samples": "held_out"})
    assert updater.cycles == 2 and value("stream_dec_update_cycles_total") == 2
    assert value("stream_dec_updater_leader") == 0  # released on the way out
    if gate == "loose":
        assert updater.published == [1, 2] and updater.rejections == []
        assert value("stream_dec_updates_total", {"outcome": "published"}) == 2
        assert value("stream_dec_model_version") == 2 and 'stream_dec_model_version 2.0' in scraped
        assert 'stream_dec_updates_total{outcome="published"} 2.0' in scraped
        v1, v2 = (decode_record(m.value(), source="test", model=config.model.name, key=m.key()).to_model()
                  for m in version_messages(config))
        dropped = reservoir.held_out().X
        assert len(dropped) == 150  # the cold-start window's dropped half
        assert held_out == label_agreement(v1.predict(dropped)[0], v2.predict(dropped)[0])
    else:
        assert updater.published == [1] and len(updater.rejections) == 1
        assert value("stream_dec_updates_total", {"outcome": "rejected"}) == 1
        assert value("stream_dec_gate_failures_total", {"check": "limits"}) == 1
        assert value("stream_dec_gate_failures_total", {"check": "held_out"}) == 1
        assert value("stream_dec_model_version") == 1 and 'outcome="rejected"} 1.0' in scraped
        assert held_out < 1.0
    assert value("stream_dec_model_clusters") == 6
    assert 0 <= value("stream_dec_update_agreement", {"samples": "retained"}) <= 1
    assert value("stream_dec_update_seconds_count") == 2


def test_a_caught_up_follower_answers_at_once(loop_service):
    """latest() once waited a whole second for records that were not coming, on every call."""
    config = loop_service
    v1 = ModelVersion.load(config.labeler.model_dir)
    publish(versions_producer(config), config.topics.versions, config.model.name, v1)
    reader = follower(config)
    assert reader.latest().header.version == 1
    started = time.monotonic()
    assert reader.latest(current=1) is None
    assert time.monotonic() - started < 0.5
    reader.close()


def cold_started(config, X, seed: int):
    """The reservoir with ``X`` offered, and an updater that leads and has published version 1 from it."""
    reservoir = Reservoir(connect(config.redis), config.model.name, config.reservoir.capacity)
    reservoir.offer([f"s{i}" for i in range(len(X))], X, time.time(), np.random.default_rng(seed))
    updater = make_updater(config)
    assert updater.lead()
    assert updater.update().header.version == 1
    return reservoir, updater


@pytest.mark.reliability
def test_a_diverged_fine_tune_is_rejected_and_the_current_version_keeps_serving(loop_service, reliability):
    """A fine-tune whose learning rate blows the weights up to Inf/NaN: the gate fails closed
    (NaN compares false with every limit), nothing is published, version 1 stays current."""
    config = loop_service
    config = dataclasses.replace(config, update=dataclasses.replace(
        config.update, strategy="refit", min_agreement=0.0, max_drift=1e30,
        finetune=dataclasses.replace(config.update.finetune, lr=1e20, epochs=1.0)),
        updater=dataclasses.replace(config.updater, max_loss_increase=1e30))
    X, _ = wordnet_slice(classes=6, per_class=50, seed=22)
    reservoir, updater = cold_started(config, X, seed=6)
    reservoir.offer([f"t{i}" for i in range(150)], X[:150], time.time(), np.random.default_rng(7))
    candidate = updater.update()
    reliability(Row("diverged fine-tune (NaN/Inf candidate) at the promotion gate", inputs=1, lost=0,
                    duplicates=int(candidate is not None), dead_lettered=len(updater.rejections),
                    crashes=updater.failures))
    assert candidate is None and updater.published == [1] and updater.current.header.version == 1
    assert "NaN or Inf" in updater.rejections[0]
    assert updater.metrics.registry.get_sample_value("stream_dec_gate_failures_total", {"check": "limits"}) == 1


def test_after_the_first_version_staging_holds_what_the_next_cycle_takes(loop_service):
    """The cold start's cycle takes all of staging; once a version exists a cycle replaces
    ``replace_fraction`` of the window, and staging keeps only that many samples until then."""
    config = loop_service
    X, _ = wordnet_slice(classes=6, per_class=50, seed=23)
    reservoir, updater = cold_started(config, X, seed=8)
    assert reservoir.client.get(reservoir.keys["room"]) is None  # no version before this cycle: all of staging
    reservoir.offer([f"t{i}" for i in range(len(X))], X, time.time(), np.random.default_rng(9))
    updater.update()
    size = reservoir.sizes()["window"]
    room = config.reservoir.capacity - (size - round(config.reservoir.replace_fraction * size))
    reservoir.offer([f"u{i}" for i in range(len(X))], X, time.time(), np.random.default_rng(10))
    assert reservoir.sizes()["staging"] == room == int(reservoir.client.get(reservoir.keys["room"])) < len(X)
