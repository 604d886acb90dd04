"""Batch labelling on the model's device: the model step of the labeler's hot path.

A :class:`Predictor` holds one model version on its device. On CUDA it stages each
batch in a pinned (page-locked) host buffer and copies it with a non-blocking
transfer; on the CPU it wraps the NumPy array without a copy. Inference runs under
``torch.inference_mode``.

On the CPU it labels through a :class:`Head`: the codes' scores against the centres
and their lengths, without the model's normalised copy and distance matrix. In
``bfloat16`` precision a :class:`FoldedHead` takes its place: the labels are
float32's, and only the confidence comes from a bfloat16 product.

Examples
--------
>>> import numpy as np
>>> from stream_dec.model import DEC, ModelVersion
>>> predictor = Predictor(ModelVersion.from_model(DEC((4, 2), n_clusters=3), version=7), "cpu")
>>> clusters, confidence = predictor.predict(np.ones((5, 4), dtype=np.float32))
>>> clusters.dtype.name, confidence.shape, predictor.version
('int64', (5,), 7)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from stream_dec.model.assignment import log_assignment_of_distances
from stream_dec.model.checkpoint import ModelVersion
from stream_dec.model.dec import DEC, resolve_device, resolve_precision


def last_layer(model: DEC) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The encoder's layers before its last, and the last's weight (h, d) and bias (d,)."""
    layers = model.autoencoder.encoder
    last: nn.Linear = layers[-1]
    return layers[:-1], last.weight.detach().T.contiguous(), last.bias.detach()


