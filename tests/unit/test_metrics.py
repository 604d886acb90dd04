import numpy as np
import pytest

from stream_dec.model.metrics import (centre_drift, cluster_accuracy, clustering_scores, label_agreement,
                                      many_to_one_accuracy)


def test_accuracy_hand_worked_case():
    # clusters 0,1,2 match classes 2,0,1; two of eight samples fall in the wrong cluster
    y_true = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    y_pred = np.array([1, 1, 2, 2, 2, 0, 0, 0])
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(6 / 8)


def test_accuracy_is_invariant_to_renaming_clusters():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    renamed = np.array([3, 0, 4, 1, 2])[y_pred]
    assert cluster_accuracy(y_true, y_pred) == cluster_accuracy(y_true, renamed)


def test_accuracy_with_more_clusters_than_classes_counts_extras_wrong():
    assert cluster_accuracy(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 2])) == pytest.approx(0.75)


def test_scores_are_perfect_for_a_permutation():
    scores = clustering_scores(np.array([0, 0, 1, 1, 2]), np.array([2, 2, 0, 0, 1]))
    assert scores == pytest.approx({"acc": 1.0, "acc_many": 1.0, "nmi": 1.0, "ari": 1.0})


def test_many_to_one_accuracy_forgives_extra_clusters_that_hungarian_counts_wrong():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    split = np.array([0, 0, 2, 2, 1, 1, 1, 1])  # class 0 split over two clusters, none mixed
    assert cluster_accuracy(y_true, split) == 0.75 and many_to_one_accuracy(y_true, split) == 1.0
    mixed = np.array([0, 0, 0, 1, 1, 1, 1, 1])  # one sample of class 0 in class 1's cluster
    assert many_to_one_accuracy(y_true, mixed) == cluster_accuracy(y_true, mixed) == 0.875


def test_label_agreement():
    assert label_agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5


def test_drift_absolute_and_relative():
    old = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])  # neighbour gap 4
    new = old.copy()
    new[0] += [0.0, 2.0]
    drift = centre_drift(old, new)
    assert drift.max == pytest.approx(2.0)
    assert drift.mean == pytest.approx(0.5)
    assert drift.relative_max == pytest.approx(0.5)
    assert drift.relative_mean == pytest.approx(0.125)


def test_drift_of_identical_centres_is_zero():
    centres = np.random.default_rng(1).normal(size=(5, 3))
    assert centre_drift(centres, centres).max == 0.0


def test_drift_rejects_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        centre_drift(np.zeros((3, 2)), np.zeros((4, 2)))
