"""DEC as a scikit-learn-style clusterer: constructor parameters, ``fit``, ``predict``.

The same training as ``stream-dec train`` (:func:`~stream_dec.model.training.fit_dec`),
for code that clusters arrays without a config file. Parameters are plain values with
the defaults of ``config/default.toml``; ``random_state`` seeds every random choice and
no global random state is touched.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.normal(0, 0.1, (40, 4)), rng.normal(3, 0.1, (40, 4))])
>>> dec = DECClusterer(n_clusters=2, latent_dim=4, pretrain_epochs=5, max_epochs=2, device="cpu")
>>> labels = dec.fit(X).labels_
>>> bool((labels[:40] == labels[0]).all() and (labels[40:] != labels[0]).all())
True
>>> bool((dec.predict(X) == labels).all()), dec.cluster_centers_.shape
(True, (2, 4))
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from stream_dec.config import ModelConfig, TrainConfig
from stream_dec.errors import ConfigError
from stream_dec.model.training import fit_dec


class DECClusterer:
    """Deep Embedded Clustering with scikit-learn's shape (see the module docstring).

    Parameters are those of ``[model]`` and ``[train]`` (``config/default.toml`` documents
    each); ``n_clusters`` is K and ``random_state`` the seed.

    Attributes (after :meth:`fit`)
    ------------------------------
    model_
        The trained :class:`~stream_dec.model.dec.DEC` network.
    labels_
        Cluster id of each training row.
    cluster_centers_
        The centres in latent space, shape (K, latent_dim).
    report_
        The :class:`~stream_dec.model.training.TrainReport` (losses and seconds per stage).
    """

    def __init__(self, n_clusters: int = 10, *, hidden_dims: Sequence[int] = (), latent_dim: int = 384,
                 alpha: float = 50.0, geometry: Literal["auto", "cosine", "euclidean"] = "auto",
                 latent_radius: float = 7.0, layerwise_epochs: int = 0, layerwise_noise: float = 0.2,
                 pretrain_epochs: int = 50, pretrain_lr: float = 1e-3,
                 pretrain_optimiser: Literal["adam", "sgd"] = "adam",
                 batch_size: int = 256, noise: float = 0.1, n_init: int = 10, lr: float = 1e-4,
                 update_interval: int = 100, tol: float = 0.001, max_epochs: int = 30,
                 reconstruction_weight: float = 0.1, optimiser: Literal["adam", "sgd"] = "adam",
                 precision: Literal["auto", "float32", "bfloat16"] = "float32", random_state: int = 0,
                 device: Literal["auto", "cpu", "cuda"] = "auto") -> None:
        self.n_clusters = n_clusters
        self.model_params = {"hidden_dims": tuple(hidden_dims), "latent_dim": latent_dim, "alpha": alpha,
                             "geometry": geometry, "latent_radius": latent_radius}
        self.train_params = {"layerwise_epochs": layerwise_epochs, "layerwise_noise": layerwise_noise,
                             "pretrain_epochs": pretrain_epochs, "pretrain_lr": pretrain_lr,
                             "pretrain_optimiser": pretrain_optimiser, "batch_size": batch_size,
                             "noise": noise, "n_init": n_init, "lr": lr, "update_interval": update_interval,
                             "tol": tol, "max_epochs": max_epochs, "reconstruction_weight": reconstruction_weight,
                             "optimiser": optimiser, "precision": precision, "seed": random_state, "device": device}
        try:  # every value checked now, not at fit
            ModelConfig(**self.model_params, clusters=max(n_clusters, 1))
            TrainConfig(**self.train_params)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def fit(self, X: np.ndarray, y: None = None) -> DECClusterer:
        """Train on ``X`` (n, D): any real numeric array, all finite, with n >= ``n_clusters``."""
        X = np.asarray(X)
        if X.ndim != 2 or X.dtype.kind not in "fiu" or not np.isfinite(X).all():
            raise ValueError(f"X must be a finite real 2-D array, got {X.dtype} of shape {X.shape}")
        if not 2 <= self.n_clusters <= len(X):
            raise ValueError(f"cannot make {self.n_clusters} clusters from {len(X)} rows")
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.model_, self.report_ = fit_dec(X, ModelConfig(**self.model_params, clusters=self.n_clusters),
                                            TrainConfig(**self.train_params), self.n_clusters)
        self.labels_ = self.predict(X)
        self.cluster_centers_ = self.model_.cluster_centres().detach().cpu().numpy()
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Cluster id (int64) of each row; ``ValueError`` for a wrong width, dtype or NaN/Inf."""
        return self.model_.predict(X)[0]

    def fit_predict(self, X: np.ndarray, y: None = None) -> np.ndarray:
        return self.fit(X).labels_
