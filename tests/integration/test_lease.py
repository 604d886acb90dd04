"""The updater lease against the real Redis: one holder, renewed while a long update runs."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from stream_dec.stream.lease import Lease
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture()
def key(redis_client):
    name = f"stream-dec:test-lease:{uuid.uuid4().hex}"
    yield name
    redis_client.delete(name)


def test_one_holder_and_the_lease_expires_without_renewal(key, redis_client):
    first, second = Lease(redis_client, key, 300), Lease(redis_client, key, 300)
    assert first.acquire() and not second.acquire()
    time.sleep(0.4)
    assert not first.renew() and second.acquire()


def test_kept_renews_through_a_block_longer_than_the_lifetime(key, redis_client):
    lease, rival = Lease(redis_client, key, 300), Lease(redis_client, key, 300)
    assert lease.acquire()
    with lease.kept() as lost:
        time.sleep(1.0)  # > 3 lifetimes
        assert not rival.acquire()
    assert not lost.is_set() and lease.renew()


def test_kept_renews_on_entry_whatever_lifetime_is_left(key, redis_client):
    """A holder that spent most of the lifetime since acquiring (a slow catch-up) still starts its
    block with a whole lifetime, not with what is left until the first periodic renewal."""
    lease = Lease(redis_client, key, 1000)
    assert lease.acquire()
    time.sleep(0.6)  # 0.4 s left; the first periodic renewal would come 0.33 s into the block
    with lease.kept() as lost:
        deadline = time.monotonic() + 0.2
        while redis_client.pttl(key) <= 900 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert redis_client.pttl(key) > 800
    assert not lost.is_set()


def test_kept_reports_a_lease_taken_by_another_holder(key, redis_client):
    lease, rival = Lease(redis_client, key, 300), Lease(redis_client, key, 300)
    assert lease.acquire()
    with lease.kept() as lost:
        redis_client.delete(key)  # e.g. expired during a long pause of this process
        assert rival.acquire()
        assert lost.wait(1.0)
    assert not lease.renew() and lease.holder() == rival.token


def test_renewal_errors_are_counted_and_logged_not_swallowed(key, caplog):
    """Redis unreachable during a long update: each failed renewal is counted and logged."""
    errors = []
    client = redis.Redis("127.0.0.1", free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    lease = Lease(client, key, 300, on_renewal_error=lambda: errors.append(1))
    with caplog.at_level("WARNING", logger="stream_dec.stream.lease"), lease.kept() as lost:
        time.sleep(0.5)  # a renewal every 0.1 s (redis-py retries each a few times), each refused
    assert len(errors) >= 1 and not lost.is_set()
    assert "lease renewal failed" in caplog.text
