"""``recentre``: move each centre part of the way to the mean of the window samples it labels.

A damped Lloyd step in latent space: with the encoder unchanged, each centre moves
``ratio`` of the way toward the centroid of the window's codes that the current model
assigns to it (a centre that labels no sample stays). Unlike ``translate``, which
re-clusters the window with KMeans and matches the result, the target of each centre is
defined by the current partition, so ids cannot be swapped by a poor match and a
centre only follows its own samples.
"""

from __future__ import annotations

import numpy as np
import torch

from stream_dec.continual.base import Proposal, Window
from stream_dec.continual.translate import translate_centres
from stream_dec.model import ModelVersion
from stream_dec.model.training import encode_all


def cluster_means(codes: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Row k: the mean of ``codes`` labelled k, or ``centres[k]`` if none is.

    >>> cluster_means(np.array([[0.0], [2.0], [5.0]]), np.array([0, 0, 2]), np.zeros((3, 1))).ravel().tolist()
    [1.0, 0.0, 5.0]
    """
    sums = np.zeros_like(centres)
    np.add.at(sums, labels, codes)
    counts = np.bincount(labels, minlength=len(centres))[:, None]
    return np.where(counts > 0, sums / np.maximum(counts, 1), centres)


class Recentre:
    """Damped Lloyd step on the window; see the module docstring."""

    name = "recentre"

    def __init__(self, ratio: float = 0.5, iterations: int = 1) -> None:
        self.ratio, self.iterations = ratio, iterations

    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        model = current.to_model()
        X = torch.from_numpy(window.X)
        with torch.no_grad():
            for _ in range(self.iterations):
                codes = encode_all(model, X)
                labels = model.log_assign(codes).argmax(1).numpy()
                old = model.cluster_centres().numpy()
                targets = model.project(torch.from_numpy(cluster_means(codes.numpy(), labels, old))).numpy()
                moved = model.project(torch.from_numpy(translate_centres(old, targets, self.ratio)))
                model.centres.copy_(moved.to(model.centres.dtype))
        return Proposal(model)
