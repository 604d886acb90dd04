"""Each update strategy on a small real slice of wordnet_nouns."""

import dataclasses

import numpy as np
import pytest
import torch

from stream_dec.config import Config, FineTuneConfig, GrowConfig, ModelConfig, RefitConfig
from stream_dec.continual import Limits, Window, apply_strategy, make_strategy
from stream_dec.continual.anchored import Anchored
from stream_dec.continual.base import is_identity_matching
from stream_dec.continual.ewc import Ewc, fisher_diagonal
from stream_dec.continual.finetune import anchored_parameters
from stream_dec.continual.grow import Grow
from stream_dec.continual.retrain import Retrain, model_config_of
from stream_dec.continual.translate import Translate, matched_centroids, translate_centres
from stream_dec_lab.evaluate import GROW_RANDOM, lab_strategy
from stream_dec.model import DEC, ModelVersion, fit_dec
from stream_dec.model.training import latent_radius_for
from tests.conftest import two_centre_model, wordnet_slice
from tests.unit.conftest import TRAIN

FINETUNE = FineTuneConfig(epochs=1.0, batch_size=64, update_interval=10)
LOOSE = Limits(max_drift=10.0, min_agreement=0.0)


def centres(version_or_model):
    model = version_or_model.to_model() if isinstance(version_or_model, ModelVersion) else version_or_model
    return model.cluster_centres().detach().numpy()


def test_matched_centroids_and_translation_arithmetic():
    old = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    new = np.array([[0.0, 11.0], [1.0, 1.0], [9.0, 0.0]])
    matched = matched_centroids(old, new)
    np.testing.assert_array_equal(matched, [[1.0, 1.0], [9.0, 0.0], [0.0, 11.0]])
    np.testing.assert_allclose(translate_centres(old, matched, 0.5), [[0.5, 0.5], [9.5, 0.0], [0.0, 10.5]])


def test_translate_ratio_zero_is_a_no_op(setup):
    current, window = setup
    proposal = Translate(ratio=0.0).propose(current, window)
    np.testing.assert_allclose(centres(proposal.model), centres(current), atol=1e-6)
    update = apply_strategy(Translate(ratio=0.0), current, window, Limits())
    assert update.report.agreement == 1.0 and update.report.drift_max < 1e-5 and update.report.accepted


def test_translate_ratio_one_lands_on_the_matched_centroids(setup):
    current, window = setup
    model = current.to_model()
    proposal = Translate(ratio=1.0, seed=5).propose(current, window)
    from sklearn.cluster import KMeans

    from stream_dec.model.training import encode_all

    codes = encode_all(model, torch.from_numpy(window.X)).numpy()
    centroids = KMeans(6, n_init=3, random_state=5).fit(codes).cluster_centers_
    expected = model.project(torch.from_numpy(matched_centroids(centres(current), centroids))).numpy()
    np.testing.assert_allclose(centres(proposal.model), expected, atol=1e-5)
    # the encoder is unchanged
    for name, tensor in proposal.model.autoencoder.encoder.state_dict().items():
        assert torch.equal(tensor, current.tensors[f"autoencoder.encoder.{name}"])


def test_small_ratio_keeps_ids_aligned(setup):
    current, window = setup
    update = apply_strategy(Translate(ratio=0.1), current, window, LOOSE)
    assert not update.report.ids_permuted and update.report.agreement > 0.9


def test_fisher_is_non_negative_with_parameter_shapes(setup):
    current, window = setup
    model = current.to_model()
    fisher = fisher_diagonal(model, torch.from_numpy(window.X), batch_size=32)
    params = anchored_parameters(model)
    assert set(fisher) == set(params) and "centres" in fisher
    for name, f in fisher.items():
        assert f.shape == params[name].shape and bool((f >= 0).all())
    assert sum(float(f.sum()) for f in fisher.values()) > 0


def parameter_distance(a: ModelVersion, b) -> float:
    return sum(float((a.tensors[n] - p.detach()).pow(2).sum()) for n, p in anchored_parameters(b).items())


