"""The continual-update experiment behind ``stream-dec evaluate``.

Train DEC on the step-0 window, then at every step apply each strategy to the new
window, each strategy continuing its own line of versions (a rejected update is still
followed, so the experiment shows what the strategy does; the report says it was
rejected). ``MiniBatchKMeans.partial_fit`` with ``reassignment_ratio=0`` runs beside
them as a peer baseline, with its never-updated step-0 fit (``minibatch-kmeans frozen``)
as its own reference. Per strategy and step it records ACC/NMI/ARI on the new
window, label agreement on retained samples, ACC on the step-0 samples (forgetting),
centre drift (mean, max, relative, per cluster), update seconds and the verdict.
Where ``frozen`` and ``retrain`` both run, a ``retrain-cells-oracle`` row per step shows
how much the structure retrain found can gain within the agreement limit
(:func:`retrain_cells`).
"""

from __future__ import annotations

import logging
import time
from copy import deepcopy
from dataclasses import asdict, dataclass, replace
from typing import Callable, NamedTuple

import numpy as np
from scipy import stats
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import MiniBatchKMeans

from stream_dec.config import Config
from stream_dec.continual import Strategy, Window, apply_strategy, limits_of, make_strategy
from stream_dec.continual.grow import Grow
from stream_dec.continual.base import overlap_counts
from stream_dec_lab.scenarios import Scenario, scenario_windows
from stream_dec.model import ModelVersion, fit_dec
from stream_dec.model.metrics import centre_drift, cluster_accuracy, clustering_scores, label_agreement

log = logging.getLogger(__name__)

MINIBATCH_KMEANS = "minibatch-kmeans"
MINIBATCH_KMEANS_FROZEN = "minibatch-kmeans frozen"
RETRAIN_CELLS_ORACLE = "retrain-cells-oracle"

GROW_RANDOM = "grow-random"
"""``grow``'s control: ids opened by grow's rules at random new samples (not for production)."""


def lab_strategy(name: str, config: Config, seed: int = 0) -> Strategy:
    """:func:`~stream_dec.continual.make_strategy`, plus the experiment's controls."""
    if name == GROW_RANDOM:
        return Grow(**asdict(config.update.grow), seed=seed, candidates_from="random")
    return make_strategy(name, config, seed=seed)


@dataclass(frozen=True)
class StepResult:
    """One strategy at one step (step 0 is the initial training)."""

    scenario: str
    step: int
    strategy: str
    acc: float
    acc_many: float
    nmi: float
    ari: float
    agreement: float
    acc_step0: float
    drift_mean: float
    drift_max: float
    relative_drift_mean: float
    relative_drift_max: float
    seconds: float
    accepted: bool
    violations: tuple[str, ...]
    drift_per_cluster: tuple[float, ...]
    clusters: int = 0
    agreement_heldout: float = float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


class Line(NamedTuple):
    """One line of versions in the experiment: a strategy with its own config, reported as ``label``."""

    label: str
    strategy: str
    config: Config


KNOBS: dict[str, tuple[str, tuple[float, ...]]] = {
    "translate": ("ratio", (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)),
    "recentre": ("ratio", (0.1, 0.25, 0.5, 0.75, 1.0)),
    "refit": ("anchor", (0.01, 0.1, 1.0, 10.0, 100.0)),
    "ewc": ("lam", (0.1, 1.0, 10.0, 100.0, 1000.0)),
    "anchored": ("distill", (0.0, 1.0, 3.0, 10.0, 30.0, 100.0)),
    "grow": ("budget", (0.0025, 0.005, 0.01, 0.02)),
}
"""Each tunable strategy's stiffness knob (a field of ``[update.<strategy>]``) and its sweep grid."""


def with_knob(config: Config, strategy: str, value: float) -> Config:
    """``config`` with ``[update.<strategy>] <knob> = value``.

    >>> with_knob(Config(), "translate", 0.5).update.translate.ratio
    0.5
    """
    knob, _ = KNOBS[strategy]
    section = getattr(config.update, strategy)
    update = replace(config.update, **{strategy: replace(section, **{knob: value})})
    return replace(config, update=update)


