"""The shared interface of update strategies, and the safety checks every update passes.

A strategy takes the current :class:`~stream_dec.model.ModelVersion` and a
:class:`Window` of samples and returns a :class:`Proposal` (a new network whose
cluster ids mean what the old ones meant, plus any auxiliary tensors to store with it,
such as EWC's Fisher). :func:`apply_strategy` runs it, times it and measures the result
against the old version on the same window: loss, centre drift, label agreement on the
retained samples, and whether the best one-to-one matching of old to new clusters
on them is still the identity. An update that permutes ids or breaks the configured limits
comes back with ``accepted = False`` and the reasons, never silently.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from stream_dec.continual.gate import Limits, limit_violations
from stream_dec.model import DEC, ModelVersion
from stream_dec.model.assignment import clustering_loss, target_distribution
from stream_dec.model.metrics import centre_drift, label_agreement


@dataclass(frozen=True)
class Window:
    """The samples an update trains on.

    Attributes
    ----------
    X
        float32 (n, D) samples of the new window.
    retained
        bool (n,): True for samples that were already in the previous window. Label
        agreement is measured on these; when none are marked, on the whole window.
    """

    X: np.ndarray
    retained: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, retained: np.ndarray | None = None) -> Window:
        """A window with ``retained`` defaulting to "no sample known to be retained"."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        mask = np.zeros(len(X), dtype=bool) if retained is None else np.asarray(retained, dtype=bool)
        if mask.shape != (len(X),):
            raise ValueError(f"retained mask has shape {mask.shape}, expected ({len(X)},)")
        return cls(X, mask)

    @property
    def agreement_rows(self) -> np.ndarray:
        """Rows on which agreement is measured: the retained ones, else all."""
        return self.retained if self.retained.any() else np.ones(len(self.X), dtype=bool)


@dataclass(frozen=True)
class Proposal:
    """What a strategy returns: the new network and tensors to keep with it."""

    model: DEC
    auxiliary: dict[str, torch.Tensor] = field(default_factory=dict)


class Strategy(Protocol):
    """An update strategy: ``propose(version, window) -> Proposal``.

    The proposal's cluster ids must mean what the old ones meant; strategies that
    re-learn ids (``retrain``) align them before returning.
    """

    name: str

    def propose(self, current: ModelVersion, window: Window) -> Proposal: ...


@dataclass(frozen=True)
class UpdateReport:
    """Measurements of one update on its window (see :func:`apply_strategy`).

    Attributes
    ----------
    strategy, seconds
        Which strategy ran and how long it took.
    loss, previous_loss
        DEC loss KL(P || Q) of the new and the old model on the window, each with its
        own target distribution.
    agreement
        Fraction of retained samples (else all) whose id did not change.
    drift_mean, drift_max, relative_drift_mean, relative_drift_max
        Centre movement in latent space (see :class:`~stream_dec.model.metrics.Drift`).
    ids_permuted
        True if the best one-to-one matching of old to new clusters on the retained
        samples (else the window) is not the identity (the update would silently rename
        clusters). Ids mean what they labelled before: a new id that takes the new samples
        an old id had absorbed does not rename it.
    accepted, violations
        Whether the limits hold, and if not, why.
    """

    strategy: str
    seconds: float
    loss: float
    previous_loss: float
    agreement: float
    drift_mean: float
    drift_max: float
    relative_drift_mean: float
    relative_drift_max: float
    ids_permuted: bool
    accepted: bool
    violations: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """The numeric fields, for a version header."""
        keys = ("seconds", "loss", "previous_loss", "agreement", "drift_mean", "drift_max",
                "relative_drift_mean", "relative_drift_max")
        return {k: float(getattr(self, k)) for k in keys}


@dataclass(frozen=True)
class Update:
    """A proposal plus its report; :meth:`to_version` makes the next model version."""

    current: ModelVersion
    proposal: Proposal
    report: UpdateReport

    def to_version(self) -> ModelVersion:
        return ModelVersion.from_model(
            self.proposal.model,
            version=self.current.header.version + 1,
            parent=self.current.header.version,
            strategy=self.report.strategy,
            metrics=self.report.metrics(),
            auxiliary=self.proposal.auxiliary,
        )


def apply_strategy(strategy: Strategy, current: ModelVersion, window: Window, limits: Limits) -> Update:
    """Run ``strategy`` on ``window`` and check the result against ``limits``."""
    started = time.perf_counter()
    proposal = strategy.propose(current, window)
    seconds = time.perf_counter() - started
    old_model = current.to_model(proposal.model.centres.device)
    new_model = proposal.model.eval()
    old_labels, _ = old_model.predict(window.X)
    new_labels, _ = new_model.predict(window.X)
    rows = window.agreement_rows
    agreement = label_agreement(old_labels[rows], new_labels[rows])
    drift = centre_drift(_centres(old_model), _centres(new_model)[: old_model.n_clusters])  # new ids: no drift
    permuted = not is_identity_matching(old_labels[rows], new_labels[rows], old_model.n_clusters,
                                        new_model.n_clusters)
    finite = all(bool(torch.isfinite(t).all()) for t in new_model.state_dict().values())
    violations = limit_violations(limits, finite=finite, permuted=permuted, relative_drift=drift.relative_max,
                                  agreement=agreement)
    report = UpdateReport(
        strategy=strategy.name, seconds=seconds,
        loss=window_loss(new_model, window.X), previous_loss=window_loss(old_model, window.X),
        agreement=agreement, drift_mean=drift.mean, drift_max=drift.max,
        relative_drift_mean=drift.relative_mean, relative_drift_max=drift.relative_max,
        ids_permuted=permuted, accepted=not violations, violations=tuple(violations),
    )
    return Update(current, proposal, report)


@torch.inference_mode()
def window_loss(model: DEC, X: np.ndarray) -> float:
    """DEC loss KL(P || Q) of ``model`` on ``X`` with P from its own Q (DEC eq. 2-3)."""
    q = model.soft_assign(X)
    return float(clustering_loss(q.clamp_min(1e-12).log(), target_distribution(q)))


def overlap_counts(old_labels: np.ndarray, new_labels: np.ndarray, k: int, k_new: int | None = None) -> np.ndarray:
    """``c[new_id, old_id]``: samples labelled ``new_id`` by the new model (``k_new`` ids, default ``k``)
    and ``old_id`` by the old (``k`` ids)."""
    counts = np.zeros((k_new or k, k), dtype=np.int64)
    np.add.at(counts, (new_labels, old_labels), 1)
    return counts


def overlap_matching(old_labels: np.ndarray, new_labels: np.ndarray, k: int) -> np.ndarray:
    """``m[new_id] = old_id`` maximising the samples both label alike (Hungarian)."""
    rows, cols = linear_sum_assignment(overlap_counts(old_labels, new_labels, k), maximize=True)
    matching = np.empty(k, dtype=np.int64)
    matching[rows] = cols
    return matching


def is_identity_matching(old_labels: np.ndarray, new_labels: np.ndarray, k: int, k_new: int | None = None) -> bool:
    """True if no renaming of the new clusters agrees strictly better with the old labels.

    The new model may have more ids (``k_new``) than the old: old ids must still match themselves.

    >>> is_identity_matching(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]), 2)
    True
    >>> is_identity_matching(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]), 2)
    False
    >>> is_identity_matching(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), 2, 3)  # a new id 2
    True
    """
    counts = overlap_counts(old_labels, new_labels, k, k_new)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return bool(counts[rows, cols].sum() <= np.trace(counts[:k]))


def _centres(model: DEC) -> np.ndarray:
    return model.cluster_centres().detach().cpu().numpy()
