"""Window sequences for continual-update experiments (pure index arithmetic).

``replace-half`` is the user's protocol: a window of N samples; at each step a random
half of it is dropped and the same number of unseen samples is added. ``shift`` does
the same, but the unseen samples follow a drifting class mix: half of the classes
start rare (weight 0.1) and become common (weight 1) by the last step, a quarter fade
out and vanish (weight 0 at the last step), the rest stay common.

Examples
--------
>>> import numpy as np
>>> y = np.repeat(np.arange(4), 50)
>>> steps = scenario_windows(y, scenario="replace-half", window=40, steps=2, seed=0)
>>> [len(s.rows) for s in steps], [int(s.retained.sum()) for s in steps]
([40, 40, 40], [0, 20, 20])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_dec.config import SCENARIOS, Scenario


@dataclass(frozen=True)
class WindowStep:
    """One step: the window's row indices and which of them were in the previous window."""

    rows: np.ndarray
    retained: np.ndarray

    @property
    def added(self) -> np.ndarray:
        return self.rows[~self.retained]


def class_weights(n_classes: int, step: int, steps: int, scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    """Sampling weight of each class at ``step`` of ``steps`` (rng fixes the class roles)."""
    if scenario == "replace-half":
        return np.ones(n_classes)
    roles = rng.permutation(n_classes)
    progress = step / max(steps, 1)
    weights = np.ones(n_classes)
    rising, fading = roles[: n_classes // 2], roles[n_classes // 2 : n_classes // 2 + n_classes // 4]
    weights[rising] = 0.1 + 0.9 * progress
    weights[fading] = 1.0 - progress
    return weights


def scenario_windows(y: np.ndarray, *, scenario: Scenario, window: int, steps: int, seed: int) -> list[WindowStep]:
    """Steps 0..``steps``: step 0 is the initial window, each later one replaces half.

    Samples are never reused once dropped. Raises ``ValueError`` if the data cannot
    supply ``window + steps * window // 2`` unseen samples under the class mix.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (expected one of {', '.join(SCENARIOS)})")
    rng = np.random.default_rng(seed)
    classes, y_index = np.unique(y, return_inverse=True)
    role_seed = int(rng.integers(2**31))
    unused = np.ones(len(y), dtype=bool)

    def draw(n: int, step: int) -> np.ndarray:
        weights = class_weights(len(classes), step, steps, scenario, np.random.default_rng(role_seed))
        p = weights[y_index] * unused
        if np.count_nonzero(p) < n:
            raise ValueError(f"not enough unseen samples for step {step}: need {n}, have {np.count_nonzero(p)}")
        chosen = rng.choice(len(y), size=n, replace=False, p=p / p.sum())
        unused[chosen] = False
        return chosen

    rows = draw(window, 0)
    result = [WindowStep(rows, np.zeros(window, dtype=bool))]
    for step in range(1, steps + 1):
        keep = rng.choice(rows, size=window - window // 2, replace=False)
        rows = np.concatenate([keep, draw(window // 2, step)])
        result.append(WindowStep(rows, np.arange(window) < len(keep)))
    return result