def assign_scores(scores: torch.Tensor, length: torch.Tensor, radius: float,
                  alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster id and confidence from each code's scores against the centres and its length.

    ``scores`` (n, K) are ``z . c_j`` in cosine geometry (``radius > 0``) and
    ``z . c_j - ||c_j||^2 / 2`` in euclidean, ``length`` (n, 1) is ``||z||^2``. Then
    ``r^2 ||z/|z| - c_j||^2 = r^2 (2 - 2 z . c_j / |z|)`` and ``||z - c_j||^2 = ||z||^2 - 2
    scores``: either way the nearest centre has the highest score.

    >>> clusters, confidence = assign_scores(torch.tensor([[0.0, 8.0]]), torch.tensor([[16.0]]), 0.0, 1.0)
    >>> clusters.tolist(), round(confidence.item(), 4)  # z = c_1 at distance 0, c_0 at distance 4
    ([1], 0.9444)
    """
    if radius > 0:
        squared = (radius ** 2) * (2 - 2 * scores / length.sqrt().clamp_min(1e-12))
    else:
        squared = length - 2 * scores
    clusters = scores.argmax(dim=1)
    log_q = log_assignment_of_distances(squared.clamp_min(0), alpha)
    return clusters, log_q.gather(1, clusters[:, None])[:, 0].exp()


class Head:
    """DEC's assignment in one product per layer: the centres' scores and each code's length.

    The network's last layer gives the codes ``z``; one (d, K) product gives their
    scores against the centres, and their squared lengths the rest
    (:func:`assign_scores`). No normalised copy of the codes and no distance matrix is
    made. In float32, as the model is; the label differs from the model's argmax of Q
    only where two centres tie to float32 rounding.

    >>> model = DEC((4, 3), n_clusters=2, latent_radius=1.0)
    >>> x = torch.eye(4)
    >>> _ = model.centres.data.copy_(model.encode(x[:2]))
    >>> confidence, clusters = model(x).max(dim=1)
    >>> torch.equal(Head(model)(x)[0], clusters), torch.allclose(Head(model)(x)[1], confidence)
    (True, True)
    """

    def __init__(self, model: DEC) -> None:
        self.body, self.weight, self.bias = last_layer(model)
        self.alpha, self.radius = model.alpha, model.latent_radius
        with torch.no_grad():
            centres = model.cluster_centres().detach()
            self.centres = centres.T.contiguous()  # (d, K)
            self.offset = 0.0 if self.radius > 0 else 0.5 * (centres * centres).sum(dim=1)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cluster id and confidence of each row of ``x`` (n, D)."""
        z = torch.addmm(self.bias, self.body(x), self.weight)
        scores = z @ self.centres - self.offset
        return assign_scores(scores, (z * z).sum(dim=1, keepdim=True), self.radius, self.alpha)


class FoldedHead:
    """DEC's assignment with the encoder's last layer folded into the centres.

    The K centres span at most K of the latent space's d dimensions. With ``Q`` an
    orthonormal basis of that span, a code ``z = W h + b`` (the last layer) splits into
    ``p = Q^T z``, which the head computes exactly, in float32, through the folded
    (h, K) matrix ``W^T Q``, and a remainder orthogonal to every centre, which enters
    each distance only through its length. Both geometries' distances follow:
    ``||z - c_j||^2 = ||p - Q^T c_j||^2 + ||z_perp||^2``, and in cosine geometry
    ``z . c_j = p . Q^T c_j`` with ``||z||^2 = ||p||^2 + ||z_perp||^2``.

    The label depends on ``p`` alone, so it is float32's; it differs from the
    unfolded network's only where two centres tie to float32 rounding. The remainder's
    length, needed for the confidence, comes from a bfloat16 product, which a CPU
    with AVX-512 BF16 or AMX multiplies several times faster than float32; its
    rounding moves the confidence by less than 1e-3 (tested on real embeddings).
    Layers before the last run as they are, in float32.

    >>> model = DEC((4, 3), n_clusters=2, latent_radius=1.0)
    >>> x = torch.eye(4)
    >>> _ = model.centres.data.copy_(model.encode(x[:2]))
    >>> torch.equal(FoldedHead(model)(x)[0], model(x).argmax(dim=1))
    True
    """

    def __init__(self, model: DEC) -> None:
        self.body, weight, bias = last_layer(model)
        self.alpha, self.radius = model.alpha, model.latent_radius
        with torch.no_grad():
            centres = model.cluster_centres().detach()
            basis, _ = torch.linalg.qr(centres.T)  # (d, min(d, K)), orthonormal columns
            self.span_weight = (weight @ basis).contiguous()  # (h, K): p = h W^T Q + b Q
            self.span_bias = bias @ basis
            self.centres = (centres @ basis).T.contiguous()  # (min(d, K), K): Q^T c_j as columns
            self.offset = 0.0 if self.radius > 0 else 0.5 * (self.centres * self.centres).sum(dim=0)
            rest = torch.eye(len(basis)) - basis @ basis.T  # projection onto the span's complement
            self.rest_weight = (weight @ rest).contiguous().to(torch.bfloat16)  # (h, d)
            self.rest_bias = bias @ rest

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cluster id and confidence of each row of ``x`` (n, D)."""
        h = self.body(x)
        p = torch.addmm(self.span_bias, h, self.span_weight)  # (n, K), float32
        scores = p @ self.centres - self.offset  # z . c_j (cosine) or z . c_j - ||c_j||^2 / 2
        rest = torch.mm(h.to(torch.bfloat16), self.rest_weight).float() + self.rest_bias
        length = (p * p).sum(dim=1, keepdim=True) + (rest * rest).sum(dim=1, keepdim=True)  # ||z||^2
        return assign_scores(scores, length, self.radius, self.alpha)


class Predictor:
    """Labels float32 batches with one model version.

    Parameters
    ----------
    version
        The model version to label with; ``version.header.version`` travels on labels.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    precision
        ``"float32"``: on the CPU, label through a :class:`Head` (the model's labels
        but at float32 ties, its confidence to float32 rounding); ``"bfloat16"``: on the
        CPU, label through a :class:`FoldedHead`
        (float32's labels, confidence within 1e-3), faster where the CPU multiplies in
        bfloat16 and slower where it emulates it; ``"auto"``: bfloat16 where the CPU
        has AVX-512 BF16 or AMX. On CUDA the network runs in float32 either way.
    """

    def __init__(self, version: ModelVersion, device: str = "auto",
                 precision: Literal["auto", "float32", "bfloat16"] = "float32") -> None:
        self.device = resolve_device(device)
        self.model = version.to_model(self.device)
        self.header = version.header
        self.version = version.header.version
        self.dim = version.header.dims[0]
        cpu = self.device.type == "cpu"
        folded = cpu and resolve_precision(precision, self.device) == "bfloat16"
        self.precision = "bfloat16" if folded else "float32"
        self._head = (FoldedHead if folded else Head)(self.model) if cpu else None
        self._pinned: torch.Tensor | None = None

    @torch.inference_mode()
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cluster id (int64) and confidence (max soft assignment, float32) per row of ``X``."""
        if len(X) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if self._head is not None:
            clusters, confidence = self._head(torch.from_numpy(X))
        else:
            confidence, clusters = self.model(self._to_cuda(X)).max(dim=1)  # on CUDA; the CPU has a head
        return clusters.cpu().numpy().astype(np.int64, copy=False), confidence.float().cpu().numpy()

    def _to_cuda(self, X: np.ndarray) -> torch.Tensor:
        """``X`` on the GPU, staged through a pinned host buffer kept between calls."""
        if self._pinned is None or self._pinned.shape[0] < len(X):
            self._pinned = torch.empty((max(len(X), 1024), self.dim), dtype=torch.float32).pin_memory()
        staged = self._pinned[: len(X)]
        staged.copy_(torch.from_numpy(X))
        return staged.to(self.device, non_blocking=True)