def test_ewc_with_huge_lambda_keeps_parameters_near_the_old_ones(setup):
    """EWC holds parameters in proportion to their Fisher information: measure that distance."""
    current, window = setup
    fisher = fisher_diagonal(current.to_model(), torch.from_numpy(window.X[window.retained]), batch_size=32)

    def fisher_distance(model):
        return sum(float((fisher[n] * (current.tensors[n] - p.detach()).pow(2)).sum())
                   for n, p in anchored_parameters(model).items())

    free = Ewc(lam=0.0, finetune=FINETUNE, device="cpu").propose(current, window)
    held = Ewc(lam=1e6, finetune=FINETUNE, device="cpu").propose(current, window)
    assert fisher_distance(held.model) < 0.1 * fisher_distance(free.model)


def test_ewc_stores_an_accumulated_fisher_for_the_next_version(setup):
    current, window = setup
    update = apply_strategy(Ewc(gamma=0.5, finetune=FINETUNE, device="cpu"), current, window, LOOSE)
    version = update.to_version()
    assert version.header.version == 2 and version.header.parent == 1 and version.header.strategy == "ewc"
    fisher = version.auxiliary("fisher.")
    assert set(fisher) == set(anchored_parameters(version.to_model()))
    # the next EWC step starts from the stored Fisher
    following = apply_strategy(Ewc(gamma=0.5, finetune=FINETUNE, device="cpu"), version, window, LOOSE).to_version()
    assert all(bool((following.auxiliary("fisher.")[n] >= 0.5 * fisher[n] - 1e-12).all()) for n in fisher)


def test_refit_anchor_pulls_toward_the_previous_version_not_zero(setup):
    current, window = setup
    loose = make_strategy("refit", Config(update=dataclasses.replace(Config().update, finetune=FINETUNE,
                                                                     refit=RefitConfig(anchor=0.0))))
    tight = make_strategy("refit", Config(update=dataclasses.replace(Config().update, finetune=FINETUNE,
                                                                     refit=RefitConfig(anchor=1e6))))
    assert parameter_distance(current, tight.propose(current, window).model) < \
        0.1 * parameter_distance(current, loose.propose(current, window).model)


def test_anchored_distillation_holds_the_retained_samples_outputs(setup):
    current, window = setup
    teacher = current.to_model().soft_assign(window.X)
    retained = torch.from_numpy(window.retained)

    def kl_on(rows, distill):
        model = Anchored(distill=distill, lr=0.05, epochs=3.0, finetune=FINETUNE, device="cpu").propose(
            current, window).model
        student = model.soft_assign(window.X)
        kl = (teacher * (teacher.log() - student.log())).sum(1)
        return float(kl[rows].mean())

    free, held = kl_on(retained, 0.0), kl_on(retained, 100.0)
    assert free > 0  # self-training moved the outputs ...
    assert held < 0.5 * free  # ... the distillation term holds them where the old samples are
    assert kl_on(~retained, 100.0) > held  # and holds the unseen samples less


def test_retrain_aligns_its_ids_to_the_old_ones(setup):
    current, window = setup
    update = apply_strategy(Retrain(TRAIN, seed=7), current, window, LOOSE)
    assert not update.report.ids_permuted


@pytest.mark.parametrize("radius", [0.0, 7.0])
def test_retrain_keeps_the_models_geometry_whatever_the_window_looks_like(radius):
    """Retrain on rows that are not unit vectors ("auto" alone would pick euclidean for them)."""
    X, _ = wordnet_slice(classes=3, per_class=40, seed=4)
    current = ModelVersion.from_model(DEC((384, 16), n_clusters=3, alpha=50.0, latent_radius=radius), version=1)
    window = Window.of(2.0 * X, np.arange(len(X)) < 60)
    proposal = Retrain(dataclasses.replace(TRAIN, pretrain_epochs=2, max_epochs=1), seed=1).propose(current, window)
    assert proposal.model.latent_radius == radius and proposal.model.dims == current.header.dims
    assert latent_radius_for(window.X, model_config_of(current)) == radius


def test_permuted_ids_are_reported_not_returned_silently(setup):
    current, window = setup
    swapped = current.to_model()
    with torch.no_grad():
        swapped.centres.copy_(swapped.centres[torch.tensor([1, 0, 2, 3, 4, 5])].clone())

    class Swap:
        name = "swap"

        def propose(self, version, win):
            from stream_dec.continual import Proposal

            return Proposal(swapped)

    report = apply_strategy(Swap(), current, window, Limits()).report
    assert report.ids_permuted and not report.accepted
    assert any("permuted" in v for v in report.violations)


