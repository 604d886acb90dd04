"""The updater's promotion gate, without Kafka or Redis (the gate is a pure function)."""

import dataclasses

import numpy as np

from stream_dec.config import Config, GrowConfig
from stream_dec.continual import Window, apply_strategy, limits_of, make_strategy
from stream_dec.model import DEC, ModelVersion
from stream_dec.continual.gate import Verdict, encoder_changed, promotion_gate
from tests.conftest import two_centre_model


def test_old_samples_the_update_never_saw_can_stop_it():
    """grow opens an id where the window's new samples are; no retained sample lies there, so
    retained agreement is 1 and the update's own limits pass. Old samples the cycle dropped,
    between the old centre and the new region, change id: the gate says no."""
    model = two_centre_model()
    rng = np.random.default_rng(0)
    X = rng.normal([[0, 0]] * 50 + [[10, 0]] * 50 + [[0, 10]] * 60, 0.3).astype(np.float32)
    window = Window.of(X, np.arange(160) < 100)
    config = dataclasses.replace(Config(), update=dataclasses.replace(
        Config().update, strategy="grow", grow=GrowConfig(budget=0.0, candidates=3, min_size=20)))
    current = ModelVersion.from_model(model, version=1)
    update = apply_strategy(make_strategy("grow", config), current, window, limits_of(config))
    assert update.report.accepted and update.report.agreement == 1.0
    assert update.report.loss > update.report.previous_loss * 1.01  # no loss gate: the encoder is unchanged
    far = rng.normal([[0, 0]] * 40, 0.3).astype(np.float32)  # old samples the new id leaves alone
    near = rng.normal([[0, 7]] * 10, 0.3).astype(np.float32)  # old samples, id 0 before, nearer the new centre
    assert promotion_gate(update, far, limits_of(config)) == Verdict({}, 1.0)
    assert promotion_gate(update, np.empty((0, 2), np.float32), limits_of(config)) == Verdict({}, None)
    verdict = promotion_gate(update, np.concatenate([far, near]), limits_of(config))
    assert not verdict.passed and verdict.held_out_agreement == 0.8 and list(verdict.failed) == ["held_out"]
    assert verdict.reasons.startswith("agreement 0.8000 on 50 held-out old samples < min_agreement")


def with_losses(update, previous: float, loss: float):
    return dataclasses.replace(update, report=dataclasses.replace(update.report, previous_loss=previous, loss=loss))


def test_the_loss_gate_judges_updates_that_change_the_encoder():
    """A fine-tune (refit) changes the encoder: its DEC loss may not rise beyond
    max_loss_increase. translate only moves centres: a loss that rose as much does not stop it."""
    current = ModelVersion.from_model(DEC((2, 2), n_clusters=2), version=1)
    X = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    window = Window.of(X, np.arange(40) < 20)
    refit = apply_strategy(make_strategy("refit", Config()), current, window, limits_of(Config()))
    moved = apply_strategy(make_strategy("translate", Config()), current, window, limits_of(Config()))
    assert encoder_changed(refit) and not encoder_changed(moved)
    assert promotion_gate(with_losses(refit, 0.05, 0.0506), X, limits_of(Config())).failed == {
        "loss": "DEC loss 0.050600 worse than the current version's 0.050000"}
    assert "loss" not in promotion_gate(with_losses(refit, 0.05, 0.05004), X, limits_of(Config())).failed  # float noise
    assert "loss" not in promotion_gate(with_losses(moved, 0.05, 0.0506), X, limits_of(Config())).failed


def test_the_update_limits_are_one_check_of_the_gate():
    model = DEC((2, 2), n_clusters=2)
    current = ModelVersion.from_model(model, version=1)
    X = np.random.default_rng(2).normal(size=(40, 2)).astype(np.float32)
    update = apply_strategy(make_strategy("frozen", Config()), current, Window.of(X), limits_of(Config()))
    violations = ("label agreement 0.9000 < min_agreement 0.98", "relative drift 0.5 > max_drift 0.1")
    broken = dataclasses.replace(update, report=dataclasses.replace(update.report, violations=violations))
    verdict = promotion_gate(broken, X, limits_of(Config()))
    assert verdict.failed == {"limits": "; ".join(violations)}
    assert verdict.held_out_agreement == 1.0


def test_a_nan_candidate_fails_closed_and_cannot_become_a_version():
    """NaN compares false with every limit: a NaN centre once passed the gate (accepted=True)."""
    import pytest
    import torch

    from stream_dec.errors import CheckpointError

    current = ModelVersion.from_model(two_centre_model(), version=1)
    X = np.random.default_rng(3).normal([[0, 0]] * 20 + [[10, 0]] * 20, 0.3).astype(np.float32)

    class NanCentre:
        name = "nan-centre"

        def propose(self, version, window):
            proposal = make_strategy("frozen", Config()).propose(version, window)
            with torch.no_grad():
                proposal.model.centres[1, 0] = float("nan")
            return proposal

    update = apply_strategy(NanCentre(), current, Window.of(X), limits_of(Config()))
    assert not update.report.accepted
    assert "the proposal holds NaN or Inf weights" in update.report.violations
    assert any(v.startswith("relative drift nan") for v in update.report.violations)
    assert not promotion_gate(update, X, limits_of(Config())).passed
    with pytest.raises(CheckpointError, match="not finite"):
        update.to_version()
