"""Typed, validated configuration loaded from TOML.

Configuration is data: frozen dataclasses with documented defaults, filled from a TOML
file (read with :mod:`tomllib`) and validated once. Unknown keys, wrong types and
impossible values raise :class:`~stream_dec.errors.ConfigError` naming the file and the
key. Code never reads raw dicts past :func:`load_config`.

The documented defaults live in ``config/default.toml``; a test checks that file
against these dataclasses so the two cannot drift.

Examples
--------
>>> cfg = config_from_mapping({"model": {"latent_dim": 16}}, source="inline")
>>> cfg.model.latent_dim, cfg.model.hidden_dims
(16, (256,))
>>> config_from_mapping({"model": {"latnt_dim": 16}}, source="inline")
Traceback (most recent call last):
...
stream_dec.errors.ConfigError: inline: unknown key 'model.latnt_dim' (expected one of: alpha, clusters, hidden_dims, latent_dim, latent_radius)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from stream_dec.errors import ConfigError
from stream_dec.typed import from_mapping, require


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the DEC model.

    Parameters
    ----------
    hidden_dims
        Widths of the autoencoder's hidden layers between the input and the latent
        layer; the input width D comes from the data. ``[]`` gives a linear autoencoder.
    latent_dim
        Width of the latent (embedded) space in which the centres live.
    clusters
        Number of clusters K, used when the data has no labels to count.
    alpha
        Degrees of freedom of the Student-t kernel (DEC eq. 1).
    latent_radius
        0 keeps the paper's geometry; a positive value projects latent codes and
        centres onto a sphere of this radius (cosine geometry).
    """

    hidden_dims: tuple[int, ...] = (256,)
    latent_dim: int = 32
    clusters: int = 10
    alpha: float = 50.0
    latent_radius: float = 7.0

    def __post_init__(self) -> None:
        require(all(d >= 1 for d in self.hidden_dims), "hidden_dims", "positive widths", self.hidden_dims)
        require(self.latent_dim >= 1, "latent_dim", ">= 1", self.latent_dim)
        require(self.clusters >= 2, "clusters", ">= 2", self.clusters)
        require(self.alpha > 0, "alpha", "> 0", self.alpha)
        require(self.latent_radius >= 0, "latent_radius", ">= 0", self.latent_radius)


@dataclass(frozen=True)
class TrainConfig:
    """How DEC is trained: autoencoder pretraining, KMeans init, self-training.

    Parameters
    ----------
    pretrain_epochs
        Epochs of denoising-autoencoder pretraining.
    pretrain_lr
        Adam learning rate for pretraining.
    batch_size
        Mini-batch size for both stages (samples).
    noise
        Input corruption for the denoising autoencoder: fraction of inputs dropped.
    n_init
        KMeans restarts for the centre initialisation in latent space.
    lr
        Adam learning rate of self-training (encoder and centres).
    update_interval
        Iterations between recomputing the target distribution P over the whole window.
    tol
        Stop when fewer than this fraction of labels change between target updates.
    max_epochs
        Upper bound on self-training epochs.
    reconstruction_weight
        Weight of the reconstruction loss kept during self-training (IDEC's gamma);
        0 gives the original DEC objective.
    seed
        Seed for every random choice (weights, batches, noise, KMeans).
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    pretrain_epochs: int = 50
    pretrain_lr: float = 1e-3
    batch_size: int = 256
    noise: float = 0.1
    n_init: int = 10
    lr: float = 1e-4
    update_interval: int = 100
    tol: float = 0.001
    max_epochs: int = 30
    reconstruction_weight: float = 0.1
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        require(self.pretrain_epochs >= 0, "pretrain_epochs", ">= 0", self.pretrain_epochs)
        require(self.pretrain_lr > 0, "pretrain_lr", "> 0", self.pretrain_lr)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(0 <= self.noise < 1, "noise", "in [0, 1)", self.noise)
        require(self.n_init >= 1, "n_init", ">= 1", self.n_init)
        require(self.lr > 0, "lr", "> 0", self.lr)
        require(self.update_interval >= 1, "update_interval", ">= 1", self.update_interval)
        require(0 <= self.tol < 1, "tol", "in [0, 1)", self.tol)
        require(self.max_epochs >= 0, "max_epochs", ">= 0", self.max_epochs)
        require(self.reconstruction_weight >= 0, "reconstruction_weight", ">= 0", self.reconstruction_weight)


@dataclass(frozen=True)
class Config:
    """The whole configuration: one section per concern."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML config file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_mapping(data, source=str(path))


def config_from_mapping(data: Mapping[str, Any], *, source: str) -> Config:
    """Build a :class:`Config` from parsed TOML, naming ``source`` in any error."""
    return from_mapping(Config, data, source=source, error=ConfigError)
