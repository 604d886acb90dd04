"""Shared fixtures: paths to the real labelled data sets and small slices of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def pytest_addoption(parser):
    group = parser.getgroup("stream-dec reliability report (tests marked `reliability`)")
    group.addoption("--reliability-runs", type=int, default=1, metavar="N",
                    help="run every fault test N times, each with other random points (default 1)")
    group.addoption("--reliability-report", metavar="PATH",
                    help="also write the reliability table (markdown) to PATH")


def two_centre_model():
    """A 2-d DEC whose encoder is the identity and whose centres sit at (0, 0) and (10, 0):
    labels are nearest-centre labels of the raw points (for tests of new ids and gates)."""
    import torch

    from stream_dec.model import DEC

    model = DEC((2, 2), n_clusters=2)
    with torch.no_grad():
        model.autoencoder.encoder[0].weight.copy_(torch.eye(2))
        model.autoencoder.encoder[0].bias.zero_()
        model.centres.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
    return model


def wordnet_slice(classes: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` real WordNet embeddings from each of the first ``classes`` classes."""
    with np.load(DATA / "wordnet_nouns.npz") as archive:
        X, y = archive["X"], archive["y"].astype(np.int64)
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(classes)])
    rng.shuffle(rows)
    return X[rows].astype(np.float32), y[rows]


@pytest.fixture(scope="session")
def mnist_small() -> tuple[np.ndarray, np.ndarray]:
    """The first 1,000 MNIST images as rows of pixels / 255 (784-d float32), with their digits."""
    with np.load(DATA / "mnist.npz") as archive:
        return (archive["X"][:1000] / 255).astype(np.float32), archive["y"][:1000].astype(np.int64)


@pytest.fixture(scope="session")
def wordnet_small() -> tuple[np.ndarray, np.ndarray]:
    """600 real embeddings (384-d), 6 classes of 100."""
    return wordnet_slice(classes=6, per_class=100)


@pytest.fixture(scope="session")
def wordnet_file(tmp_path_factory, wordnet_small) -> Path:
    """The small slice written as an .npz with X and y."""
    path = tmp_path_factory.mktemp("data") / "wordnet_small.npz"
    np.savez(path, X=wordnet_small[0], y=wordnet_small[1])
    return path


@pytest.fixture(scope="session")
def fast_config(tmp_path_factory) -> Path:
    """A config that trains in seconds on the small slice."""
    path = tmp_path_factory.mktemp("config") / "fast.toml"
    path.write_text(
        "[model]\nhidden_dims = [64]\nlatent_dim = 10\n\n"
        "[train]\npretrain_epochs = 15\nmax_epochs = 3\nn_init = 3\nbatch_size = 64\ndevice = \"cpu\"\n"
    )
    return path
