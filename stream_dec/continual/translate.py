"""``translate``: move each centre a little toward where the new window's cluster is.

KMeans (K clusters) on the window's latent codes, Hungarian matching of old centres
to the new centroids on their distances
(``scipy.optimize.linear_sum_assignment``), then each old centre moves ``ratio`` of the
way toward its match. The encoder is unchanged, so ids keep their meaning by
construction and the drift is at most ``ratio`` times the matched distance.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

from stream_dec.continual.base import Proposal, Window
from stream_dec.model import ModelVersion
from stream_dec.model.training import encode_all


def matched_centroids(centres: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Reorder ``centroids`` (K, d) so row j is the one matched to ``centres[j]``.

    The matching minimises the total distance (Hungarian).

    >>> old = np.array([[0.0, 0.0], [10.0, 0.0]])
    >>> matched_centroids(old, np.array([[9.0, 1.0], [1.0, 0.0]])).tolist()
    [[1.0, 0.0], [9.0, 1.0]]
    """
    rows, cols = linear_sum_assignment(cdist(centres, centroids))
    return centroids[cols[np.argsort(rows)]]


def translate_centres(centres: np.ndarray, targets: np.ndarray, ratio: float) -> np.ndarray:
    """``centres + ratio * (targets - centres)``: 0 keeps them, 1 lands on the targets."""
    return centres + ratio * (targets - centres)


class Translate:
    """Centre translation; see the module docstring.

    Parameters
    ----------
    ratio
        Fraction of the way each old centre moves toward its matched centroid (0: none).
    n_init
        KMeans restarts on the window's latent codes.
    seed
        KMeans random state.
    """

    name = "translate"

    def __init__(self, ratio: float = 0.05, n_init: int = 3, seed: int = 0) -> None:
        self.ratio, self.n_init, self.seed = ratio, n_init, seed

    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        model = current.to_model()
        codes = encode_all(model, torch.from_numpy(window.X)).numpy()
        centroids = KMeans(model.n_clusters, n_init=self.n_init, random_state=self.seed).fit(codes).cluster_centers_
        old = model.cluster_centres().detach().numpy()
        targets = model.project(torch.from_numpy(matched_centroids(old, centroids))).numpy()
        moved = model.project(torch.from_numpy(translate_centres(old, targets, self.ratio)))
        with torch.no_grad():
            model.centres.copy_(moved.to(model.centres.dtype))
        return Proposal(model)
