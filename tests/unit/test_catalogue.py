"""The cluster catalogue: c-TF-IDF terms, exemplars and texts drawn from each cluster's own members."""

import numpy as np
import pytest
import torch

from stream_dec.config import ModelConfig, TrainConfig
from stream_dec.io.datasets import load_dataset
from stream_dec_lab.demo import DEMO_DATA
from stream_dec.model import DEC, ModelVersion, fit_dec
from stream_dec.model.catalogue import Catalogue, build_catalogue, top_terms
from stream_dec.model.metrics import cluster_accuracy


@pytest.fixture(scope="module")
def trained():
    """DEC trained on 8 classes of the demo data (real WordNet definitions and their embeddings)."""
    data = load_dataset(DEMO_DATA)
    rows = np.flatnonzero(data.y < 8)
    X, y, texts = data.X[rows], data.y[rows], [data.texts[i] for i in rows]
    model, _ = fit_dec(X, ModelConfig(hidden_dims=(128,), latent_dim=10),
                       TrainConfig(pretrain_epochs=30, max_epochs=5, n_init=3, batch_size=128, device="cpu"),
                       n_clusters=8)
    return model, X, y, texts


def test_terms_exemplars_and_texts_come_from_the_clusters_own_members(trained):
    model, X, y, texts = trained
    ids = [f"row-{i}" for i in range(len(X))]
    catalogue = build_catalogue(model, X, ids, texts, version=1)
    labels, _ = model.predict(X)
    assert [c.size for c in catalogue.clusters] == np.bincount(labels, minlength=8).tolist()
    for card in catalogue.clusters:
        members = np.flatnonzero(labels == card.cluster)
        member_texts = [texts[i] for i in members]
        assert card.exemplars and {int(e.split("-")[1]) for e in card.exemplars} <= set(members.tolist())
        assert card.texts and all(any(m.startswith(t) for m in member_texts) for t in card.texts)
        words = " ".join(member_texts).lower()
        assert len(card.terms) == 8 and all(term in words for term in card.terms), card.terms
        assert not card.new and card.drift is None and card.previous_terms is None


def test_a_cluster_of_one_class_is_named_by_that_class(trained):
    model, X, y, texts = trained
    catalogue = build_catalogue(model, X, [str(i) for i in range(len(X))], texts, version=1)
    labels, _ = model.predict(X)
    assert cluster_accuracy(y, labels) > 0.5  # the model found the classes, so its clusters have themes
    # the animal class (noun.animal, class 1 here): its definitions' commonest distinctive words
    animal = np.bincount(labels[y == 1]).argmax()
    assert {"family", "genus", "bird", "fish", "animal", "mammal"} & set(catalogue.clusters[animal].terms[:5])


def test_a_child_version_shows_drift_new_ids_and_changed_terms(trained):
    model, X, _, texts = trained
    ids = [str(i) for i in range(len(X))]
    parent = build_catalogue(model, X, ids, texts, version=1)
    smaller = DEC(model.dims, 7, alpha=model.alpha, latent_radius=model.latent_radius)  # the parent: 7 of the 8 ids
    smaller.autoencoder.load_state_dict(model.autoencoder.state_dict())
    with torch.no_grad():
        smaller.centres.copy_(model.centres[:7])
    child = build_catalogue(model, X[:600], ids[:600], texts[:600], version=2,
                            parent=ModelVersion.from_model(smaller, version=1), previous=parent)
    assert [c.new for c in child.clusters] == [False] * 7 + [True]
    assert child.clusters[0].drift == pytest.approx(0.0, abs=1e-6) and child.clusters[7].drift is None
    assert child.clusters[0].previous_terms == parent.clusters[0].terms
    text = child.text()
    assert "cluster 7 NEW" in text and "version 2, parent 1" in text
    assert Catalogue.from_json(child.to_json()) == child


def test_no_texts_gives_sizes_and_exemplars_only(trained):
    model, X, _, _ = trained
    catalogue = build_catalogue(model, X[:100], [str(i) for i in range(100)], None, version=3)
    assert sum(c.size for c in catalogue.clusters) == 100
    assert all(c.terms == [] and c.texts == [] for c in catalogue.clusters)


def test_top_terms_rank_distinctive_words_first():
    texts = ["a fish of the sea", "a fish of rivers", "a plant of the sea shore", "a plant of gardens"]
    assert top_terms(texts, np.array([0, 0, 1, 1]), 2, n_terms=2) == [["fish", "rivers"], ["plant", "gardens"]]
    assert top_terms(["the", "a"], np.array([0, 1]), 2) == [[], []]  # stop words only


def test_a_broken_catalogue_is_refused():
    with pytest.raises(ValueError):
        Catalogue.from_json(b'{"version": 1}')
