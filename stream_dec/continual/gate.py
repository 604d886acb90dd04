"""The promotion gate: every check a new version passes before it is written or published.

Used alike by ``stream-dec update`` and by the updater. Two layers:

- :func:`limit_violations`, run by :func:`~stream_dec.continual.base.apply_strategy` on
  every update: finite weights, no permuted ids, relative centre drift <= ``max_drift``,
  label agreement on the retained samples >= ``min_agreement``;
- :func:`promotion_gate`: those limits, plus agreement on held-out old samples (the
  updater has the old window's dropped samples; the CLI has none) and, for an update
  that changed the encoder, the DEC loss on the window.

Every check fails closed: a NaN or Inf figure breaks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from stream_dec.model.metrics import label_agreement

if TYPE_CHECKING:
    from stream_dec.continual.base import Update

ENCODER_PREFIX = "autoencoder.encoder."


@dataclass(frozen=True)
class Limits:
    """What an update must respect to be accepted.

    max_drift
        Largest centre move, in median gaps between neighbouring centres.
    min_agreement
        Smallest fraction of retained (and held-out old) samples that keep their id.
    max_loss_increase
        Largest relative rise of the DEC loss on the window, for an update that changed
        the encoder.
    """

    max_drift: float = 0.10
    min_agreement: float = 0.98
    max_loss_increase: float = 0.001


def limit_violations(limits: Limits, *, finite: bool, permuted: bool, relative_drift: float,
                     agreement: float) -> list[str]:
    """Why an update breaks its limits (empty: it does not).

    >>> limit_violations(Limits(), finite=True, permuted=False, relative_drift=0.05, agreement=0.99)
    []
    >>> limit_violations(Limits(), finite=True, permuted=False, relative_drift=float("nan"), agreement=0.99)
    ['relative drift nan > max_drift 0.1']
    """
    violations = []
    if not finite:
        violations.append("the proposal holds NaN or Inf weights")
    if permuted:
        violations.append("cluster ids would be permuted (best old->new matching is not the identity)")
    if not relative_drift <= limits.max_drift:
        violations.append(f"relative drift {relative_drift:.4f} > max_drift {limits.max_drift}")
    if not agreement >= limits.min_agreement:
        violations.append(f"label agreement {agreement:.4f} < min_agreement {limits.min_agreement}")
    return violations


@dataclass(frozen=True)
class Verdict:
    """The promotion gate's answer on one update.

    failed
        The checks that failed, each with why: ``limits`` (the update's own agreement,
        drift and id limits), ``loss``, ``held_out``. Empty: the update may be published.
    held_out_agreement
        Agreement with the current version on the held-out old samples; None without any.

    >>> Verdict({}).passed, Verdict({"loss": "DEC loss worse"}).reasons
    (True, 'DEC loss worse')
    """

    failed: dict[str, str]
    held_out_agreement: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def reasons(self) -> str:
        return "; ".join(self.failed.values())


def promotion_gate(update: Update, held_out: np.ndarray, limits: Limits) -> Verdict:
    """Whether ``update`` may be published: the update's own limits (:func:`limit_violations`),
    its agreement with the current version on ``held_out`` (old samples it never saw; none:
    no such check) and, for an update that changed the encoder (a fine-tune: ``refit``,
    ``ewc``, ``anchored``, ``retrain``), its DEC loss on the window against the current
    version's (``max_loss_increase``).

    The loss judges a fine-tune of the objective it minimises. An update that leaves the
    encoder as it is only moves or adds centres (``translate``, ``recentre``, ``grow``):
    moving centres toward the window's data raises KL(P || Q) a little and more centres
    spread Q, so a loss gate stopped them where their limits and held-out agreement let
    them through (figures: benchmarks/README.md).
    """
    report = update.report
    failed = {}
    if report.violations:
        failed["limits"] = "; ".join(report.violations)
    if encoder_changed(update) and not report.loss <= report.previous_loss * (1 + limits.max_loss_increase):
        failed["loss"] = f"DEC loss {report.loss:.6f} worse than the current version's {report.previous_loss:.6f}"
    agreement = None
    if len(held_out):
        agreement = label_agreement(update.current.to_model().predict(held_out)[0],
                                    update.proposal.model.predict(held_out)[0])
        if not agreement >= limits.min_agreement:
            failed["held_out"] = (f"agreement {agreement:.4f} on {len(held_out)} held-out old samples < "
                                  f"min_agreement {limits.min_agreement}")
    return Verdict(failed, agreement)


def encoder_changed(update: Update) -> bool:
    """Whether the proposal's encoder differs from the current version's in any weight."""
    old, new = update.current.tensors, update.proposal.model.state_dict()
    return any(not torch.equal(old[name], weight.detach().cpu()) for name, weight in new.items()
               if name.startswith(ENCODER_PREFIX))
