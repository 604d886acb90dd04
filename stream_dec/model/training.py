"""Training DEC: autoencoder pretraining, KMeans initialisation, self-training.

The three stages of the paper (Xie et al. 2016, section 3), each a function:

1. :func:`pretrain_layerwise` (optional): the paper's greedy stacking, one denoising
   autoencoder per layer; then :func:`pretrain_autoencoder`: the whole autoencoder on the
   reconstruction loss, end to end;
2. :func:`initial_centres`: KMeans (``n_init`` restarts) on the latent codes;
3. :func:`self_train`: minimise KL(P || Q) with the target P recomputed over the *whole*
   window every ``update_interval`` iterations (as in the paper, not per mini-batch),
   stopping when fewer than ``tol`` of the labels change between two target updates.

:func:`fit_dec` runs all three. Every stage logs one line with its loss and, for
self-training, the label-change rate; every random choice follows ``seed``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from stream_dec.config import ModelConfig, TrainConfig
from stream_dec.model.assignment import clustering_loss, target_distribution
from stream_dec.model.dec import DEC, resolve_device, resolve_precision

log = logging.getLogger(__name__)

ExtraLoss = Callable[[DEC, torch.Tensor], torch.Tensor]
"""An extra term added to every self-training step: ``(model, batch_indices) -> loss``."""


@dataclass(frozen=True)
class SelfTrainReport:
    """What self-training did.

    Attributes
    ----------
    iterations, epochs
        Optimiser steps taken and (fractional) passes over the window.
    loss
        Mean total loss over the last target interval.
    label_change
        Fraction of labels changed at the last target update.
    converged
        True if it stopped on ``tol`` rather than on ``max_epochs``.
    """

    iterations: int
    epochs: float
    loss: float
    label_change: float
    converged: bool


@dataclass(frozen=True)
class TrainReport:
    """Summary of :func:`fit_dec`: losses and seconds per stage.

    ``pretrained`` is the model as it stood after pretraining (its autoencoder is the
    reusable artefact; its centres are zero), or None when pretraining was skipped.
    """

    pretrain_loss: float
    kmeans_inertia: float
    self_train: SelfTrainReport
    seconds: dict[str, float]
    pretrained: DEC | None = None


def new_model(dims: tuple[int, ...], n_clusters: int, *, alpha: float, latent_radius: float, seed: int) -> DEC:
    """A freshly initialised :class:`DEC` whose weights follow ``seed`` alone.

    Torch draws initial weights from its global generator; it is seeded inside
    :func:`torch.random.fork_rng`, so the caller's random state is left as it was.

    >>> a = new_model((4, 2), 2, alpha=1.0, latent_radius=0.0, seed=3)
    >>> b = new_model((4, 2), 2, alpha=1.0, latent_radius=0.0, seed=3)
    >>> bool(torch.equal(a.autoencoder.encoder[0].weight, b.autoencoder.encoder[0].weight))
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DEC(dims, n_clusters, alpha=alpha, latent_radius=latent_radius)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The mixed-precision context for ``precision``: bfloat16 matrix products, or nothing.

    Losses, targets and parameters stay float32; only the layers' products run in
    bfloat16, which CPUs with AVX-512 BF16 and GPUs run faster (figures: benchmarks/README.md).
    """
    if precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pretrain_autoencoder(
    model: DEC,
    X: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    noise: float,
    generator: torch.Generator,
    precision: Literal["float32", "bfloat16"] = "float32",
    optimiser: Literal["adam", "sgd"] = "adam",
) -> float:
    """Train the autoencoder to rebuild ``X`` from inputs with ``noise`` of them dropped.

    Returns the mean reconstruction loss (MSE) of the last epoch (``nan`` for 0 epochs).
    """
    autoencoder = model.autoencoder  # trained through model.encode: the decoder sees the latent geometry
    autoencoder.train()
    return _train_to_rebuild(autoencoder.parameters(), X,
                             lambda batch: autoencoder.decoder(model.encode(_corrupt(batch, noise, generator))),
                             epochs=epochs, lr=lr, batch_size=batch_size, generator=generator, precision=precision,
                             optimiser=optimiser, name="pretrain")


def pretrain_layerwise(model: DEC, X: torch.Tensor, *, epochs: int, lr: float, batch_size: int, noise: float,
                       generator: torch.Generator, precision: Literal["float32", "bfloat16"] = "float32",
                       optimiser: Literal["adam", "sgd"] = "adam") -> list[float]:
    """Greedy layer-wise pretraining (Xie et al. 2016, section 3.2): each encoder layer and
    its mirror in the decoder are trained together as a one-hidden-layer denoising
    autoencoder that rebuilds the codes of the layers below (the data, for the first), with
    ``noise`` of its inputs and of its hidden code dropped; then its codes feed the next.

    The activations are the full network's: ReLU everywhere except after the last encoder
    layer (the latent code keeps its sign) and the first layer's decoder (it rebuilds the
    data). Returns each layer's mean reconstruction loss (MSE) in its last epoch.

    >>> model = new_model((6, 4, 2), 2, alpha=1.0, latent_radius=0.0, seed=0)
    >>> losses = pretrain_layerwise(model, torch.rand(32, 6), epochs=2, lr=1e-3, batch_size=8,
    ...                             noise=0.2, generator=torch.Generator().manual_seed(0))
    >>> len(losses)
    2
    """
    encoders = [layer for layer in model.autoencoder.encoder if isinstance(layer, torch.nn.Linear)]
    decoders = [layer for layer in model.autoencoder.decoder if isinstance(layer, torch.nn.Linear)][::-1]
    depth, codes, losses = len(encoders), X, []
    model.train()
    for k, (encoder, decoder) in enumerate(zip(encoders, decoders)):
        inner = F.relu if k < depth - 1 else torch.nn.Identity()
        outer = F.relu if k > 0 else torch.nn.Identity()

        def rebuild(batch: torch.Tensor) -> torch.Tensor:
            return outer(decoder(_corrupt(inner(encoder(_corrupt(batch, noise, generator))), noise, generator)))

        epoch_loss = _train_to_rebuild([*encoder.parameters(), *decoder.parameters()], codes, rebuild,
                                       epochs=epochs, lr=lr, batch_size=batch_size, generator=generator,
                                       precision=precision, optimiser=optimiser,
                                       name=f"pretrain layer {k + 1}/{depth}")
        losses.append(epoch_loss)
        if k < depth - 1:  # the next layer's inputs
            with torch.no_grad():
                codes = torch.cat([inner(encoder(codes[i : i + 8192])) for i in range(0, len(codes), 8192)])
    return losses


def _train_to_rebuild(parameters, X: torch.Tensor, rebuild: Callable[[torch.Tensor], torch.Tensor], *,
                      epochs: int, lr: float, batch_size: int, generator: torch.Generator,
                      precision: Literal["float32", "bfloat16"], optimiser: Literal["adam", "sgd"],
                      name: str) -> float:
    """``optimiser`` on ``parameters`` against the mean squared error of ``rebuild(batch)`` to each
    shuffled batch of ``X``, for ``epochs`` passes; the last pass's mean loss (``nan`` for 0)."""
    steps = make_optimiser(optimiser, parameters, lr)
    epoch_loss = float("nan")
    for epoch in range(epochs):
        total = 0.0
        for index in _batches(len(X), batch_size, generator, X.device):
            batch = X[index]
            with autocast(X.device, precision):
                rebuilt = rebuild(batch)
            loss = F.mse_loss(rebuilt.float(), batch)
            steps.zero_grad(set_to_none=True)
            loss.backward()
            steps.step()
            total += loss.item() * len(index)
        epoch_loss = total / len(X)
        if epoch == epochs - 1 or (epoch + 1) % 10 == 0:
            log.info("%s epoch %d/%d reconstruction %.6f", name, epoch + 1, epochs, epoch_loss)
    return epoch_loss