def sweep_lines(strategies: list[str], config: Config) -> list[Line]:
    """A line per grid value of each tunable strategy, plus ``frozen`` and ``retrain`` (the gap's ends);
    ``grow`` brings its control ``grow-random`` at the same grid (see :mod:`stream_dec.continual.grow`).

    >>> [line.label for line in sweep_lines(["translate"], Config())][:3]
    ['frozen', 'retrain', 'translate ratio=0.02']
    >>> [line.label for line in sweep_lines(["grow"], Config())][-1]
    'grow-random budget=0.02'
    """
    lines = [Line("frozen", "frozen", config), Line("retrain", "retrain", config)]
    for strategy in strategies:
        if strategy in KNOBS:
            knob, grid = KNOBS[strategy]
            for name in (strategy, GROW_RANDOM) if strategy == "grow" else (strategy,):
                lines += [Line(f"{name} {knob}={value:g}", name, with_knob(config, strategy, value)) for value in grid]
    return lines


def evaluate(
    X: np.ndarray,
    y: np.ndarray,
    *,
    strategies: list[str] | list[Line],
    config: Config,
    scenario: Scenario,
    window: int,
    steps: int,
    seed: int,
    on_version: Callable[[str, int, ModelVersion, np.ndarray], None] | None = None,
) -> list[StepResult]:
    """Run the experiment; return one :class:`StepResult` per line and step.

    ``strategies`` are names (each run with ``config``) or :class:`Line` s; ``config``
    trains the initial model every line starts from. ``on_version(line, step, version,
    rows)`` receives every model made (line ``"initial"`` at step 0) with the rows of
    ``X`` in that step's window.
    """
    lines = [s if isinstance(s, Line) else Line(s, s, config) for s in strategies]
    plan = scenario_windows(y, scenario=scenario, window=window, steps=steps, seed=seed)
    k = int(np.unique(y).size)
    first = plan[0].rows
    started = time.perf_counter()
    model, _ = fit_dec(X[first], config.model, config.train, k)
    seconds0 = time.perf_counter() - started
    initial = ModelVersion.from_model(model, version=1)
    if on_version is not None:
        on_version("initial", 0, initial, first)
    scores0 = clustering_scores(y[first], model.predict(X[first])[0])
    results = [StepResult(scenario, 0, "initial", **scores0, agreement=1.0, acc_step0=scores0["acc"],
                          drift_mean=0.0, drift_max=0.0, relative_drift_mean=0.0, relative_drift_max=0.0,
                          seconds=seconds0, accepted=True, violations=(), drift_per_cluster=(),
                          clusters=model.n_clusters)]
    log.info("step 0: initial DEC on %d samples, ACC %.4f (%.1fs)", len(first), scores0["acc"], seconds0)
    current = {line.label: initial for line in lines}
    peer = _MiniBatchBaseline(X[first], k, seed)
    results.append(peer.initial(scenario, y[first]))
    for step in range(1, steps + 1):
        rows, retained = plan[step].rows, plan[step].retained
        win = Window.of(X[rows], retained)
        held_out = X[np.setdiff1d(plan[step - 1].rows, rows[retained])]  # the old window's dropped half
        outputs = {}  # line -> its labels of the window and of the held-out samples, its number of ids
        for name, strategy, line_config in lines:
            update = apply_strategy(lab_strategy(strategy, line_config, seed=seed + step), current[name], win,
                                    limits_of(line_config))
            current[name] = update.to_version()
            if on_version is not None:
                on_version(name, step, current[name], rows)
            new_model = current[name].to_model()
            labels = new_model.predict(win.X)[0]
            old_model = update.current.to_model()
            held_out_labels = new_model.predict(held_out)[0]
            old_centres = old_model.cluster_centres().detach().numpy()
            new_centres = new_model.cluster_centres().detach().numpy()[: len(old_centres)]  # ids a strategy opened
            moved = np.linalg.norm(new_centres - old_centres, axis=1)  # have no old position
            r = update.report
            results.append(StepResult(
                scenario, step, name, **clustering_scores(y[rows], labels), agreement=r.agreement,
                acc_step0=cluster_accuracy(y[first], new_model.predict(X[first])[0]),
                drift_mean=r.drift_mean, drift_max=r.drift_max, relative_drift_mean=r.relative_drift_mean,
                relative_drift_max=r.relative_drift_max, seconds=r.seconds, accepted=r.accepted,
                violations=r.violations, drift_per_cluster=tuple(float(m) for m in moved),
                clusters=new_model.n_clusters,
                agreement_heldout=label_agreement(old_model.predict(held_out)[0], held_out_labels),
            ))
            log.info("step %d %s: ACC %.4f agreement %.4f drift %.4f (%.2fs)%s", step, name, results[-1].acc,
                     r.agreement, r.relative_drift_max, r.seconds, "" if r.accepted else " REJECTED")
            outputs[name] = labels, held_out_labels, new_model.n_clusters
        if "frozen" in outputs and "retrain" in outputs:
            results.append(_oracle_step(scenario, step, y[rows], win.retained, outputs["frozen"], outputs["retrain"],
                                        config.update.min_agreement))
        results.extend(peer.step(scenario, step, X, y, rows, retained, first, held_out))
    return results


