"""The DEC network: a (denoising) autoencoder and a layer of K cluster centres.

Each concept of the paper is one module: :class:`Autoencoder` (section 3.2, the
stacked autoencoder whose encoder maps data to the latent space) and :class:`DEC`
(section 3.1, the encoder plus centres with Student-t soft assignment).

Examples
--------
>>> import torch
>>> model = DEC(dims=(8, 6, 2), n_clusters=3)
>>> q = model(torch.randn(5, 8))
>>> tuple(q.shape), bool(torch.allclose(q.sum(dim=1), torch.ones(5)))
((5, 3), True)
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stream_dec.model.assignment import log_soft_assignment


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when it is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> Literal["float32", "bfloat16"]:
    """``"auto"`` -> ``"bfloat16"`` where ``device`` multiplies in bfloat16 natively (a CUDA GPU
    that supports it; a CPU with AVX-512 BF16 or AMX), else ``"float32"``: elsewhere bfloat16
    products are emulated and training runs several times slower. Other values are kept.

    >>> resolve_precision("float32", torch.device("cpu"))
    'float32'
    """
    if precision != "auto":
        return precision  # type: ignore[return-value]
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = any(getattr(torch.cpu, check, lambda: False)()
                     for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return "bfloat16" if native else "float32"


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Symmetric autoencoder ``dims[0] -> ... -> dims[-1] -> ... -> dims[0]``.

    Parameters
    ----------
    dims
        Layer widths from the input to the latent layer, e.g. ``(384, 256, 32)``.
    """

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"an autoencoder needs at least an input and a latent width, got {tuple(dims)}")
        self.dims = tuple(int(d) for d in dims)
        self.encoder = _mlp(self.dims)
        self.decoder = _mlp(self.dims[::-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent codes, shape (n, dims[-1])."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``, shape (n, dims[0])."""
        return self.decoder(self.encoder(x))


class DEC(nn.Module):
    """Deep Embedded Clustering: encoder + K centres with Student-t assignment.

    Parameters
    ----------
    dims
        Autoencoder widths, input first, latent last.
    n_clusters
        Number of centres K.
    alpha
        Degrees of freedom of the Student-t kernel (DEC eq. 1; the paper uses 1).
    latent_radius
        0 keeps the paper's geometry. A positive value L2-normalises latent codes and
        centres (cosine geometry, suited to sentence embeddings; the decoder sees the
        unit codes) and measures assignment distances on a sphere of this radius, so
        it sets how sharp Q is. With a large ``alpha`` the kernel then approaches a
        von Mises-Fisher assignment with concentration ``latent_radius**2``.

    Attributes
    ----------
    autoencoder
        The :class:`Autoencoder`; its decoder is kept for reconstruction-regularised
        training (IDEC) and for later fine-tunes.
    centres
        Parameter of shape (K, dims[-1]); :meth:`cluster_centres` gives them in the
        latent geometry (unit-normalised when ``latent_radius > 0``).
    """

    def __init__(self, dims: Sequence[int], n_clusters: int, alpha: float = 1.0, latent_radius: float = 0.0) -> None:
        super().__init__()
        self.autoencoder = Autoencoder(dims)
        self.alpha = float(alpha)
        self.latent_radius = float(latent_radius)
        self.centres = nn.Parameter(torch.zeros(n_clusters, self.autoencoder.dims[-1]))

    @property
    def dims(self) -> tuple[int, ...]:
        return self.autoencoder.dims

    @property
    def n_clusters(self) -> int:
        return int(self.centres.shape[0])

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """Map vectors (codes or centres) into the latent geometry."""
        return F.normalize(v, dim=1) if self.latent_radius > 0 else v

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent codes (n, d) in the geometry the centres live in."""
        return self.project(self.autoencoder.encode(x))

    def cluster_centres(self) -> torch.Tensor:
        """The centres as used for assignment (K, d)."""
        return self.project(self.centres)

    def log_assign(self, z: torch.Tensor) -> torch.Tensor:
        """log Q for latent codes ``z`` (n, d) -> (n, K)."""
        scale = self.latent_radius or 1.0
        return log_soft_assignment(scale * z, scale * self.cluster_centres(), self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Soft assignment Q of inputs ``x`` (n, D) -> (n, K)."""
        return self.log_assign(self.encode(x)).exp()

    @torch.inference_mode()
    def soft_assign(self, X: np.ndarray | torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """Q for a whole matrix, computed in batches on the model's device (n, K).

        ``X`` is any real (n, D) array with D the model's input width, all finite; it is
        read as float32. Anything else is a ``ValueError`` that says what is wrong.

        >>> model = DEC(dims=(4, 2), n_clusters=3)
        >>> tuple(model.soft_assign(np.ones((2, 4))).shape)  # float64 in, float32 inside
        (2, 3)
        >>> model.soft_assign(np.ones((2, 5)))
        Traceback (most recent call last):
        ...
        ValueError: expected rows of 4 values, got an array of shape (2, 5)
        """
        X = self.checked_input(X)
        device = self.centres.device
        return torch.cat([self(X[i : i + batch_size].to(device)) for i in range(0, len(X), batch_size)])

    def checked_input(self, X: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``X`` as a float32 tensor of shape (n, D), or ``ValueError`` (wrong shape, dtype, NaN/Inf)."""
        X = torch.as_tensor(X)
        if X.ndim != 2 or X.shape[1] != self.dims[0]:
            raise ValueError(f"expected rows of {self.dims[0]} values, got an array of shape {tuple(X.shape)}")
        if X.is_complex() or X.dtype == torch.bool:
            raise ValueError(f"expected real numbers, got {X.dtype}")
        X = X.to(torch.float32)
        if not bool(torch.isfinite(X).all()):
            raise ValueError("the input holds NaN or Inf")
        return X

    def predict(self, X: np.ndarray | torch.Tensor, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Cluster id (int64) and confidence (max soft assignment) of each row (``X`` as in :meth:`soft_assign`)."""
        confidence, labels = self.soft_assign(X, batch_size).max(dim=1)
        return labels.cpu().numpy().astype(np.int64), confidence.cpu().numpy()