def make_optimiser(kind: Literal["adam", "sgd"], parameters, lr: float) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9 (the DEC paper's), at ``lr``.

    >>> make_optimiser("sgd", [torch.nn.Parameter(torch.zeros(2))], 0.1).defaults["momentum"]
    0.9
    """
    if kind == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9)
    return torch.optim.Adam(parameters, lr=lr)


def initial_centres(model: DEC, X: torch.Tensor, *, n_init: int, seed: int) -> float:
    """Set the centres to KMeans centroids of the latent codes; return the inertia."""
    codes = encode_all(model, X).cpu().numpy()
    kmeans = KMeans(model.n_clusters, n_init=n_init, random_state=seed).fit(codes)
    with torch.no_grad():
        model.centres.copy_(model.project(torch.from_numpy(kmeans.cluster_centers_.astype(np.float32))))
    log.info("kmeans init: %d centres, inertia %.4f, %d restarts", model.n_clusters, kmeans.inertia_, n_init)
    return float(kmeans.inertia_)


def self_train(
    model: DEC,
    X: torch.Tensor,
    *,
    lr: float,
    batch_size: int,
    update_interval: int,
    tol: float,
    max_epochs: float,
    generator: torch.Generator,
    reconstruction_weight: float = 0.0,
    clip_norm: float | None = None,
    extra_loss: ExtraLoss | None = None,
    parameters: list[torch.nn.Parameter] | None = None,
    optimiser: Literal["adam", "sgd"] = "adam",
    precision: Literal["float32", "bfloat16"] = "float32",
) -> SelfTrainReport:
    """Minimise KL(P || Q) (+ ``reconstruction_weight`` * MSE + ``extra_loss``).

    P is recomputed from the whole of ``X`` every ``update_interval`` steps. Training
    stops when the fraction of changed labels between two target updates falls below
    ``tol`` (after the first update), or after ``max_epochs`` passes over ``X``.
    ``parameters`` defaults to all of the model's (encoder, centres, and the decoder
    when the reconstruction term is on); ``clip_norm`` clips the gradient norm.
    ``optimiser`` is Adam, or SGD with momentum 0.9 (the paper's): Adam scales every
    parameter's step to about ``lr`` however small its gradient, so near an anchor's
    optimum it walks at random; SGD's step shrinks with the gradient.
    """
    if parameters is None:
        parameters = list(model.autoencoder.encoder.parameters()) + [model.centres]
        if reconstruction_weight > 0:
            parameters += list(model.autoencoder.decoder.parameters())
    steps = make_optimiser(optimiser, parameters, lr)
    max_iterations = int(np.ceil(max_epochs * np.ceil(len(X) / batch_size)))
    iteration, previous, change, interval_loss, interval_steps = 0, None, 1.0, 0.0, 0
    converged = False
    model.train()
    while iteration < max_iterations and not converged:
        for index in _batches(len(X), batch_size, generator, X.device):
            if iteration % update_interval == 0:
                target, labels = _target_and_labels(model, X)
                if previous is not None:
                    change = float((labels != previous).float().mean())
                    log.info(
                        "self-train iter %d epoch %.1f loss %.5f label change %.4f",
                        iteration, iteration * batch_size / len(X),
                        interval_loss / max(interval_steps, 1), change,
                    )
                    if change < tol:
                        converged = True
                        break
                previous, interval_loss, interval_steps = labels, 0.0, 0
            if iteration >= max_iterations:
                break
            batch = X[index]
            with autocast(X.device, precision):
                z = model.encode(batch)
                rebuilt = model.autoencoder.decoder(z) if reconstruction_weight > 0 else None
            loss = clustering_loss(model.log_assign(z.float()), target[index])
            if rebuilt is not None:
                loss = loss + reconstruction_weight * F.mse_loss(rebuilt.float(), batch)
            if extra_loss is not None:
                loss = loss + extra_loss(model, index)
            steps.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, clip_norm)
            steps.step()
            interval_loss += loss.item()
            interval_steps += 1
            iteration += 1
    model.eval()
    return SelfTrainReport(
        iterations=iteration,
        epochs=iteration / np.ceil(len(X) / batch_size),  # passes: a short last batch is a whole step of one
        loss=interval_loss / max(interval_steps, 1),
        label_change=change,
        converged=converged,
    )


def latent_radius_for(X: np.ndarray, config: ModelConfig) -> float:
    """The :class:`DEC` ``latent_radius`` for training on ``X``: ``config.latent_radius``
    in cosine geometry, 0 in euclidean; ``"auto"`` is cosine when every row of ``X`` is a
    unit vector (within 1%).

    >>> latent_radius_for(np.eye(3), ModelConfig())
    7.0
    >>> latent_radius_for(np.full((2, 3), 2.0), ModelConfig())
    0.0
    >>> latent_radius_for(np.eye(3), ModelConfig(geometry="euclidean"))
    0.0
    """
    cosine = config.geometry == "cosine" or (
        config.geometry == "auto" and bool(np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=0.01)))
    return config.latent_radius if cosine else 0.0


def fit_dec(
    X: np.ndarray,
    model_config: ModelConfig,
    train_config: TrainConfig,
    n_clusters: int,
    *,
    pretrained: DEC | None = None,
    keep_pretrained: bool = False,
) -> tuple[DEC, TrainReport]:
    """Train a DEC model on ``X`` (n, D): pretrain, init, self-train.

    With ``pretrained`` (a model whose autoencoder was pretrained on such data, e.g.
    ``TrainReport.pretrained`` of an earlier run) the first stage is skipped and a copy
    of its autoencoder is used: its dims and geometry replace ``model_config``'s.
    ``keep_pretrained`` puts a copy of the model after pretraining in the report.
    """
    device = resolve_device(train_config.device)
    precision = resolve_precision(train_config.precision, device)
    if train_config.precision == "auto":
        log.info("precision auto: %s on %s", precision, device)
    generator = torch.Generator().manual_seed(train_config.seed)
    data = torch.as_tensor(X, dtype=torch.float32, device=device)
    seconds = {}
    started = time.perf_counter()
    if pretrained is None:
        dims = (X.shape[1], *model_config.hidden_dims, model_config.latent_dim)
        radius = latent_radius_for(X, model_config)
        log.info("latent geometry: %s", f"cosine, radius {radius:g}" if radius else "euclidean")
        model = new_model(dims, n_clusters, alpha=model_config.alpha, latent_radius=radius,
                          seed=train_config.seed).to(device)
        if train_config.layerwise_epochs:
            pretrain_layerwise(model, data, epochs=train_config.layerwise_epochs, lr=train_config.pretrain_lr,
                               batch_size=train_config.batch_size, noise=train_config.layerwise_noise,
                               generator=generator, precision=precision,
                               optimiser=train_config.pretrain_optimiser)
        pretrain_loss = pretrain_autoencoder(
            model, data, epochs=train_config.pretrain_epochs, lr=train_config.pretrain_lr,
            batch_size=train_config.batch_size, noise=train_config.noise, generator=generator,
            precision=precision, optimiser=train_config.pretrain_optimiser,
        )
        kept = copy.deepcopy(model).cpu().eval() if keep_pretrained else None
    else:
        if pretrained.dims[0] != X.shape[1]:
            raise ValueError(f"the pretrained autoencoder takes {pretrained.dims[0]}-d input, the data is {X.shape[1]}-d")
        model = new_model(pretrained.dims, n_clusters, alpha=pretrained.alpha, latent_radius=pretrained.latent_radius,
                          seed=train_config.seed)
        model.autoencoder.load_state_dict(pretrained.autoencoder.state_dict())
        model.to(device)
        pretrain_loss, kept = float("nan"), None
        log.info("pretraining skipped: starting from a pretrained %s autoencoder", "-".join(map(str, model.dims)))
    seconds["pretrain"] = time.perf_counter() - started
    started = time.perf_counter()
    inertia = initial_centres(model, data, n_init=train_config.n_init, seed=train_config.seed)
    seconds["kmeans"] = time.perf_counter() - started
    started = time.perf_counter()
    report = self_train(
        model, data, lr=train_config.lr, batch_size=train_config.batch_size,
        update_interval=train_config.update_interval, tol=train_config.tol,
        max_epochs=train_config.max_epochs, generator=generator,
        reconstruction_weight=train_config.reconstruction_weight,
        optimiser=train_config.optimiser, precision=precision,
    )
    seconds["self_train"] = time.perf_counter() - started
    log.info("trained DEC %s K=%d in %.1fs", "-".join(map(str, model.dims)), n_clusters, sum(seconds.values()))
    return model, TrainReport(pretrain_loss, inertia, report, seconds, kept)


@torch.inference_mode()
def encode_all(model: DEC, X: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Latent codes of every row of ``X``, in batches (n, d)."""
    model.eval()
    return torch.cat([model.encode(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])


@torch.inference_mode()
def _target_and_labels(model: DEC, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q = model.soft_assign(X)
    return target_distribution(q), q.argmax(dim=1)


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device):
    """Shuffled index batches covering ``range(n)`` once."""
    order = torch.randperm(n, generator=generator).to(device)
    return order.split(batch_size)


def _corrupt(batch: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """``batch`` with a ``noise`` fraction of its values dropped and the rest rescaled (dropout); as is for 0."""
    if noise <= 0:
        return batch
    keep = torch.rand(batch.shape, generator=generator) >= noise
    return batch * (keep.to(batch.device, batch.dtype) / (1.0 - noise))
