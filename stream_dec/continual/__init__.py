"""Continual updates that keep cluster ids stable: one module per strategy, one interface.

:func:`make_strategy` builds a strategy by name from the config; :func:`apply_strategy`
runs it and checks the result (drift, agreement, id permutation) against the limits.
"""

from __future__ import annotations

from dataclasses import asdict

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
    """The strategy called ``name``, its parameters read from ``config`` (the TOML's
    ``[update.<name>]`` section; ``[update.finetune]`` for the fine-tunes). The strategies
    themselves take plain values: ``Translate(ratio=0.05, n_init=3, seed=0)``."""
    update, device = config.update, config.train.device
    tune = {"finetune": update.finetune, "seed": seed, "device": device}
    if name == "translate":
        return Translate(**asdict(update.translate), seed=seed)
    if name == "recentre":
        return Recentre(**asdict(update.recentre))
    if name == "refit":
        return Refit(**asdict(update.refit), **tune)
    if name == "ewc":
        return Ewc(**asdict(update.ewc), **tune)
    if name == "anchored":
        return Anchored(**asdict(update.anchored), **tune)
    if name == "grow":
        return Grow(**asdict(update.grow), seed=seed)
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
