"""``frozen`` (baseline): no update; the next version is the current one unchanged."""

from __future__ import annotations

from stream_dec.continual.base import Proposal, Window
from stream_dec.model import ModelVersion


class Frozen:
    """Keeps the current model and its auxiliary tensors as they are."""

    name = "frozen"

    def propose(self, current: ModelVersion, window: Window) -> Proposal:
        return Proposal(current.to_model(), current.auxiliary_tensors)
