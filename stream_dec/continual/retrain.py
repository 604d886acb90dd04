"""``retrain`` (baseline, not for production): full DEC training on the window.

The new model has its own encoder, so its latent space is not the old one and centres
cannot be compared directly. Its ids are aligned to the old ones by Hungarian matching
on label overlap: new cluster j takes the old id whose retained samples (all the
window's when none are marked) it shares most, the samples on which ids are checked.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from stream_dec.config import ModelConfig, TrainConfig
from stream_dec.continual.base import Proposal, Window, overlap_matching
from stream_dec.model import DEC, ModelVersion
from stream_dec.model.training import fit_dec


def model_config_of(current: ModelVersion) -> ModelConfig:
    """The :class:`ModelConfig` that built ``current`` (dims, K, alpha, geometry and radius)."""
    h = current.header
    return ModelConfig(hidden_dims=h.dims[1:-1], latent_dim=h.dims[-1], clusters=h.n_clusters, alpha=h.alpha,
                       geometry="cosine" if h.latent_radius > 0 else "euclidean",
                       latent_radius=h.latent_radius or ModelConfig.latent_radius)


def align_ids(old: DEC, new: DEC, X: np.ndarray) -> None:
    """Reorder ``new``'s centres in place so its ids agree best with ``old``'s on ``X``."""
    matching = overlap_matching(old.predict(X)[0], new.predict(X)[0], old.n_clusters)  # new id -> old id
    order = np.argsort(matching)  # old id -> new id
    with torch.no_grad():
        new.centres.copy_(new.centres[torch.from_numpy(order).to(new.centres.device)].clone())


class Retrain:
    """Train from scratch on the window, then align ids (see the module docstring)."""

    name = "retrain"

    def __init__(self, train: TrainConfig, seed: int = 0) -> None:
        self.train = dataclasses.replace(train, seed=seed)

    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        new, _ = fit_dec(window.X, model_config_of(current), self.train, current.header.n_clusters)
        align_ids(current.to_model(new.centres.device), new, window.X[window.agreement_rows])
        return Proposal(new)
