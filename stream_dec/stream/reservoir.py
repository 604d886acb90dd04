"""The Redis-backed reservoir: the current training window plus a staging area.

Keys, for a model called NAME (``stream-dec:NAME:`` prefix):

- ``window``: hash, slot number -> packed sample; the window the updater trains on;
- ``staging``: hash, slot number -> packed sample; new samples since the last cycle;
- ``seen``: how many samples were offered to staging since the last cycle;
- ``kept``: how many leading window slots were retained by the last cycle;
- ``dropped``: hash, slot number -> packed sample; the old window's samples the last
  cycle dropped, which no update trains on: the updater's held-out check;
- ``room``: staging's capacity until the next cycle, if the last cycle set one.

A packed sample is binary (no JSON): arrival time (float64), id length (uint16), the
UTF-8 id, then the vector (:func:`pack` / :func:`unpack`): float32, or bfloat16 followed
by one marker byte (``precision="bfloat16"``: half the bytes to send and hold, each value
within 2^-8 of itself, relative; a row with a value past bfloat16's range stays
float32). A float32 vector's length is a multiple of 4, a bfloat16 one's is odd, so the
two read apart, and samples written before bfloat16 read as they were. A sample with a
text (the input's optional JSON ``text``, kept for the cluster catalogue) stores its arrival
time negated (the sign bit marks it: a time is never negative, so samples written
before texts existed read as they were) and carries the text's length (uint16) and
UTF-8 bytes after the id. An id longer than 65,535 bytes or a text longer than 1,024
bytes is cut on a character boundary. Reading tolerates what it cannot parse: a
corrupt sample, or one of another width than the model's, is removed from Redis and
counted (:attr:`WindowSamples.removed`), never fatal to the updater.

Staging is a uniform reservoir sample: whatever the stream rate, it holds at most
``staging_capacity`` samples, each offered sample having the same chance to be there. A
cycle told the next one's ``replace_fraction`` sets ``room`` to what that cycle will take
(``capacity - kept``: half a full window at 0.5), and staging holds no more until then: a
uniform sample of that size is what the cycle's random choice among a larger staging area
gave, for fewer samples sent and held. A labeler keeps its own uniform sample of what it
labelled (:class:`~stream_dec.stream.sampling.LocalSample`, in :class:`SampleWriter`) and
:meth:`Reservoir.write` merges it into staging exactly
(:func:`~stream_dec.stream.sampling.merge`), once a ``write_interval_s``: most samples
Algorithm R would have sent one by one are overwritten before the next cycle, and are
never sent. A write is one optimistic transaction, not a script: it watches the count and
the room, reads them, and writes the count and only the merged rows in one
``MULTI``/``EXEC``, done again if a cycle or another labeler changed either meanwhile.
Redis then stores each sample as it arrives, instead of copying it into a script and back.
:meth:`Reservoir.cycle` is one Lua script, so atomic: the new window is a random
``1 - replace_fraction`` of the old one (laid first, so the updater knows which rows
were retained) followed by staged samples (a random choice of them when more are staged
than fit), the rest of the old window goes to ``dropped``, and staging is emptied. A
crash never leaves half a window. Both are read in slot order and every random choice
comes from the updater's generator, so the same offers and seed give the same window
(a Redis hash's own order differs between server processes).
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import redis
import torch

from stream_dec.config import RedisConfig
from stream_dec.errors import StreamDecError
from stream_dec.stream.sampling import LocalSample, merge

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<dH")
_TEXT_LENGTH = struct.Struct("<H")

_CYCLE = """
local window, staging, seen, kept_key, dropped_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local capacity, seed, next_fraction = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[2] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[2] then return {-1, 0} end
local function by_slot(flat)  -- (slot, value) in slot order, not the hash's (per-process) order
  local entries = {}
  for i = 1, #flat, 2 do table.insert(entries, {tonumber(flat[i]) or math.huge, flat[i], flat[i + 1]}) end
  table.sort(entries, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
  return entries
end
local records, keep, dropped = {}, {}, {}
for i = 5, #ARGV do keep[ARGV[i]] = true end
for _, e in ipairs(by_slot(redis.call('HGETALL', window))) do
  if keep[e[2]] then table.insert(records, e[3]) else table.insert(dropped, e[3]) end
end
local kept = #records
local staged = by_slot(redis.call('HGETALL', staging))
local room = capacity - kept
if #staged > room then  -- a uniform choice of room staged samples, drawn from the caller's seed
  for i = 1, room do
    seed = (seed * 16807) % 2147483647
    local j = i + math.floor(seed / 2147483647 * (#staged - i + 1))
    staged[i], staged[j] = staged[j], staged[i]
  end
end
for i = 1, math.min(room, #staged) do table.insert(records, staged[i][3]) end
redis.call('DEL', window)
for i, v in ipairs(records) do redis.call('HSET', window, i - 1, v) end
redis.call('DEL', staging)
redis.call('DEL', dropped_key)
for i, v in ipairs(dropped) do redis.call('HSET', dropped_key, i - 1, v) end
redis.call('SET', seen, 0)
redis.call('SET', kept_key, kept)
if next_fraction < 0 then  -- staging's room until the next cycle: what that cycle will take
  redis.call('DEL', KEYS[7])
else  -- capacity - kept at the next cycle, rounding as Python's round() does (half to even)
  local size = #records
  local replaced = math.floor(next_fraction * size)
  local rest = next_fraction * size - replaced
  if rest > 0.5 or (rest == 0.5 and replaced % 2 == 1) then replaced = replaced + 1 end
  redis.call('SET', KEYS[7], capacity - size + replaced)
end
return {kept, #records}
"""


MAX_ID_BYTES = 65535
MAX_TEXT_BYTES = 1024


PRECISIONS = ("float32", "bfloat16")
"""How a sample's vector is stored."""

_BFLOAT16_MARK = b"\x02"


def to_bfloat16(X: np.ndarray) -> np.ndarray:
    """The upper halves of float32 values, rounded to nearest even: bfloat16 bits as uint16.

    >>> to_bfloat16(np.array([1.0, 2.001, -3.5], "<f4"))
    array([16256, 16384, 49248], dtype=uint16)
    """
    wide = torch.from_numpy(np.ascontiguousarray(X, dtype="<f4"))
    return wide.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")  # one vectorised pass, no temporaries


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bits (exact).

    >>> from_bfloat16(to_bfloat16(np.array([1.0, 2.001, -3.5], "<f4")))
    array([ 1. ,  2. , -3.5], dtype=float32)
    """
    return (np.asarray(bits, "<u2").astype(np.uint32) << 16).view(np.float32)


def pack(identifier: str, arrived: float, vector: np.ndarray, text: str | None = None,
         precision: str = "float32") -> bytes:
    """Binary form of one sample; an id past 65,535 UTF-8 bytes (a text past 1,024) is cut on a
    character boundary.

    >>> unpack(pack("a", 1.5, np.array([1, 2], "<f4")))
    ('a', 1.5, array([1., 2.], dtype=float32), None)
    >>> unpack(pack("a", 1.5, np.array([1, 2.001], "<f4"), "a fish", precision="bfloat16"))
    ('a', 1.5, array([1., 2.], dtype=float32), 'a fish')
    >>> len(unpack(pack("é" * 40000, 0.0, np.ones(2), ""))[0])
    32767
    """
    return pack_many([identifier], arrived, np.asarray(vector)[None], texts=[text], precision=precision)[0]


def pack_many(ids: list[str], arrived: float | np.ndarray, X: np.ndarray,
              texts: list[str | None] | None = None, precision: str = "float32") -> list[bytes]:
    """The samples of a batch, each as :func:`pack` writes it, their vectors converted in
    one call; ``arrived`` is one time for all rows, or each row's.

    >>> X = np.array([[1, 2], [3, 4]], "<f4")
    >>> samples = pack_many(["a", "bc"], 1.5, X, [None, "a fish"])
    >>> samples == [pack("a", 1.5, X[0]), pack("bc", 1.5, X[1], "a fish")]
    True
    """
    _check(precision)
    times = np.broadcast_to(np.asarray(arrived, np.float64), (len(ids),)).tolist()
    return [b"".join((_head(ids[i], times[i], texts[i] if texts else None), *vector))
            for i, vector in enumerate(_vectors(X, precision))]


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")


def _vectors(X: np.ndarray, precision: str) -> list[tuple[memoryview, bytes]]:
    """Each row's stored vector as (values, marker): float32, or bfloat16 and its marker
    (float32 for a row with a value past bfloat16's range, which would round to infinity)."""
    wide = np.ascontiguousarray(X, dtype="<f4")
    if precision == "float32":
        return [(row, b"") for row in _row_views(wide)]
    half = to_bfloat16(wide)
    beyond = ((half & 0x7F80) == 0x7F80).any(axis=1).tolist()  # exponent all ones: infinity
    return [(exact, b"") if out else (row, _BFLOAT16_MARK)
            for exact, row, out in zip(_row_views(wide), _row_views(half), beyond)]


def _row_views(A: np.ndarray) -> list[memoryview]:
    """The bytes of each row of a C-contiguous 2-D array, not copied."""
    flat, size = memoryview(A.reshape(-1).view(np.uint8)), A.shape[1] * A.itemsize
    return [flat[k * size:(k + 1) * size] for k in range(len(A))]


def _head(identifier: str, arrived: float, text: str | None) -> bytes:
    """A packed sample up to its vector."""
    raw = _cut(identifier, MAX_ID_BYTES)
    if text is None:
        return _HEADER.pack(arrived, len(raw)) + raw
    words = _cut(text, MAX_TEXT_BYTES)
    return _HEADER.pack(-abs(arrived), len(raw)) + raw + _TEXT_LENGTH.pack(len(words)) + words


def _cut(text: str, limit: int) -> bytes:
    raw = text.encode("utf-8", errors="replace")
    return raw if len(raw) <= limit else raw[:limit].decode("utf-8", errors="ignore").encode("utf-8")


class LeaseLost(StreamDecError):
    """A fenced reservoir operation found the updater lease held by someone else."""


class BadSample(ValueError):
    """A stored sample that cannot be read back."""


def unpack(data: bytes) -> tuple[str, float, np.ndarray, str | None]:
    """Inverse of :func:`pack`: (id, arrived, vector, text); raises :class:`BadSample` for bytes
    it cannot have written."""
    if len(data) < _HEADER.size:
        raise BadSample(f"{len(data)} bytes: shorter than a sample header")
    arrived, length = _HEADER.unpack_from(data)
    start, text = _HEADER.size + length, None
    identifier = data[_HEADER.size:start].decode("utf-8", errors="replace")
    if math.copysign(1.0, arrived) < 0:  # the sign bit: a text follows the id
        arrived = -arrived
        if start + _TEXT_LENGTH.size > len(data):
            raise BadSample(f"{len(data)} bytes do not hold the id and text lengths the header gives")
        (size,) = _TEXT_LENGTH.unpack_from(data, start)
        start += _TEXT_LENGTH.size
        text = data[start:start + size].decode("utf-8", errors="replace")
        start += size
    rest = len(data) - start
    if rest >= 0 and rest % 4 == 0:
        return identifier, arrived, np.frombuffer(data, "<f4", offset=start), text
    if rest > 0 and rest % 2 == 1 and data[-1:] == _BFLOAT16_MARK:
        return identifier, arrived, from_bfloat16(np.frombuffer(data, "<u2", rest // 2, start)), text
    raise BadSample(f"{len(data)} bytes do not hold a {length}-byte id and a float32 or bfloat16 vector")


@dataclass(frozen=True)
class WindowSamples:
    """Samples as read from Redis (the window, or the held-out ones): rows ``[:kept]`` were
    retained by the last cycle; ``removed`` unreadable samples were deleted on the way;
    ``texts[i]`` is sample i's text (``None`` if it came without one)."""

    ids: list[str]
    arrived: np.ndarray
    X: np.ndarray
    kept: int
    removed: int = 0
    texts: list[str | None] = field(default_factory=list)

    @property
    def retained(self) -> np.ndarray:
        return np.arange(len(self.ids)) < self.kept


class Reservoir:
    """Window and staging for one model in Redis; see the module docstring.

    Parameters
    ----------
    client
        A ``redis.Redis`` connection.
    name
        Model name; keys live under ``stream-dec:<name>:``.
    capacity
        Window size N.
    staging_capacity
        Most samples held in staging (defaults to N).
    precision
        How offered samples store their vectors (:data:`PRECISIONS`); any are read.
    """

    def __init__(self, client: redis.Redis, name: str, capacity: int, staging_capacity: int | None = None,
                 precision: str = "float32") -> None:
        _check(precision)
        self.client = client
        self.capacity = capacity
        self.staging_capacity = staging_capacity or capacity
        self.precision = precision
        prefix = f"stream-dec:{name}:"
        self.keys = {k: prefix + k for k in ("window", "staging", "seen", "kept", "dropped", "room")}
        self._cycle = client.register_script(_CYCLE)
        self.room = self.staging_capacity
        """Staging's capacity until the next cycle, as read by this client's last offer."""

    def offer(self, ids: list[str], X: np.ndarray, arrived: float, rng: np.random.Generator,
              texts: list[str | None] | None = None) -> None:
        """Offer a batch of samples (and their texts, if any) to staging: :meth:`write` of the batch."""
        self.write(LocalSample.of(ids, X, arrived, texts), rng)

    def write(self, sample: LocalSample, rng: np.random.Generator) -> None:
        """Merge a uniform sample of new rows into staging (:func:`merge`) in one transaction,
        made again if a cycle or another labeler moved the count meanwhile; raises
        ``redis.RedisError`` if Redis is down."""
        seen_key, room_key = self.keys["seen"], self.keys["room"]

        def write(pipe: redis.client.Pipeline) -> None:
            seen, room = pipe.mget(seen_key, room_key)  # watched: EXEC fails if either changes
            before = int(seen or 0)
            self.room = min(self.staging_capacity, int(room or self.staging_capacity))
            rows, slots = merge(before, sample.offered, sample.held, self.room, rng)
            pipe.multi()
            pipe.set(seen_key, before + sample.offered)
            if rows:
                ids, arrived, X, texts = sample.take(rows)
                samples = pack_many(ids, arrived, X, texts=texts, precision=self.precision)
                pipe.hset(self.keys["staging"], mapping=dict(zip(slots, samples)))

        self.client.transaction(write, seen_key, room_key)

    def cycle(self, replace_fraction: float, rng: np.random.Generator,
              lease: tuple[str, str] | None = None, next_fraction: float | None = None) -> tuple[int, int]:
        """Atomically rebuild the window; return (retained, total) sizes.

        ``lease`` = (key, token): cycle only while that Redis key still holds the token (the
        check runs inside the script), else raise :class:`LeaseLost` and change nothing.
        ``next_fraction``: the ``replace_fraction`` the next cycle will use, which sets
        staging's room until then to what that cycle takes from it (None: the whole
        staging capacity).
        """
        size = self.client.hlen(self.keys["window"])
        keep = size - int(round(replace_fraction * size)) if size else 0
        slots = rng.choice(size, size=keep, replace=False) if keep else []
        lease_key, token = lease or ("", "")
        keys = [self.keys[k] for k in ("window", "staging", "seen", "kept", "dropped")]
        keys += [lease_key or self.keys["kept"], self.keys["room"]]
        seed = int(rng.integers(1, 2**31 - 1))  # picks the staged samples when more than fit
        kept, total = self._cycle(keys=keys, args=[self.capacity, token, seed,
                                                   -1 if next_fraction is None else repr(float(next_fraction)),
                                                   *[int(s) for s in slots]])
        if kept < 0:
            raise LeaseLost(f"the lease {lease_key} is no longer held by this updater; the window was not cycled")
        return int(kept), int(total)

    def window(self, dim: int | None = None) -> WindowSamples:
        """Read the whole window, retained rows first (``dim``: the width to expect, else the commonest)."""
        return self._read("window", int(self.client.get(self.keys["kept"]) or 0), dim)

    def held_out(self, dim: int | None = None) -> WindowSamples:
        """Read the samples the last cycle dropped from the window (none are retained)."""
        return self._read("dropped", 0, dim)

    def _read(self, key: str, kept: int, dim: int | None) -> WindowSamples:
        fields = self.client.hgetall(self.keys[key])
        rows, bad = [], []
        for slot in sorted(fields, key=_slot_order):
            try:
                if _slot_order(slot) == _NOT_A_SLOT:
                    raise BadSample(f"field {slot[:20]!r} is not a slot number")
                rows.append((slot, unpack(fields[slot])))
            except BadSample:
                bad.append(slot)
        if dim is None and rows:
            widths, counts = np.unique([len(sample[2]) for _, sample in rows], return_counts=True)
            dim = int(widths[np.argmax(counts)])
        good = [(slot, sample) for slot, sample in rows if len(sample[2]) == dim]
        bad += [slot for slot, sample in rows if len(sample[2]) != dim]
        if bad:
            self.client.hdel(self.keys[key], *bad)
        kept = sum(_slot_order(slot) < kept for slot, _ in good)
        if not good:
            return WindowSamples([], np.empty(0), np.empty((0, dim or 0), np.float32), 0, len(bad), [])
        ids, arrived, vectors, texts = zip(*(sample for _, sample in good))
        return WindowSamples(list(ids), np.asarray(arrived), np.stack(vectors).astype(np.float32), kept, len(bad),
                             list(texts))

    def sizes(self) -> dict[str, int]:
        """Window size, staging size and samples offered since the last cycle."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(self.keys["window"])
        pipe.hlen(self.keys["staging"])
        pipe.get(self.keys["seen"])
        window, staging, seen = pipe.execute()
        return {"window": int(window), "staging": int(staging), "seen": int(seen or 0)}


_NOT_A_SLOT = float("inf")


def _slot_order(slot: bytes) -> float:
    """Slots are numbers; a field that is not sorts last, and is removed as unreadable."""
    try:
        return int(slot)
    except ValueError:
        return _NOT_A_SLOT


def connect(config: RedisConfig) -> redis.Redis:
    """A Redis client from ``[redis]`` (connects lazily, on the first command)."""
    tls = {key: value for key, value in (("ssl_ca_certs", config.tls_ca_file), ("ssl_certfile", config.tls_cert_file),
                                         ("ssl_keyfile", config.tls_key_file)) if value}
    return redis.Redis.from_url(config.url, username=config.username or None, password=config.password or None,
                                socket_timeout=config.socket_timeout_s, socket_connect_timeout=config.socket_timeout_s,
                                **tls)


class SampleWriter:
    """Offers samples to a :class:`Reservoir` from a thread of its own, so that writing them
    never holds a batch of labels (a sample of a 768-d vector is 1.5-3 KiB on the wire).

    :meth:`submit` adds a batch to a :class:`~stream_dec.stream.sampling.LocalSample` of up
    to staging's room (as the last write read it) in the caller's thread, and returns.
    The thread merges that sample into staging (:meth:`Reservoir.write`)
    ``write_interval_s`` after its first batch (0: after each batch), on :meth:`flush`
    and on :meth:`close`, while batches go on into a fresh one: a slow Redis holds no
    labels and loses no samples, and memory stays two samples. ``on_offered`` counts
    the rows a write covered; ``on_skipped`` the rows of a failed write (any error: the
    thread never stops on one), those submitted in the ``retry_s`` after a Redis error,
    and rows of another width than those held. ``wait=True`` (a cold start,
    when every sample is wanted and nothing else is to be done) returns once the batch
    is written.
    """

    def __init__(self, reservoir: Reservoir, on_offered: Callable[[int], None],
                 on_skipped: Callable[[int], None], retry_s: float = 5.0, write_interval_s: float = 1.0) -> None:
        self.reservoir, self.on_offered, self.on_skipped, self.retry_s = reservoir, on_offered, on_skipped, retry_s
        self.write_interval_s = write_interval_s
        self.local, self.spare = LocalSample(reservoir.room), LocalSample(reservoir.room)
        self.draws, self.rng = np.random.default_rng(), np.random.default_rng()  # the caller's, the thread's
        self.changed = threading.Condition()
        self.due = math.inf  # when the local sample is written: write_interval_s after its first batch
        self.asked = self.done = 0  # writes asked for at once (flush, wait, close), and writes made since
        self.closing = False
        self.retry_at = 0.0
        self.thread = threading.Thread(target=self._run, name="reservoir-writer", daemon=True)
        self.thread.start()

    def submit(self, ids: list[str], X: np.ndarray, texts: list[str | None] | None = None,
               wait: bool = False) -> None:
        """Offer ``ids``/``X``/``texts`` (read now, not kept: only the chosen rows are copied)."""
        if time.monotonic() < self.retry_at:
            self.on_skipped(len(ids))
            return
        with self.changed:
            try:
                self.local.add(ids, X, time.time(), self.draws, texts)
            except ValueError as exc:  # rows of another width than those held: the labeler's inputs changed
                self.on_skipped(len(ids))
                log.warning("samples skipped: %s", exc)
                return
            if self.due == math.inf:  # the sample's first batch: the thread learns when to write it
                self.due = time.monotonic() + self.write_interval_s
                self.changed.notify()
        if wait:
            self.flush()

    def flush(self) -> None:
        """Write what was submitted so far, and wait until it is written (or skipped)."""
        with self.changed:
            self.asked += 1
            target = self.asked
            self.changed.notify()
            self.changed.wait_for(lambda: self.done >= target or not self.thread.is_alive())

    def close(self, timeout: float = 30.0) -> None:
        """Write what is held, then stop the thread."""
        with self.changed:
            self.closing = True
            self.changed.notify()
        self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self.changed:
                while not (self.closing or self.asked > self.done or time.monotonic() >= self.due):
                    self.changed.wait(None if self.due == math.inf else self.due - time.monotonic())
                sample, self.local, self.spare = self.local, self.spare, self.local
                self.due, asked, closing = math.inf, self.asked, self.closing
            self._write(sample)
            with self.changed:
                self.done = asked
                self.changed.notify_all()
            if closing:
                return

    def _write(self, sample: LocalSample) -> None:
        """Merge ``sample`` into staging, or count it skipped if Redis is down; clear it for reuse."""
        offered = sample.offered
        if offered:
            try:
                self.reservoir.write(sample, self.rng)
                self.on_offered(offered)
            except redis.RedisError as exc:
                self.on_skipped(offered)
                self.retry_at = time.monotonic() + self.retry_s
                log.warning("reservoir write failed (%s); samples skipped, labels keep flowing", exc)
            except Exception:  # a bug must not end the thread: flush() and a cold start wait on it
                self.on_skipped(offered)
                log.exception("reservoir write failed; samples skipped, labels keep flowing")
        sample.clear(self.reservoir.room)
