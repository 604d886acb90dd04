"""Continual updates that keep cluster ids stable: one module per strategy, one interface.

:func:`make_strategy` builds a strategy by name from the config; :func:`apply_strategy`
runs it and checks the result (drift, agreement, id permutation) against the limits.
"""

from __future__ import annotations

from stream_dec.config import Config
from stream_dec.continual.anchored import Anchored
from stream_dec.continual.base import Proposal, Strategy, Update, UpdateReport, Window, apply_strategy
from stream_dec.continual.ewc import Ewc
from stream_dec.continual.frozen import Frozen
from stream_dec.continual.gate import Limits, Verdict, promotion_gate
from stream_dec.continual.grow import Grow
from stream_dec.continual.recentre import Recentre
from stream_dec.continual.refit import Refit
from stream_dec.continual.retrain import Retrain
from stream_dec.continual.translate import Translate

def make_strategy(name: str, config: Config, seed: int = 0) -> Strategy:
    """The strategy called ``name``, with its settings from ``config``."""
    update, device = config.update, config.train.device
    if name == "translate":
        return Translate(update.translate, seed=seed)
    if name == "recentre":
        return Recentre(update.recentre)
    if name == "refit":
        return Refit(update.finetune, update.refit, seed=seed, device=device)
    if name == "ewc":
        return Ewc(update.finetune, update.ewc, seed=seed, device=device)
    if name == "anchored":
        return Anchored(update.finetune, update.anchored, seed=seed, device=device)
    if name == "grow":
        return Grow(update.grow, seed=seed)
    if name == "retrain":
        return Retrain(config.train, seed=seed)
    if name == "frozen":
        return Frozen()
    raise ValueError(f"unknown strategy {name!r}")


def limits_of(config: Config) -> Limits:
    """The gate's limits from the config's ``[update]`` and ``[updater]`` sections."""
    return Limits(max_drift=config.update.max_drift, min_agreement=config.update.min_agreement,
                  max_loss_increase=config.updater.max_loss_increase)


__all__ = ["Limits", "Proposal", "Verdict", "promotion_gate", "Strategy", "Update", "UpdateReport", "Window", "apply_strategy",
           "limits_of", "make_strategy"]
