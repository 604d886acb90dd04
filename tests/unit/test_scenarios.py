import numpy as np
import pytest

from stream_dec_lab.evaluate import adopt, agreement_ceiling, retrain_cells
from stream_dec_lab.scenarios import class_weights, scenario_windows
from stream_dec.model.metrics import cluster_accuracy


@pytest.fixture()
def labels():
    return np.repeat(np.arange(8), 300)


def test_replace_half_keeps_half_and_never_reuses_samples(labels):
    steps = scenario_windows(labels, scenario="replace-half", window=200, steps=4, seed=1)
    seen = set(steps[0].rows.tolist())
    for previous, step in zip(steps, steps[1:]):
        kept = step.rows[step.retained]
        assert len(step.rows) == 200 and len(kept) == 100 and len(set(step.rows.tolist())) == 200
        assert set(kept.tolist()) <= set(previous.rows.tolist())
        assert not set(step.added.tolist()) & seen  # unseen samples only
        seen |= set(step.added.tolist())


def test_shift_drifts_the_class_mix(labels):
    steps = scenario_windows(labels, scenario="shift", window=400, steps=3, seed=2)
    first = np.bincount(labels[steps[0].rows], minlength=8)
    last_added = np.bincount(labels[steps[-1].added], minlength=8)
    rare_at_start = first < 20
    assert rare_at_start.sum() == 4  # half of the classes start rare (weight 0.1 of 1)
    assert last_added[rare_at_start].min() > 20  # ... and are common by the last step
    assert (last_added == 0).sum() == 2  # a quarter vanish


def test_weights_are_reproducible_and_bounded():
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    for step in range(4):
        w = class_weights(10, step, 3, "shift", rng())
        assert np.array_equal(w, class_weights(10, step, 3, "shift", rng())) and w.min() >= 0 and w.max() <= 1


def test_too_little_data_is_a_clear_error(labels):
    with pytest.raises(ValueError, match="not enough unseen samples"):
        scenario_windows(labels, scenario="replace-half", window=2000, steps=2, seed=0)


def test_agreement_ceiling_is_what_an_oracle_update_reaches_and_grows_with_the_budget(labels):
    """An oracle that relabels whole classes, best ratio first, reaches the ceiling and no more."""
    step = scenario_windows(labels, scenario="shift", window=400, steps=2, seed=3)[2]
    y, retained = labels[step.rows], step.retained
    ceilings = [agreement_ceiling(y, retained, a) for a in (1.0, 0.99, 0.98, 0.9, 0.0)]
    assert ceilings == sorted(ceilings) and ceilings[-1] == 1.0  # no constraint: relabel everything
    assert ceilings[0] == np.isin(y, np.unique(y[~retained & ~np.isin(y, y[retained])])).mean()
    # oracle: relabel whole classes with the most window samples per retained one while the budget lasts
    classes = np.unique(y)
    ratio = {c: (y == c).sum() / max((y[retained] == c).sum(), 1e-9) for c in classes}
    changed = np.zeros(len(y), dtype=bool)
    for c in sorted(classes, key=lambda c: -ratio[c]):
        if (changed[retained] | (y[retained] == c)).mean() > 0.1:
            break
        changed |= y == c
    assert 1 - changed[retained].mean() >= 0.9
    assert changed.mean() <= agreement_ceiling(y, retained, 0.9) + 1e-12


def test_retrain_cells_keep_agreement_and_reach_retrain_without_a_limit(labels):
    """The oracle relabelling of frozen x retrain cells: within the limit in expectation and never
    worse than frozen; with no limit at least as accurate as retrain itself (the cells refine its clusters)."""
    step = scenario_windows(labels, scenario="shift", window=400, steps=2, seed=3)[2]
    y, retained = labels[step.rows], step.retained
    rng = np.random.default_rng(0)
    frozen = np.where(rng.random(len(y)) < 0.4, rng.integers(0, 8, len(y)), y)  # a worse and a better clustering
    retrained = np.where(rng.random(len(y)) < 0.1, rng.integers(0, 8, len(y)), y)
    accuracy = [cluster_accuracy(y, frozen)]
    for limit in (1.0, 0.98, 0.9, 0.0):
        mixed = adopt(retrain_cells(y, frozen, retrained, retained, limit), frozen, retrained)
        share = np.bincount(y[retained], minlength=8) / np.bincount(y, minlength=8)  # retained per sample, by class
        assert share[y[mixed != frozen]].sum() <= (1 - limit) * retained.sum() + 1e-9  # expected labels changed
        accuracy.append(cluster_accuracy(y, mixed))
    assert accuracy == sorted(accuracy) and accuracy[2] > accuracy[0]  # the looser the limit, the more it gains
    assert accuracy[-1] >= cluster_accuracy(y, retrained)
