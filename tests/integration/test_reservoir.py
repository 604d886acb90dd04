"""The Redis reservoir against real Redis servers (the session's, and private AOF ones)."""

from __future__ import annotations

import subprocess
import time
import uuid

import numpy as np
import pytest
import redis

from stream_dec.stream import reservoir as reservoir_module
from stream_dec.stream.reservoir import Reservoir, unpack
from stream_dec.stream.sampling import LocalSample, merge
from tests.conftest import wordnet_slice
from tests.integration.conftest import free_port, redis_binary, wait_for_port

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(redis_client):
    return redis_client


@pytest.fixture()
def name(client):
    model = f"test-{uuid.uuid4().hex[:8]}"
    yield model
    for key in client.scan_iter(f"stream-dec:{model}:*"):
        client.delete(key)


def ids(n, start=0):
    return [f"s{i}" for i in range(start, start + n)]


def test_staging_stays_bounded_whatever_the_rate(client, name):
    X, _ = wordnet_slice(classes=4, per_class=250, seed=1)
    reservoir = Reservoir(client, name, capacity=200, staging_capacity=50)
    rng = np.random.default_rng(0)
    for start in range(0, 1000, 250):
        reservoir.offer(ids(250, start), X[start:start + 250], time.time(), rng)
    assert reservoir.sizes() == {"window": 0, "staging": 50, "seen": 1000}


def test_staging_is_a_uniform_sample(client, name):
    reservoir = Reservoir(client, name, capacity=50, staging_capacity=50)
    rng = np.random.default_rng(1)
    X = np.zeros((500, 2), np.float32)
    counts = np.zeros(500)
    for _ in range(40):
        reservoir.offer(ids(500), X, 0.0, rng)
        for packed in reservoir.client.hvals(reservoir.keys["staging"]):
            counts[int(unpack(packed)[0][1:])] += 1
        reservoir.cycle(1.0, rng)
    early, late = counts[:250].mean() / 40, counts[250:].mean() / 40
    assert abs(early - 0.1) < 0.03 and abs(late - 0.1) < 0.03  # each of 500 kept with p = 50/500


