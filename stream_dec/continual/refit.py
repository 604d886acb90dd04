"""``refit``: a few epochs of self-training with an L2 anchor to the previous version."""

from __future__ import annotations

from stream_dec.config import FineTuneConfig
from stream_dec.continual.base import Proposal, Window
from stream_dec.continual.finetune import fine_tune
from stream_dec.model import ModelVersion


class Refit:
    """Fine-tune with ``anchor * sum_i (theta_i - theta_prev_i)^2`` (see :mod:`.finetune`)."""

    name = "refit"

    def __init__(self, anchor: float = 10.0, finetune: FineTuneConfig = FineTuneConfig(), seed: int = 0,
                 device: str = "auto") -> None:
        self.anchor, self.finetune, self.seed, self.device = anchor, finetune, seed, device

    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        model = fine_tune(current, window, self.finetune, strength=self.anchor, seed=self.seed, device=self.device)
        return Proposal(model)
