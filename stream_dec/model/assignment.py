"""DEC's soft assignment, target distribution and clustering loss, as pure functions.

Xie, Girshick and Farhadi, "Unsupervised Deep Embedding for Clustering Analysis",
ICML 2016 (DEC), section 3.1. Shapes: ``z`` is (n, d) latent codes, ``centres`` is
(K, d), ``q`` and ``p`` are (n, K) row-stochastic matrices.

Examples
--------
>>> import torch
>>> z = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
>>> centres = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
>>> q = soft_assignment(z, centres, alpha=1.0)
>>> q.sum(dim=1).tolist()
[1.0, 1.0]
>>> round(q[0, 0].item(), 4)  # 1 / (1 + 1/(1 + 16))
0.9444
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def log_soft_assignment(z: torch.Tensor, centres: torch.Tensor, alpha: float) -> torch.Tensor:
    """Log of DEC eq. 1, computed stably: log q_ij for every sample and centre.

    q_ij = (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha + 1) / 2), normalised over j.
    """
    return log_assignment_of_distances(torch.cdist(z, centres).pow(2), alpha)


def log_assignment_of_distances(squared: torch.Tensor, alpha: float) -> torch.Tensor:
    """log q_ij from the squared distances ``||z_i - mu_j||^2`` (n, K) (DEC eq. 1)."""
    log_kernel = -(alpha + 1.0) / 2.0 * torch.log1p(squared / alpha)
    return log_kernel - torch.logsumexp(log_kernel, dim=1, keepdim=True)


def soft_assignment(z: torch.Tensor, centres: torch.Tensor, alpha: float) -> torch.Tensor:
    """DEC eq. 1: Student-t similarity of each code to each centre, rows summing to 1."""
    return log_soft_assignment(z, centres, alpha).exp()


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC eq. 3: p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j'), with f_j = sum_i q_ij.

    Squaring sharpens confident assignments; dividing by the soft cluster frequency
    f_j keeps large clusters from swallowing the rest. Computed over the whole window.

    >>> q = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    >>> [round(v, 4) for v in target_distribution(q)[0].tolist()]
    [0.648, 0.352]
    """
    weight = q.pow(2) / q.sum(dim=0, keepdim=True)
    return weight / weight.sum(dim=1, keepdim=True)


def clustering_loss(log_q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """DEC eq. 2: KL(P || Q), averaged over the samples of the batch."""
    return F.kl_div(log_q, p, reduction="batchmean")
