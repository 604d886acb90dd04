"""Fixtures shared by the unit tests of the update strategies."""

import numpy as np
import pytest

from stream_dec.config import ModelConfig, TrainConfig
from stream_dec.continual import Window
from stream_dec.model import ModelVersion, fit_dec
from tests.conftest import wordnet_slice

TRAIN = TrainConfig(pretrain_epochs=15, max_epochs=3, n_init=3, batch_size=64, device="cpu")
MODEL = ModelConfig(hidden_dims=(64,), latent_dim=10)


@pytest.fixture(scope="module")
def setup():
    """A model trained on 300 samples and the next window: 150 of them kept, 150 unseen."""
    X, _ = wordnet_slice(classes=6, per_class=75, seed=3)
    first, unseen = X[:300], X[300:]
    model, _ = fit_dec(first, MODEL, TRAIN, n_clusters=6)
    window = Window.of(np.concatenate([first[:150], unseen]), np.arange(300) < 150)
    return ModelVersion.from_model(model, version=1), window