@pytest.mark.parametrize("every", [(1, 1), (3, 4)])
def test_staging_stays_uniform_with_two_labelers_writing_at_their_own_pace(client, name, every):
    """Two labelers take alternate batches of 20 into local samples and write them every
    ``every`` batches of their own (1: each batch), each write reading the count the other
    moved: staging must stay a uniform sample of all offers across cycles."""
    labelers = [Reservoir(client, name, capacity=50, staging_capacity=50) for _ in range(2)]
    updater = Reservoir(client, name, capacity=50)
    rng = np.random.default_rng(4)
    X = np.zeros((20, 2), np.float32)
    counts = np.zeros(600)
    for round_ in range(40):
        local = [LocalSample(50), LocalSample(50)]
        for batch, start in enumerate(range(0, 600, 20)):
            who = batch % 2
            local[who].add(ids(20, start), X, 0.0, rng)
            if (batch // 2) % every[who] == 0 or batch >= 28:  # and what is left at the end
                labelers[who].write(local[who], rng)
                local[who].clear()
        assert updater.sizes() == {"window": 50 if round_ else 0, "staging": 50, "seen": 600}
        for packed in client.hvals(updater.keys["staging"]):
            counts[int(unpack(packed)[0][1:])] += 1
        updater.cycle(1.0, rng)  # resets the count under the labelers' feet
    kept = counts / 40
    assert abs(kept[:300].mean() - 50 / 600) < 0.015 and abs(kept[300:].mean() - 50 / 600) < 0.015
    assert abs(kept[:50].mean() - 50 / 600) < 0.03  # the first samples after a reset are not favoured
    assert abs(kept[-50:].mean() - 50 / 600) < 0.03  # nor the last, held longest before a write


def test_an_offer_raced_by_a_cycle_is_made_again_on_the_new_count(client, name, monkeypatch):
    """A cycle between an offer's read of the count and its write resets the count: the write
    must not land on the old one (the offer watches it, and runs again)."""
    X = np.zeros((20, 2), np.float32)
    labeler, updater = Reservoir(client, name, capacity=10), Reservoir(client, name, capacity=10)
    rng = np.random.default_rng(7)
    labeler.offer(ids(20), X, 0.0, rng)
    counts = []

    def raced(before, offered, held, room, rng):
        if not counts:
            updater.cycle(1.0, rng)  # on another connection, after the offer read the count
        counts.append(before)
        return merge(before, offered, held, room, rng)

    monkeypatch.setattr(reservoir_module, "merge", raced)
    labeler.offer(ids(5, 100), X[:5], 0.0, rng)
    assert counts == [20, 0]
    assert updater.sizes() == {"window": 10, "staging": 5, "seen": 5}


def test_bfloat16_and_float32_labelers_share_one_window(client, name):
    """Labelers of either sample precision offer to one staging area; the window reads both,
    the float32 samples exactly, the bfloat16 ones rounded, in half the Redis memory."""
    X, _ = wordnet_slice(classes=4, per_class=50, seed=3)
    half = Reservoir(client, name, capacity=200, precision="bfloat16")
    wide, updater = Reservoir(client, name, capacity=200), Reservoir(client, name, capacity=200)
    rng = np.random.default_rng(8)
    half.offer(ids(100), X[:100], 0.0, rng)
    wide.offer(ids(100, 100), X[100:], 0.0, rng)
    updater.cycle(1.0, rng)
    window = updater.window()
    rows = np.array([int(i[1:]) for i in window.ids])
    assert sorted(rows.tolist()) == list(range(200)) and window.X.dtype == np.float32
    rounded, exact = rows < 100, rows >= 100
    assert np.array_equal(window.X[exact], X[rows[exact]])
    assert np.all(np.abs(window.X[rounded] - X[rows[rounded]]) <= 2.0 ** -8 * np.abs(X[rows[rounded]]))
    assert not np.array_equal(window.X[rounded], X[rows[rounded]])
    half.offer(ids(200), X, 0.0, rng)
    wide = Reservoir(client, f"{name}-wide", capacity=200)
    wide.offer(ids(200), X, 0.0, rng)
    try:
        assert client.memory_usage(half.keys["staging"]) < 0.55 * client.memory_usage(wide.keys["staging"])
    finally:
        client.delete(*wide.keys.values())


def test_staging_holds_only_what_the_next_cycle_takes(client, name):
    """Between cycles staging keeps capacity - kept samples (the room the next cycle fills), not
    the whole window: as uniform a sample, half the samples sent and held at replace_fraction 0.5."""
    X = np.zeros((1000, 2), np.float32)
    labeler, updater = Reservoir(client, name, capacity=200), Reservoir(client, name, capacity=200)
    rng = np.random.default_rng(5)
    labeler.offer(ids(200), X[:200], 0.0, rng)
    assert updater.cycle(1.0, rng, next_fraction=0.5) == (0, 200)
    labeler.offer(ids(1000, 1000), X, 0.0, rng)
    assert labeler.sizes() == {"window": 200, "staging": 100, "seen": 1000} and labeler.room == 100
    assert updater.cycle(0.5, rng, next_fraction=0.5) == (100, 200)
    counts = np.zeros(1000)
    for _ in range(30):
        labeler.offer(ids(1000, 1000), X, 0.0, rng)
        updater.cycle(0.5, rng, next_fraction=0.5)
        counts[[int(i[1:]) - 1000 for i in updater.window().ids[100:]]] += 1
    assert updater.sizes()["window"] == 200
    assert abs(counts[:500].mean() / 30 - 0.1) < 0.02 and abs(counts[500:].mean() / 30 - 0.1) < 0.02


def test_staging_room_rounds_as_the_cycle_does_and_grows_back(client, name):
    X = np.zeros((50, 2), np.float32)
    first, second, updater = (Reservoir(client, name, capacity=5) for _ in range(3))
    rng = np.random.default_rng(6)
    first.offer(ids(5), X[:5], 0.0, rng)
    updater.cycle(1.0, rng, next_fraction=0.5)  # the next cycle keeps 5 - round(2.5) = 3: room for 2
    first.offer(ids(50), X, 0.0, rng)
    assert first.sizes()["staging"] == 2 and first.room == 2
    assert updater.cycle(0.5, rng) == (3, 5)  # no next fraction: the whole staging capacity again
    first.offer(ids(1), X[:1], 0.0, rng)  # learns the room again
    updater.cycle(0.5, rng, next_fraction=0.5)
    first.offer(ids(1), X[:1], 0.0, rng)  # read a room of 2
    updater.cycle(0.5, rng)
    second.offer(ids(1), X[:1], 0.0, rng)  # the count is 1 again, but the room is 5 now
    first.offer(ids(49, 1), X[:49], 0.0, rng)  # reads the room afresh, not the one it saw last
    assert first.sizes()["staging"] == 5 and first.room == 5


def test_cycle_keeps_exactly_half_and_refills_from_staging(client, name):
    X, _ = wordnet_slice(classes=4, per_class=100, seed=2)
    reservoir = Reservoir(client, name, capacity=200)
    rng = np.random.default_rng(2)
    reservoir.offer(ids(200), X[:200], 1.0, rng)
    assert reservoir.cycle(0.5, rng) == (0, 200)  # cold start: the window is staging
    first = reservoir.window()
    assert first.ids and sorted(first.ids) == sorted(ids(200))
    np.testing.assert_array_equal(first.X[first.ids.index("s7")], X[7])
    reservoir.offer(ids(200, 200), X[200:400], 2.0, rng)
    assert reservoir.cycle(0.5, rng) == (100, 200)
    second = reservoir.window()
    retained = set(second.ids[:second.kept])
    assert len(retained) == 100 and retained <= set(first.ids)
    assert set(second.ids[second.kept:]) <= set(ids(200, 200)) and len(second.ids) == 200
    assert second.retained.sum() == 100 and reservoir.sizes()["staging"] == 0
    held_out = reservoir.held_out()  # the first window's other half, for the updater's held-out check
    assert sorted(held_out.ids) == sorted(set(first.ids) - retained) and held_out.kept == 0
    np.testing.assert_array_equal(held_out.X[0], X[int(held_out.ids[0][1:])])


def test_a_cycle_lays_samples_in_the_order_offered_whatever_the_hash_order(client, name):
    """A Redis hash stored as a hash table (values over 64 bytes, or over 512 fields) iterates in
    its own (per-process, seeded) order: the window must not, or the same stream and seed would
    give other windows, hence other versions."""
    X = np.zeros((300, 32), np.float32)
    reservoir = Reservoir(client, name, capacity=300)
    rng = np.random.default_rng(0)
    reservoir.offer(ids(300), X, 0.0, rng)
    reservoir.cycle(1.0, rng)
    assert reservoir.window().ids == ids(300)
    reservoir.offer(ids(300, 300), X, 0.0, rng)
    reservoir.cycle(0.5, rng)
    window = reservoir.window()
    retained = window.ids[:window.kept]
    assert retained == sorted(retained, key=lambda i: int(i[1:])) and len(retained) == 150
    assert len(set(window.ids[window.kept:]) & set(ids(300, 300))) == 150  # a seeded choice of the 300 staged


def test_more_staged_than_fits_is_a_seeded_uniform_choice(client, name):
    X = np.zeros((400, 2), np.float32)
    chosen = []
    for seed in (7, 7, 8):
        reservoir = Reservoir(client, name, capacity=100, staging_capacity=400)
        client.delete(*reservoir.keys.values())
        reservoir.offer(ids(400), X, 0.0, np.random.default_rng(0))
        reservoir.cycle(1.0, np.random.default_rng(seed))
        chosen.append(reservoir.window().ids)
    assert chosen[0] == chosen[1] != chosen[2] and len(chosen[0]) == 100
    offered_at = np.array([int(i[1:]) for i in chosen[0] + chosen[2]])
    assert 150 < np.median(offered_at) < 250  # not the first-offered (the oldest) samples


def test_texts_travel_with_their_samples(client, name):
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    reservoir = Reservoir(client, name, capacity=3)
    reservoir.offer(ids(3), X, 0.0, np.random.default_rng(0), ["a fish", None, "é" * 2000])
    reservoir.cycle(1.0, np.random.default_rng(0))
    window = reservoir.window()
    assert window.ids == ids(3) and window.texts[:2] == ["a fish", None]
    assert window.texts[2] == "é" * 512  # cut at 1,024 UTF-8 bytes
    np.testing.assert_array_equal(window.X, X)


def test_redis_restart_with_aof_keeps_the_window(tmp_path):
    server = redis_binary()
    port = free_port()
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--appendonly", "yes",
               "--appendfsync", "always", "--save", ""]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_for_port(port)
    X, _ = wordnet_slice(classes=2, per_class=50, seed=3)
    rng = np.random.default_rng(3)
    reservoir = Reservoir(redis.Redis("127.0.0.1", port), "aof", capacity=100)
    reservoir.offer(ids(100), X, 5.0, rng)
    reservoir.cycle(0.5, rng)
    before = reservoir.window()
    process.kill()  # no clean shutdown: only the append-only file survives
    process.wait()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        after = Reservoir(redis.Redis("127.0.0.1", port), "aof", capacity=100).window()
        assert after.ids == before.ids and np.array_equal(after.X, before.X)
    finally:
        process.kill()
        process.wait()
