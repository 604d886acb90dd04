"""Uniform samples of a stream, in memory: the maths behind the reservoir's staging area.

- :func:`winners`: Vitter's Algorithm R for one batch, given the draws: which rows enter
  which slots of a sample of ``room`` when ``before`` rows came earlier.
- :class:`LocalSample`: a labeler's own uniform sample of what it labelled since its last
  write to Redis, built with :func:`winners`.
- :func:`merge`: which rows of such a sample replace which slots of staging (itself a
  uniform sample of ``room`` out of ``before`` offers) so that staging is then a uniform
  sample out of all of them. The number taken from the new rows is hypergeometric, the
  law of a uniform sample's share of them, so the merge is exact, whatever the sizes.

Writing a merged local sample once a second instead of each batch's winners sends far
fewer samples at high rates: Algorithm R writes about ``room x (1 + ln(n / room))``
samples over ``n`` offers, most of them overwritten before the next cycle; merges write
about ``room x (1 + ln J)`` over ``J`` writes, and never more than ``room`` at once.
"""

from __future__ import annotations

import numpy as np

MAX_EXACT_POPULATION = 10**9 - 1
"""numpy draws hypergeometric counts for populations below 10^9 each; past that a merge
draws a binomial count, the same law to within ``room / population``."""


def winners(before: int, draws: np.ndarray, room: int) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm R for a batch: (rows, slots) of the samples that enter a sample of ``room``
    slots when ``before`` samples were offered to it earlier.

    Row ``i`` is sample number ``s = before + i + 1``: it fills slot ``s - 1`` while
    ``s <= room``, then replaces slot ``floor(draws[i] * s)`` when that is below ``room``.
    Of two rows drawing one slot only the later is kept: it would overwrite the other.

    >>> rows, slots = winners(0, np.array([0.9, 0.9, 0.1, 0.6]), 2)  # fills slots 0 and 1; 0.1 * 3 -> slot 0
    >>> rows.tolist(), slots.tolist()
    ([2, 1], [0, 1])
    >>> [a.tolist() for a in winners(10, np.array([0.5, 0.05]), 2)]  # 0.5 * 11 -> 5, not a slot; 0.05 * 12 -> 0
    [[1], [0]]
    """
    seen = before + np.arange(1, len(draws) + 1)
    slots = np.where(seen <= room, seen - 1, np.floor(draws * seen)).astype(np.int64)
    rows = np.flatnonzero(slots < room)[::-1]  # latest first: np.unique keeps each slot's first
    taken, first = np.unique(slots[rows], return_index=True)
    return rows[first], taken


def merge(before: int, offered: int, held: int, room: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(rows, slots): which rows of a uniform sample of ``held`` out of ``offered`` new
    rows replace which slots of a uniform sample of ``room`` out of ``before`` earlier
    ones (slots ``0 .. min(before, room) - 1`` filled), so that the result is a uniform
    sample of ``room`` out of all ``before + offered`` (all of them while they fit).

    A uniform sample of ``room`` draws ``x`` of the new rows with the hypergeometric law;
    any ``x`` rows of a uniform sample of them, and any ``room - x`` rows of the earlier
    sample, are uniform too. Exact when ``held >= min(offered, room)``; a smaller sample
    (the room grew since it began: a cycle told no next fraction) gives every row it
    holds, at most.

    >>> merge(0, 3, 3, 5, np.random.default_rng(0))  # all fit: slots 0, 1, 2
    ([0, 1, 2], [0, 1, 2])
    >>> rows, slots = merge(100, 100, 5, 5, np.random.default_rng(0))  # about half are new
    >>> len(rows) == len(slots) == len(set(slots)) and set(slots) <= set(range(5))
    True
    """
    filled, held = min(before, room), min(held, offered)
    if before + offered <= room:  # every row fits: append them
        return list(range(held)), list(range(before, before + held))
    if before <= MAX_EXACT_POPULATION and offered <= MAX_EXACT_POPULATION:
        new = int(rng.hypergeometric(offered, before, room))
    else:
        new = int(np.clip(rng.binomial(room, offered / (before + offered)), room - filled, min(offered, room)))
    new = min(new, held)
    empty = list(range(filled, room))[:new]  # the new rows take empty slots first
    evicted = rng.choice(filled, size=new - len(empty), replace=False).tolist()
    rows = rng.choice(held, size=new, replace=False).tolist()
    return rows, empty + evicted


