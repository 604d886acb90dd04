"""Clustering quality and stability metrics.

Quality against true classes: :func:`cluster_accuracy` (ACC with the Hungarian
matching of clusters to classes), :func:`many_to_one_accuracy` (each cluster counted as
its majority class: the fair ACC when there are more clusters than classes), NMI and ARI
(:func:`clustering_scores`). Stability
between two model versions: :func:`label_agreement` and :func:`centre_drift`.

Examples
--------
>>> import numpy as np
>>> y_true = np.array([0, 0, 1, 1, 2, 2])
>>> y_pred = np.array([1, 1, 0, 0, 0, 2])   # clusters are a permutation, one mistake
>>> round(cluster_accuracy(y_true, y_pred), 4)
0.8333
>>> label_agreement(np.array([0, 1, 2]), np.array([0, 1, 1]))
0.6666666666666666
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def contingency(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Counts ``w[c, t]`` of samples in cluster ``c`` with true class ``t``."""
    _, true_index = np.unique(y_true, return_inverse=True)
    _, pred_index = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((pred_index.max() + 1, true_index.max() + 1), dtype=np.int64)
    np.add.at(counts, (pred_index, true_index), 1)
    return counts


def cluster_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """ACC: the best one-to-one matching of clusters to classes (Hungarian), as a fraction.

    Clusters left without a class (more clusters than classes) count as wrong.
    """
    counts = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(y_true))


def many_to_one_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """ACC with each cluster mapped to its majority class (several clusters may share one).

    >>> many_to_one_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 2]))  # two clusters for class 0
    1.0
    """
    return float(contingency(y_true, y_pred).max(axis=1).sum() / len(y_true))


def clustering_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``{"acc", "acc_many", "nmi", "ari"}`` of predicted clusters against true classes."""
    return {
        "acc": cluster_accuracy(y_true, y_pred),
        "acc_many": many_to_one_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }


def label_agreement(before: np.ndarray, after: np.ndarray) -> float:
    """Fraction of samples whose cluster id is the same under two model versions."""
    return float(np.mean(np.asarray(before) == np.asarray(after)))


@dataclass(frozen=True)
class Drift:
    """How far centres moved between two versions (same ids, same latent space).

    Attributes
    ----------
    mean, max
        Mean and largest L2 distance a centre moved.
    relative_mean, relative_max
        The same divided by the median distance from each old centre to its nearest
        other centre: 0.1 means a centre moved a tenth of a typical gap between
        neighbouring clusters.
    """

    mean: float
    max: float
    relative_mean: float
    relative_max: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def neighbour_gap(centres: np.ndarray) -> float:
    """Median over centres of the distance to the nearest other centre."""
    distances = cdist(centres, centres)
    np.fill_diagonal(distances, np.inf)
    return float(np.median(distances.min(axis=1)))


def centre_drift(old: np.ndarray, new: np.ndarray) -> Drift:
    """Per-centre movement from ``old`` (K, d) to ``new`` (K, d), absolute and relative.

    >>> old = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    >>> d = centre_drift(old, old + [[0.2, 0.0], [0.0, 0.0], [0.0, 0.0]])
    >>> round(d.max, 3), round(d.relative_max, 3)
    (0.2, 0.1)
    """
    old, new = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    if old.shape != new.shape:
        raise ValueError(f"centre sets differ in shape: {old.shape} vs {new.shape}")
    moved = np.linalg.norm(new - old, axis=1)
    gap = neighbour_gap(old) if len(old) > 1 else 1.0
    gap = gap if gap > 0 else 1.0
    return Drift(float(moved.mean()), float(moved.max()), float(moved.mean() / gap), float(moved.max() / gap))
