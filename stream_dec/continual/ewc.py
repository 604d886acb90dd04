"""``ewc``: fine-tune with (online) elastic weight consolidation on the DEC objective.

Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS
2017, eq. 3; online EWC after Schwarz et al., "Progress & Compress", ICML 2018.

The penalty is ``lam * sum_i F_i (theta_i - theta_prev_i)^2`` where F is the diagonal
Fisher information of the DEC loss KL(P || Q), estimated as the mean of squared
mini-batch gradients (not the square of the mean gradient) on the window the previous
version was trained on. F is stored with each version (``fisher.<param>`` tensors) and
accumulates across versions: F_t = gamma * F_(t-1) + F(window t). A version without a
stored F (e.g. from ``train``) gets one estimated on the retained part of the window,
which is a sample of its own training window.
"""

from __future__ import annotations

import torch

from stream_dec.config import FineTuneConfig
from stream_dec.continual.base import Proposal, Window
from stream_dec.continual.finetune import anchored_parameters, fine_tune
from stream_dec.model import DEC, ModelVersion
from stream_dec.model.assignment import clustering_loss, target_distribution

FISHER = "fisher."


def fisher_diagonal(model: DEC, X: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Mean over mini-batches of the squared gradient of KL(P || Q), per anchored parameter.

    P is the model's own target distribution over the whole of ``X``, held fixed.
    Returns non-negative tensors with the parameters' shapes.
    """
    params = anchored_parameters(model)
    target = target_distribution(model.soft_assign(X))
    totals = {name: torch.zeros_like(p) for name, p in params.items()}
    batches = 0
    for start in range(0, len(X), batch_size):
        batch = X[start : start + batch_size]
        loss = clustering_loss(model.log_assign(model.encode(batch)), target[start : start + batch_size])
        grads = torch.autograd.grad(loss, list(params.values()))
        for name, grad in zip(params, grads):
            totals[name] += grad.detach().pow(2)
        batches += 1
    return {name: total / batches for name, total in totals.items()}


def normalised(fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale F so its mean over all elements is 1 (``lam`` then matches refit's ``anchor``)."""
    mean = torch.cat([f.flatten() for f in fisher.values()]).mean().clamp_min(1e-30)
    return {name: f / mean for name, f in fisher.items()}


class Ewc:
    """Online EWC fine-tune; see the module docstring."""

    name = "ewc"

    def __init__(self, lam: float = 100.0, gamma: float = 0.9, fisher_batch: int = 32,
                 finetune: FineTuneConfig = FineTuneConfig(), seed: int = 0, device: str = "auto") -> None:
        self.lam, self.gamma, self.fisher_batch = lam, gamma, fisher_batch
        self.finetune, self.seed, self.device = finetune, seed, device

    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        previous = current.auxiliary(FISHER) or self._estimate(current.to_model(), window.X[window.agreement_rows])
        model = fine_tune(current, window, self.finetune, strength=self.lam, weights=normalised(previous),
                          seed=self.seed, device=self.device)
        now = self._estimate(model, window.X)
        accumulated = {name: self.gamma * previous[name].to(now[name].device) + now[name] for name in now}
        return Proposal(model, {FISHER + name: f for name, f in accumulated.items()})

    def _estimate(self, model: DEC, X) -> dict[str, torch.Tensor]:
        return fisher_diagonal(model, torch.as_tensor(X, device=model.centres.device), self.fisher_batch)
