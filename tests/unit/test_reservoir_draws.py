"""Algorithm R on a batch's draws, without Redis: what an offer writes."""

import numpy as np

from stream_dec.stream.reservoir import winners


def test_winners_are_what_sequential_algorithm_r_leaves_in_each_slot():
    rng = np.random.default_rng(3)
    for before, room, n in [(0, 50, 120), (30, 50, 40), (1000, 50, 2048), (0, 5, 3), (7, 0, 10)]:
        draws = rng.random(n)
        last: dict[int, int] = {}  # slot -> the row that wrote it last, one sample at a time
        for row, draw in enumerate(draws):
            s = before + row + 1
            slot = s - 1 if s <= room else int(np.floor(draw * s))
            if slot < room:
                last[slot] = row
        rows, slots = winners(before, draws, room)
        assert dict(zip(slots, rows)) == last and len(set(slots)) == len(slots)
