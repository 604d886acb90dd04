"""A Redis lease: at most one holder at a time, lost if not renewed, with a fencing epoch.

Acquire, renew and release are Lua scripts that act only if the key still holds this
holder's token, so a holder whose lease expired (and was taken by another) cannot
extend or delete the new holder's lease. Each acquisition also increments
``<key>:epoch``: the holder's :attr:`Lease.epoch` is larger than every earlier holder's,
so what it writes (a version record carries it) can be told apart from a late write of
a holder that was paused past its lease (a fencing token).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator

import redis

log = logging.getLogger(__name__)

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return redis.call('INCR', KEYS[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
return 0
"""
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Lease:
    """One candidate for the lease ``key``; ``ttl_ms`` is its lifetime without renewal.

    ``on_renewal_error`` is called (e.g. a metric's ``inc``) for each background renewal
    that failed with a Redis error.
    """

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int,
                 on_renewal_error: Callable[[], None] | None = None) -> None:
        self.client, self.key, self.ttl_ms = client, key, ttl_ms
        self.on_renewal_error = on_renewal_error or (lambda: None)
        self.epoch_key = f"{key}:epoch"
        self.token = uuid.uuid4().hex
        self.epoch = 0
        """The fencing epoch of our last acquisition (0: never held)."""
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease if nobody holds it (a new, larger :attr:`epoch`), or renew it if we do."""
        epoch = int(self._acquire(keys=[self.key, self.epoch_key], args=[self.token, self.ttl_ms]))
        if epoch:
            self.epoch = epoch
        return bool(epoch)

    def renew(self) -> bool:
        """Extend our lease; False if it is no longer ours."""
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    @contextlib.contextmanager
    def kept(self) -> Iterator[threading.Event]:
        """Renew the lease on entry, then every third of its lifetime while the block runs (a long update).

        The renewal on entry gives the block a whole lifetime whatever the holder did since
        it last acquired (a slow catch-up on the versions topic, say). Yields an event that
        is set once a renewal finds the lease gone. A Redis error during renewal is logged,
        counted (``on_renewal_error``) and retried at the next tick; the holder checks
        :meth:`renew` again before acting on the lease anyway.
        """
        lost, done = threading.Event(), threading.Event()

        def renew_until_done() -> None:
            while True:
                try:
                    if not self.renew():
                        lost.set()
                        return
                except redis.RedisError as exc:
                    self.on_renewal_error()
                    log.warning("lease renewal failed (%s); retrying in %.1fs, the lease lapses after %.1fs without "
                                "renewal", exc, self.ttl_ms / 3000, self.ttl_ms / 1000)
                if done.wait(self.ttl_ms / 3000):
                    return

        thread = threading.Thread(target=renew_until_done, name="lease-renewal", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            done.set()
            thread.join()

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value else None