def test_limits_are_enforced(setup):
    current, window = setup
    report = apply_strategy(Translate(ratio=1.0), current, window,
                            Limits(max_drift=0.0, min_agreement=1.0)).report
    assert not report.accepted
    assert any("relative drift" in v for v in report.violations)


def test_frozen_changes_nothing(setup):
    current, window = setup
    update = apply_strategy(make_strategy("frozen", Config()), current, window, Limits())
    assert update.report.agreement == 1.0 and update.report.drift_max == 0.0 and update.report.accepted


def test_identity_matching_detects_a_swap():
    old = np.array([0, 0, 1, 1, 2, 2])
    assert is_identity_matching(old, old, 3)
    assert not is_identity_matching(old, np.array([1, 1, 0, 0, 2, 2]), 3)


def test_a_new_id_for_samples_an_old_id_had_absorbed_is_no_rename():
    """60 samples of an unseen region sit in id 0 (50 retained samples): grow's new id takes
    them, and the update is accepted, since ids are checked on what they labelled before."""
    model = two_centre_model()
    rng = np.random.default_rng(0)
    X = rng.normal([[0, 0]] * 50 + [[10, 0]] * 50 + [[0, 10]] * 60, 0.3)
    window = Window.of(X, np.arange(160) < 100)
    current = ModelVersion.from_model(model, version=1)
    update = apply_strategy(Grow(budget=0.0, candidates=3, min_size=20), current, window, Limits())
    labels = update.proposal.model.predict(window.X)[0]
    assert (labels[100:] == 2).all() and (labels[:100] == current.to_model().predict(window.X[:100])[0]).all()
    assert update.report.accepted and not update.report.ids_permuted


def test_grow_opens_a_new_id_for_a_class_the_model_never_saw():
    """Train on 5 classes; the window adds a sixth: grow gives it a new id and keeps the old ones."""
    X, y = wordnet_slice(classes=6, per_class=120, seed=5)
    seen = y < 5
    model, _ = fit_dec(X[seen][:400], ModelConfig(), TRAIN, n_clusters=5)  # the default linear D-384 shape
    current = ModelVersion.from_model(model, version=1)
    retained = X[seen][:200]
    new = np.concatenate([X[seen][400:500], X[y == 5]])  # 100 of the known classes, 120 of the new one
    window = Window.of(np.concatenate([retained, new]), np.arange(200 + len(new)) < 200)
    grow = GrowConfig(budget=0.02, candidates=8)
    config = dataclasses.replace(Config(), update=dataclasses.replace(Config().update, grow=grow))
    update = apply_strategy(make_strategy("grow", config), current, window, Limits())
    grown = update.proposal.model
    assert grown.n_clusters > 5 and update.report.accepted and not update.report.ids_permuted
    np.testing.assert_allclose(centres(grown)[:5], centres(current), atol=1e-6)  # old ids untouched
    labels = grown.predict(window.X)[0]
    unseen = np.arange(len(labels)) >= 300
    assert np.mean(unseen[labels >= 5]) >= 0.8  # a new id means the new class
    assert np.mean(labels[unseen] >= 5) >= 0.3  # and holds a good part of it within the budget
    assert np.mean(labels[:200] == current.to_model().predict(retained)[0]) >= 0.98  # the budget


def test_grow_random_opens_ids_at_new_samples_by_grows_rules(setup):
    """The control's candidates are new samples' codes, not centroids; the budget still holds."""
    current, window = setup
    config = dataclasses.replace(Config(), update=dataclasses.replace(
        Config().update, grow=GrowConfig(budget=0.05, candidates=8, min_size=5)))
    update = apply_strategy(lab_strategy(GROW_RANDOM, config), current, window, LOOSE)
    grown = update.proposal.model
    assert grown.n_clusters > current.header.n_clusters and not update.report.ids_permuted
    np.testing.assert_allclose(centres(grown)[:6], centres(current), atol=1e-6)
    with torch.no_grad():
        codes = grown.project(grown.encode(torch.from_numpy(window.X[~window.retained]))).numpy()
    opened = centres(grown)[6:]
    assert np.abs(opened[:, None, :] - codes[None]).max(-1).min(1).max() < 1e-5  # each one a new sample's code
    assert update.report.agreement >= 0.95
