import dataclasses

import numpy as np
import torch

from stream_dec.config import ModelConfig, TrainConfig
from stream_dec.model.metrics import cluster_accuracy
from stream_dec.model.training import fit_dec

FAST = TrainConfig(pretrain_epochs=15, max_epochs=3, n_init=3, batch_size=64, device="cpu")
SMALL = ModelConfig(hidden_dims=(64,), latent_dim=10)


def test_training_is_reproducible_under_a_seed(wordnet_small):
    X, _ = wordnet_small
    first, _ = fit_dec(X, SMALL, FAST, n_clusters=6)
    second, _ = fit_dec(X, SMALL, FAST, n_clusters=6)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    other, _ = fit_dec(X, SMALL, dataclasses.replace(FAST, seed=1), n_clusters=6)
    assert not torch.equal(first.centres, other.centres)


def test_dec_clusters_real_embeddings_well_above_chance(wordnet_small):
    X, y = wordnet_small
    model, report = fit_dec(X, SMALL, FAST, n_clusters=6)
    labels, confidence = model.predict(X)
    assert cluster_accuracy(y, labels) > 0.45  # chance is 1/6; measured 0.56
    assert report.self_train.iterations > 0 and np.all((confidence > 0) & (confidence <= 1))


def test_self_training_stops_on_tol(wordnet_small):
    X, _ = wordnet_small
    _, report = fit_dec(X, SMALL, dataclasses.replace(FAST, tol=0.5, update_interval=5, max_epochs=50), n_clusters=6)
    assert report.self_train.converged and report.self_train.epochs < 50


def test_epochs_reported_never_exceed_max_epochs(wordnet_small):
    """600 rows in batches of 64 is 10 steps a pass (the last one short): the report said 3.2 for 3."""
    X, _ = wordnet_small
    assert len(X) % FAST.batch_size  # a short last batch
    _, report = fit_dec(X, SMALL, dataclasses.replace(FAST, tol=0.0), n_clusters=6)
    assert not report.self_train.converged and report.self_train.epochs == FAST.max_epochs
