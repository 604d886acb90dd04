"""``anchored``: self-training on the new window, held to the previous version where it has labelled.

The loss is DEC's KL(P || Q) on the whole window and ``distill * KL(Q_old || Q_new)``
on the retained samples: the model may change where the new samples are and is held
where the old ones are (see :mod:`stream_dec.continual.finetune`). Unlike
``refit``/``ewc``, which hold parameters, it holds outputs, and it trains with SGD
(momentum 0.9): with Adam, every parameter steps by about ``lr`` even where the anchor's
gradient is nearly zero, a random walk that changed retained labels faster the stronger
the anchor was. Its own ``lr``, ``epochs`` and ``reconstruction_weight`` replace those of the shared
fine-tune settings (``[update.finetune]``).
"""

from __future__ import annotations

import dataclasses

from stream_dec.config import FineTuneConfig
from stream_dec.continual.base import Proposal, Window
from stream_dec.continual.finetune import fine_tune
from stream_dec.model import ModelVersion


class Anchored:
    """Self-training plus distillation on retained samples; see the module docstring."""

    name = "anchored"

    def __init__(self, distill: float = 10.0, lr: float = 0.01, epochs: float = 4.0, reconstruction_weight: float = 0.0,
                 finetune: FineTuneConfig = FineTuneConfig(), seed: int = 0, device: str = "auto") -> None:
        self.finetune = dataclasses.replace(finetune, lr=lr, epochs=epochs, reconstruction_weight=reconstruction_weight)
        self.distill, self.seed, self.device = distill, seed, device

    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        model = fine_tune(current, window, self.finetune, distill=self.distill, optimiser="sgd",
                          seed=self.seed, device=self.device)
        return Proposal(model)
