"""The short, constrained self-training run behind ``refit``, ``ewc`` and ``anchored``.

All run a few epochs of DEC self-training on the window (small learning rate,
gradient clipping, IDEC reconstruction term) plus a pull toward the previous version:

- in parameter space, ``strength * sum_i w_i (theta_i - theta_prev_i)^2``: ``refit``
  uses w = 1 (an L2 anchor, not toward zero); ``ewc`` uses w = the Fisher diagonal
  normalised to mean 1, so both strengths are in the same units;
- in output space, ``distill * KL(Q_old || Q_new)`` on the retained samples of each
  mini-batch (``anchored``): the previous version's soft assignments of the samples it
  has already labelled are the teacher, and the new samples are free.
"""

from __future__ import annotations

import torch

from stream_dec.config import FineTuneConfig
from stream_dec.continual.base import Window
from stream_dec.continual.gate import ENCODER_PREFIX
from stream_dec.model import DEC, ModelVersion, resolve_device
from stream_dec.model.assignment import clustering_loss
from stream_dec.model.training import self_train

"""State-dict prefix of the encoder's weights."""
ANCHORED_PREFIXES = (ENCODER_PREFIX, "centres")
"""Parameters a fine-tune changes and anchors: the encoder and the centres."""


def anchored_parameters(model: DEC) -> dict[str, torch.nn.Parameter]:
    """The encoder's parameters and the centres, by state-dict name."""
    return {name: p for name, p in model.named_parameters() if name.startswith(ANCHORED_PREFIXES)}


def fine_tune(
    current: ModelVersion,
    window: Window,
    config: FineTuneConfig,
    *,
    strength: float = 0.0,
    weights: dict[str, torch.Tensor] | None = None,
    distill: float = 0.0,
    optimiser: str = "adam",
    seed: int = 0,
    device: str = "auto",
) -> DEC:
    """Self-train a copy of ``current`` on ``window`` with the pulls of the module docstring.

    ``weights`` maps parameter names to per-element weights (default: all 1).
    """
    model = current.to_model(resolve_device(device))
    params = anchored_parameters(model)
    anchor = {name: p.detach().clone() for name, p in params.items()}
    scale = {name: (weights[name].to(p.device) if weights else torch.ones_like(p)) for name, p in params.items()}
    X = torch.as_tensor(window.X, device=model.centres.device)
    if distill > 0:
        with torch.inference_mode():
            teacher = model.soft_assign(X).clone()
        kept = torch.as_tensor(window.agreement_rows, device=X.device)

    def penalty(m: DEC, index: torch.Tensor) -> torch.Tensor:
        loss = torch.zeros((), device=X.device)
        if strength > 0:
            loss = loss + strength * sum((scale[n] * (p - anchor[n]).pow(2)).sum() for n, p in params.items())
        if distill > 0:
            rows = index[kept[index]]
            if len(rows):
                loss = loss + distill * clustering_loss(m.log_assign(m.encode(X[rows])), teacher[rows])
        return loss

    trainable = list(params.values())
    if config.reconstruction_weight > 0:
        trainable += list(model.autoencoder.decoder.parameters())
    self_train(
        model, X, lr=config.lr, batch_size=config.batch_size, update_interval=config.update_interval,
        tol=0.0, max_epochs=config.epochs, generator=torch.Generator().manual_seed(seed),
        reconstruction_weight=config.reconstruction_weight, clip_norm=config.clip_norm,
        extra_loss=penalty if strength > 0 or distill > 0 else None, parameters=trainable, optimiser=optimiser,
    )
    return model.eval()
