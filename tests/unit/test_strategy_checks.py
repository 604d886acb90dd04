"""One battery of checks run over every strategy (River's check_estimator idea): whatever a
strategy does, it must not mutate the current version, must give the same result for the
same seed, must keep ids (no permutation) and must return finite weights; a strategy with
a strength knob changes nothing at strength 0."""

import dataclasses

import numpy as np
import pytest
import torch

from stream_dec.config import STRATEGIES, Config, FineTuneConfig, TrainConfig, UpdateConfig
from stream_dec.continual import Limits, apply_strategy, make_strategy
from stream_dec.model import ModelVersion

FAST = Config(
    train=TrainConfig(pretrain_epochs=5, max_epochs=1, n_init=2, batch_size=64, device="cpu"),
    update=UpdateConfig(finetune=FineTuneConfig(epochs=1.0, batch_size=64, update_interval=10)),
)
LOOSE = Limits(max_drift=10.0, min_agreement=0.0)


def snapshot(version: ModelVersion) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in version.tensors.items()}


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_leaves_the_current_version_alone_and_repeats_under_a_seed(setup, name):
    current, window = setup
    before = snapshot(current)
    first = apply_strategy(make_strategy(name, FAST, seed=5), current, window, LOOSE)
    second = apply_strategy(make_strategy(name, FAST, seed=5), current, window, LOOSE)
    for key, tensor in before.items():
        assert torch.equal(current.tensors[key], tensor), f"{name} changed the current version's {key}"
    for (key, a), b in zip(first.proposal.model.state_dict().items(), second.proposal.model.state_dict().values()):
        assert torch.equal(a, b), f"{name}: {key} differs between two runs with one seed"
        assert torch.isfinite(a).all(), f"{name}: {key} is not finite"
    assert not first.report.ids_permuted, name
    assert first.proposal.model.n_clusters >= current.header.n_clusters


@pytest.mark.parametrize("name, section, knob", [("translate", "translate", "ratio"),
                                                 ("recentre", "recentre", "ratio"),
                                                 ("grow", "grow", "budget")])
def test_strength_zero_changes_nothing_it_may_not(setup, name, section, knob):
    """Ratio 0 moves no centre and changes no label; a grow budget of 0 changes no retained label
    (it may still open ids for new samples that no old id labelled well)."""
    current, window = setup
    settings = dataclasses.replace(getattr(FAST.update, section), **{knob: 0.0})
    config = dataclasses.replace(FAST, update=dataclasses.replace(FAST.update, **{section: settings}))
    update = apply_strategy(make_strategy(name, config, seed=5), current, window, LOOSE)
    rows = window.retained if knob == "budget" else np.ones(len(window.X), dtype=bool)
    old = current.to_model().predict(window.X[rows])[0]
    assert np.array_equal(update.proposal.model.predict(window.X[rows])[0], old), name
    assert update.report.agreement == 1.0
    if knob == "ratio":  # centres are re-normalised on the unit sphere: float noise, not a move
        assert update.report.drift_max < 1e-6