def retrain_cells(y: np.ndarray, frozen: np.ndarray, retrained: np.ndarray, retained: np.ndarray,
                  min_agreement: float, k: int | None = None) -> np.ndarray:
    """The best relabelling of the cells of frozen x retrain that an oracle finds, as ids ``table[i, j]``.

    Cell ``(i, j)`` holds the samples that frozen labels ``i`` and retrain labels ``j``:
    both are functions of the embedding, so a model could label by cells, and the cells
    hold all the structure retrain found. Ids keep frozen's meaning (its Hungarian matching
    of ids to classes on the window). With the true classes, a cell may take the id of its
    most common class: that gains the samples of that class less those of the class its
    id stands for now, and changes the labels of the retained samples in it. A rule by cells
    labels old samples alike wherever they are, so the labels it changes are counted in
    expectation, as :func:`agreement_ceiling` counts them: each class's samples in the cell
    times that class's share of retained samples (counting the retained samples at hand
    instead reads 0.98 on them and 0.96 held out on wordnet). Cells are taken greedily,
    most gain per retained label changed first, while the expected agreement stays >=
    ``min_agreement``. The result, labelled by :func:`adopt`, is an optimistic estimate of
    how much an update that finds only the structure retrain finds can gain at that
    agreement: it knows the classes (not a bound: greedy, whole cells). ``k``, the table's
    size, is the number of ids of either model (default: the most the labels use).

    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> frozen = np.array([0, 0, 0, 0, 0, 1])  # class 1 mostly inside id 0
    >>> retrained = np.array([0, 0, 0, 1, 1, 1])
    >>> retained = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    >>> table = retrain_cells(y, frozen, retrained, retained, 0.75)  # one of four retained labels may change
    >>> table.tolist(), adopt(table, frozen, retrained).tolist()
    ([[0, 1], [1, 1]], [0, 0, 0, 1, 1, 1])
    >>> adopt(retrain_cells(y, frozen, retrained, retained, 0.9), frozen, retrained).tolist()
    [0, 0, 0, 0, 0, 1]
    """
    k = k or int(max(frozen.max(), retrained.max())) + 1
    _, classes = np.unique(y, return_inverse=True)
    counts = overlap_counts(classes, frozen, classes.max() + 1, k)  # [id, class]
    rows, cols = linear_sum_assignment(counts, maximize=True)
    id_of = np.full(counts.shape[1], -1)
    id_of[cols] = rows  # class -> the id that stands for it
    cell = frozen * k + retrained
    per_class = overlap_counts(classes, cell, counts.shape[1], k * k)  # [cell, class]
    share = np.bincount(classes[retained], minlength=counts.shape[1]) / np.bincount(classes)  # retained per sample
    cost = per_class @ share  # retained labels a cell changes, in expectation
    per_class[:, id_of < 0] = 0  # a class no id stands for gains nothing
    best = per_class.argmax(1)
    now = np.zeros((k, counts.shape[1]), dtype=bool)
    now[rows, cols] = True  # now[i, c]: id i stands for class c
    gain = per_class.max(1) - (per_class * now[np.arange(k * k) // k]).sum(1)
    table = np.repeat(np.arange(k), k)
    budget = (1.0 - min_agreement) * retained.sum() + 1e-9
    for c in np.argsort(-gain / np.maximum(cost, 1e-9), kind="stable"):
        if gain[c] <= 0:
            break
        if cost[c] <= budget:
            table[c], budget = id_of[best[c]], budget - cost[c]
    return table.reshape(k, k)


def adopt(table: np.ndarray, frozen: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """Labels by cells: ``table[frozen, retrained]`` (see :func:`retrain_cells`)."""
    return table[frozen, retrained]


def _oracle_step(scenario, step, y, retained, frozen, retrained, min_agreement) -> StepResult:
    """The :data:`RETRAIN_CELLS_ORACLE` row: the cells of frozen's and retrain's ``(window labels,
    held-out labels, ids)`` relabelled by :func:`retrain_cells`; agreement held out by the same
    table; no model, so no drift or time."""
    (window, old, k), (window_retrained, new, k_retrained) = frozen, retrained
    table = retrain_cells(y, window, window_retrained, retained, min_agreement, max(k, k_retrained))
    labels = adopt(table, window, window_retrained)
    nan = float("nan")
    return StepResult(
        scenario, step, RETRAIN_CELLS_ORACLE, **clustering_scores(y, labels),
        agreement=label_agreement(window[retained], labels[retained]), acc_step0=nan, drift_mean=nan,
        drift_max=nan, relative_drift_mean=nan, relative_drift_max=nan, seconds=nan, accepted=True, violations=(),
        drift_per_cluster=(), clusters=k_retrained,
        agreement_heldout=label_agreement(old, adopt(table, old, new)))


class _MiniBatchBaseline:
    """scikit-learn MiniBatchKMeans: fit on step 0, then ``partial_fit`` on each new half."""

    def __init__(self, X0: np.ndarray, k: int, seed: int) -> None:
        self.kmeans = MiniBatchKMeans(k, reassignment_ratio=0.0, random_state=seed, n_init=3, batch_size=1024)
        self.kmeans.fit(X0)
        self.frozen = deepcopy(self.kmeans)  # the step-0 fit, never updated: the peer's own reference
        self.frozen_step0 = self.frozen.predict(X0)

    def initial(self, scenario: str, y0: np.ndarray) -> StepResult:
        """Its own step 0: the fit on the first window (where both of its lines start)."""
        scores = clustering_scores(y0, self.frozen_step0)
        return StepResult(scenario, 0, MINIBATCH_KMEANS, **scores, agreement=1.0, acc_step0=scores["acc"],
                          drift_mean=0.0, drift_max=0.0, relative_drift_mean=0.0, relative_drift_max=0.0,
                          seconds=0.0, accepted=True, violations=(), drift_per_cluster=(),
                          clusters=self.kmeans.n_clusters, agreement_heldout=1.0)

    def step(self, scenario, step, X, y, rows, retained, first, held_out) -> list[StepResult]:
        """Its frozen line (the step-0 fit, never updated) and its updated line."""
        frozen_labels = self.frozen.predict(X[rows])
        unchanged = StepResult(
            scenario, step, MINIBATCH_KMEANS_FROZEN, **clustering_scores(y[rows], frozen_labels), agreement=1.0,
            acc_step0=cluster_accuracy(y[first], self.frozen_step0), drift_mean=0.0, drift_max=0.0,
            relative_drift_mean=0.0, relative_drift_max=0.0, seconds=0.0, accepted=True, violations=(),
            drift_per_cluster=(), clusters=self.frozen.n_clusters, agreement_heldout=1.0)
        before, before_held_out = self.kmeans.predict(X[rows][retained]), self.kmeans.predict(held_out)
        old_centres = self.kmeans.cluster_centers_.copy()
        started = time.perf_counter()
        self.kmeans.partial_fit(X[rows][~retained])
        seconds = time.perf_counter() - started
        labels = self.kmeans.predict(X[rows])
        drift = centre_drift(old_centres, self.kmeans.cluster_centers_)
        return [unchanged, StepResult(
            scenario, step, MINIBATCH_KMEANS, **clustering_scores(y[rows], labels),
            agreement=label_agreement(before, labels[retained]),
            acc_step0=cluster_accuracy(y[first], self.kmeans.predict(X[first])),
            drift_mean=drift.mean, drift_max=drift.max, relative_drift_mean=drift.relative_mean,
            relative_drift_max=drift.relative_max, seconds=seconds, accepted=True, violations=(),
            drift_per_cluster=tuple(np.linalg.norm(self.kmeans.cluster_centers_ - old_centres, axis=1).tolist()),
            clusters=self.kmeans.n_clusters,
            agreement_heldout=label_agreement(before_held_out, self.kmeans.predict(held_out)),
        )]


def gap_closed(results: list[StepResult], strategy: str, reference: str = "frozen") -> dict[int, float]:
    """Per step: (ACC(strategy) - ACC(reference)) / (ACC(retrain) - ACC(frozen)).

    The gain over ``reference`` (``frozen`` unless the line has its own) in units of the
    frozen -> retrain gap. ``nan`` where a line did not run or retrain is not better
    than frozen.
    """
    by = {(r.step, r.strategy): r.acc for r in results}
    out = {}
    for step in sorted({r.step for r in results if r.step > 0}):
        frozen, retrain = by.get((step, "frozen")), by.get((step, "retrain"))
        base, mine = by.get((step, reference)), by.get((step, strategy))
        ok = None not in (frozen, retrain, base, mine) and retrain > frozen
        out[step] = (mine - base) / (retrain - frozen) if ok else float("nan")
    return out


def paired_difference(results: list[StepResult], a: str, b: str, field: str,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Mean over the steps of line ``a``'s ``field`` minus line ``b``'s, and the half-width
    of its two-sided Student-t confidence interval. Paired by step: both lines saw the same
    windows, so the step-to-step swing of the windows cancels. Half-width ``inf`` with
    fewer than two steps in common (no evidence either way).
    """
    by = {(r.step, r.strategy): getattr(r, field) for r in results if r.step > 0}
    d = np.array([value - by[(step, b)] for (step, name), value in by.items() if name == a and (step, b) in by])
    if len(d) < 2:
        return (float(d.mean()) if len(d) else float("nan")), float("inf")
    half = stats.t.ppf((1 + confidence) / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(half)


def clearly_above(results: list[StepResult], rival: str, line: str, confidence: float = 0.95) -> bool:
    """Whether ``rival`` is better than ``line`` beyond the noise in agreement or in ACC
    (:func:`paired_difference` over the steps): the mean difference exceeds the interval's
    half-width. Not clearly above in either: ``line`` matches or beats it within the noise."""
    for field in ("agreement", "acc"):
        mean, half = paired_difference(results, rival, line, field, confidence)
        if mean > half:
            return True
    return False


@dataclass(frozen=True)
class FrontierPoint:
    """One line of a sweep, averaged over the update steps."""

    label: str
    agreement: float
    agreement_heldout: float
    acc_gain: float
    acc_many_gain: float
    gap_closed: float
    seconds: float
    accepted_steps: int
    steps: int
    clusters: int = 0  # ids after the last step (0: not a model)


def frontier(results: list[StepResult]) -> list[FrontierPoint]:
    """Per line, means over the steps of: agreement on retained samples and on held-out
    old samples (the previous window's dropped half, which no update saw); ACC gain on the
    new window over its frozen reference (``frozen``; MiniBatchKMeans' own step-0 fit for
    it), Hungarian and many-to-one (the one that counts ids a line opened; it rises with the
    number of ids); the Hungarian gain in units of the frozen -> retrain gap; update
    seconds; and the number of ids after the last step."""
    by = {(r.step, r.strategy): r for r in results}
    points = []
    for label in dict.fromkeys(r.strategy for r in results if r.step > 0):
        reference = MINIBATCH_KMEANS_FROZEN if label.startswith(MINIBATCH_KMEANS) else "frozen"
        mine = [r for r in results if r.strategy == label and r.step > 0]
        gains = [r.acc - by[(r.step, reference)].acc if (r.step, reference) in by else np.nan for r in mine]
        many = [r.acc_many - by[(r.step, reference)].acc_many if (r.step, reference) in by else np.nan for r in mine]
        closed = [g for g in gap_closed(results, label, reference).values() if not np.isnan(g)]
        points.append(FrontierPoint(
            label, float(np.mean([r.agreement for r in mine])), float(np.mean([r.agreement_heldout for r in mine])),
            float(np.mean(gains)), float(np.mean(many)),
            float(np.mean(closed)) if closed else float("nan"), float(np.mean([r.seconds for r in mine])),
            sum(r.accepted for r in mine), len(mine), mine[-1].clusters))
    return points


def agreement_ceiling(y: np.ndarray, retained: np.ndarray, min_agreement: float) -> float:
    """The most ACC an update can gain on a window, in expectation, keeping ``min_agreement``.

    An update changes the label of some samples. Relabelling a sample gains at most one
    correct label, also when the best cluster-to-class matching changes, so the ACC gain
    is at most the fraction of the window relabelled. A model labels by the embedding
    alone, and the retained samples of a class are drawn from the same distribution as
    its new ones, so in expectation it relabels the same share ``d_c`` of both. The
    ceiling is the best choice of shares ``0 <= d_c <= 1`` that changes at most
    ``1 - min_agreement`` of the retained labels: a fractional knapsack filled with the
    classes with the most window samples per retained one. Only class counts are needed.

    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    >>> retained = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)  # class 1: 1 retained, 6 in all
    >>> round(agreement_ceiling(y, retained, 0.8), 6)  # one retained label may change: class 1 moves whole
    0.6
    >>> round(agreement_ceiling(y, retained, 0.9), 6)  # half a retained label: half of class 1
    0.3
    """
    _, index = np.unique(y, return_inverse=True)
    kept = np.bincount(index[retained], minlength=index.max() + 1).astype(float)
    total = np.bincount(index, minlength=index.max() + 1).astype(float)
    budget = (1.0 - min_agreement) * retained.sum()
    gain = total[kept == 0].sum()  # classes with no retained sample move for free
    for c in np.flatnonzero(kept > 0)[np.argsort(-(total / np.maximum(kept, 1))[kept > 0], kind="stable")]:
        share = min(1.0, budget / kept[c])
        gain, budget = gain + share * total[c], budget - share * kept[c]
        if budget <= 0:
            break
    return float(gain / len(y))


def ceilings(results: list[StepResult], y: np.ndarray, *, scenario: Scenario, window: int, steps: int, seed: int,
             min_agreement: float) -> dict[int, tuple[float, float]]:
    """Per step of the experiment: :func:`agreement_ceiling` and that gain in units of the frozen -> retrain gap."""
    plan = scenario_windows(y, scenario=scenario, window=window, steps=steps, seed=seed)
    acc = {(r.step, r.strategy): r.acc for r in results}
    out = {}
    for step in range(1, steps + 1):
        gain = agreement_ceiling(y[plan[step].rows], plan[step].retained, min_agreement)
        gap = acc.get((step, "retrain"), np.nan) - acc.get((step, "frozen"), np.nan)
        out[step] = (gain, gain / gap if gap > 0 else float("nan"))
    return out


def ceiling_point(per_step: dict[int, tuple[float, float]], min_agreement: float) -> FrontierPoint:
    """:func:`ceilings` as a frontier point (means over the steps)."""
    gains = [gain for gain, _ in per_step.values()]
    closed = [c for _, c in per_step.values() if not np.isnan(c)]
    return FrontierPoint(f"ceiling agreement={min_agreement:g}", min_agreement, min_agreement, float(np.mean(gains)),
                         float(np.mean(gains)), float(np.mean(closed)) if closed else float("nan"), 0.0, len(gains),
                         len(gains))


def frontier_table(points: list[FrontierPoint]) -> str:
    """The frontier as a Markdown table."""
    lines = ["| line | agreement | held-out agreement | ACC gain vs frozen | many-to-one ACC gain | gap closed | "
             "seconds | accepted steps | ids at the end |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p.label} | {p.agreement:.4f} | {p.agreement_heldout:.4f} | {p.acc_gain:+.4f} | "
              f"{p.acc_many_gain:+.4f} | {p.gap_closed:.0%} | {p.seconds:.2f} | {p.accepted_steps}/{p.steps} | "
              f"{p.clusters or '-'} |" for p in points]
    return "\n".join(lines)


def markdown_table(results: list[StepResult]) -> str:
    """The results as a Markdown table (one row per strategy and step)."""
    head = ("| scenario | step | strategy | K | ACC | ACC many-to-one | NMI | ARI | agreement | held-out agreement | "
            "ACC step 0 | rel. drift mean | rel. drift max | seconds | accepted |\n" + "|---" * 15 + "|")
    lines = [head]
    for r in results:
        lines.append(
            f"| {r.scenario} | {r.step} | {r.strategy} | {r.clusters} | {r.acc:.4f} | {r.acc_many:.4f} | {r.nmi:.4f} | "
            f"{r.ari:.4f} | {r.agreement:.4f} | {r.agreement_heldout:.4f} | "
            f"{r.acc_step0:.4f} | {r.relative_drift_mean:.4f} | {r.relative_drift_max:.4f} | {r.seconds:.2f} | "
            f"{'yes' if r.accepted else 'no'} |"
        )
    return "\n".join(lines)