class LocalSample:
    """A uniform sample of up to ``capacity`` rows (id, vector, text, arrival time) of the
    rows :meth:`add`-ed since :meth:`clear`, held in memory (Algorithm R, :func:`winners`).

    Rows ``0 .. held - 1`` are the sample (:meth:`take` reads them); :attr:`offered`
    counts the rows it was offered. Vectors are copied into one buffer; ids and texts
    are looked up in their batches only when taken. :meth:`of` wraps a whole batch as
    its own sample, without copying.

    >>> sample = LocalSample(2)
    >>> X = np.arange(8, dtype=np.float32).reshape(4, 2)
    >>> sample.add(["a", "b", "c", "d"], X, 5.0, np.random.default_rng(1))
    >>> ids, arrived, vectors, texts = sample.take([0, 1])
    >>> sample.offered, sample.held, len(set(ids)) == 2 and set(ids) <= set("abcd"), arrived.tolist(), texts
    (4, 2, True, [5.0, 5.0], [None, None])
    >>> [int(vectors[i, 0]) // 2 for i in range(2)] == ["abcd".index(i) for i in ids]
    True
    """

    def __init__(self, capacity: int) -> None:
        self.X: np.ndarray | None = None
        self.clear(capacity)

    @classmethod
    def of(cls, ids: list[str], X: np.ndarray, arrived: float, texts: list[str | None] | None = None) -> LocalSample:
        """A whole batch as a sample of itself."""
        sample = cls(len(ids))
        sample.X, sample.arrived[:] = X, arrived
        sample.batches, sample.source[:] = [(ids, texts)], np.arange(len(ids))
        sample.offered = len(ids)
        return sample

    @property
    def held(self) -> int:
        return min(self.offered, self.capacity)

    def take(self, rows: list[int]) -> tuple[list[str], np.ndarray, np.ndarray, list[str | None]]:
        """The ids, arrival times, vectors and texts of the sample's ``rows`` (each below :attr:`held`)."""
        sources = list(zip(self.source_batch[rows].tolist(), self.source[rows].tolist()))
        ids = [self.batches[b][0][row] for b, row in sources]
        texts = [self.batches[b][1][row] if self.batches[b][1] else None for b, row in sources]
        return ids, self.arrived[rows], self.X[rows], texts

    def clear(self, capacity: int | None = None) -> None:
        """Forget every row; a new ``capacity`` if given (the vectors' buffer is kept while it fits)."""
        self.capacity = self.capacity if capacity is None else capacity
        self.offered = 0
        self.batches: list[tuple[list[str], list[str | None] | None]] = []
        self.source_batch = np.zeros(self.capacity, np.int64)  # slot -> its batch in batches
        self.source = np.zeros(self.capacity, np.int64)  # slot -> its row in that batch
        self.arrived = np.zeros(self.capacity)
        if self.X is not None and len(self.X) < self.capacity:
            self.X = None

    def add(self, ids: list[str], X: np.ndarray, arrived: float, rng: np.random.Generator,
            texts: list[str | None] | None = None) -> None:
        """Offer a batch (rows of ``X``, with their ids and texts, arrived at ``arrived``)."""
        width = X.shape[1]
        if self.X is None or (self.X.shape[1] != width and not self.offered):
            self.X = np.empty((self.capacity, width), np.float32)
        elif self.X.shape[1] != width:
            raise ValueError(f"rows of width {width} offered to a sample of width {self.X.shape[1]}")
        rows, slots = winners(self.offered, rng.random(len(ids)), self.capacity)
        fill = max(0, min(len(ids), self.capacity - self.offered))  # rows 0 .. fill - 1 fill slots in order
        if fill:  # one block copy; rows later in the batch that replace some of them are copied after
            self.X[self.offered:self.offered + fill] = X[:fill]
        self.offered += len(ids)
        if not len(rows):
            return
        later = rows >= fill
        self.X[slots[later]] = X[rows[later]]
        self.arrived[slots] = arrived
        self.source_batch[slots], self.source[slots] = len(self.batches), rows
        self.batches.append((ids, texts))
