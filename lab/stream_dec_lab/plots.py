"""PNG plots of an evaluate run: accuracy and agreement per step, drift per cluster, the frontier."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from stream_dec_lab.evaluate import MINIBATCH_KMEANS, FrontierPoint, StepResult  # noqa: E402

MARKERS = "osD^vP*Xh<>p"
NOISE = 1e-6
"""Centre movement below this (float noise of a strategy that did not move a centre) is drawn as 0."""


def plot_steps(results: list[StepResult], out: Path, *, min_agreement: float, max_drift: float) -> list[Path]:
    """Write ``accuracy.png``, ``agreement.png`` and ``drift.png`` into ``out``; return their paths.

    Every line starts from its own step 0 (DEC's initial model; MiniBatchKMeans' own first
    fit); agreement and drift are small multiples, one panel per line, with the gate's
    limits; a line that never moved a centre gets no drift panel.
    """
    lines = list(dict.fromkeys(r.strategy for r in results if r.step > 0))
    starts = {r.strategy: r for r in results if r.step == 0}
    scenario = results[0].scenario

    def series(line: str) -> list[StepResult]:
        start = starts.get(MINIBATCH_KMEANS if line.startswith(MINIBATCH_KMEANS) else "initial")
        return ([start] if start else []) + [r for r in results if r.strategy == line and r.step > 0]

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, line in enumerate(lines):
        rows = series(line)
        ax.plot([r.step for r in rows], [r.acc for r in rows], marker=MARKERS[i % len(MARKERS)],
                linestyle="--" if "frozen" in line else "-", label=line)
    ax.set(xlabel="step", ylabel="ACC on the window", title=f"{scenario}: ACC on each step's window")
    _integer_steps(ax)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    paths = [_save(fig, out / "accuracy.png")]

    fig, axes = _panels(len(lines))
    for ax, line in zip(axes, lines):
        rows = [r for r in results if r.strategy == line and r.step > 0]
        steps = [r.step for r in rows]
        ax.plot(steps, [r.agreement for r in rows], marker="o", label="retained samples")
        ax.plot(steps, [r.agreement_heldout for r in rows], marker="s", linestyle=":", label="held-out samples")
        rejected = [r for r in rows if not r.accepted]
        ax.scatter([r.step for r in rejected], [r.agreement for r in rejected], marker="x", color="tab:red", s=60,
                   zorder=3, label="rejected by its limits")
        ax.axhline(min_agreement, color="tab:red", linestyle="--", linewidth=1, label=f"min_agreement {min_agreement:g}")
        ax.set_title(line, fontsize=9)
        _integer_steps(ax)
    _share_y(axes[: len(lines)], [min_agreement] + [v for r in results if r.step > 0
                                                    for v in (r.agreement, r.agreement_heldout)])
    _finish(fig, axes, len(lines), f"{scenario}: label agreement with the previous version", "agreement")
    paths.append(_save(fig, out / "agreement.png"))

    moving = [line for line in lines if any(max(_relative(r), default=0.0) > 0 for r in results
                                            if r.strategy == line and r.step > 0)]
    if moving:
        fig, axes = _panels(len(moving))
        for ax, line in zip(axes, moving):
            rows = [r for r in results if r.strategy == line and r.step > 0]
            width = 0.8 / len(rows)
            for j, r in enumerate(rows):
                drift = _relative(r)
                ax.bar(np.arange(len(drift)) + (j - (len(rows) - 1) / 2) * width, drift, width, label=f"step {r.step}")
            ax.axhline(max_drift, color="tab:red", linestyle="--", linewidth=1, label=f"max_drift {max_drift:g}")
            ax.set_title(line, fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _finish(fig, axes, len(moving), f"{scenario}: how far each centre moved (relative to the neighbour gap)",
                "relative drift", xlabel="cluster id")
        paths.append(_save(fig, out / "drift.png"))
    return paths


def _relative(r: StepResult) -> list[float]:
    """Per cluster: movement over the neighbour gap (as the gate measures it), float noise as 0."""
    scale = r.relative_drift_max / r.drift_max if r.drift_max > NOISE else 0.0
    return [m * scale if m > NOISE else 0.0 for m in r.drift_per_cluster]


def _panels(n: int):
    columns = min(3, n)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.8 * rows + 0.6), squeeze=False)
    return fig, axes.ravel()


def _share_y(axes, values: list[float]) -> None:
    values = [v for v in values if v == v]
    low, high = min(values), max(values)
    margin = max(0.005, 0.1 * (high - low))
    for ax in axes:
        ax.set_ylim(low - margin, min(1.0 + margin, high + margin))


def _finish(fig, axes, used: int, title: str, ylabel: str, xlabel: str = "step") -> None:
    for ax in axes[used:]:
        ax.remove()  # no empty panels
    for ax in axes[:used]:
        ax.grid(alpha=0.3)
        ax.set(xlabel=xlabel, ylabel=ylabel)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)


def _integer_steps(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def plot_frontier(points: list[FrontierPoint], path: Path, title: str, min_agreement: float) -> Path:
    """Agreement on retained samples (x) against ACC gain over frozen (y): a curve per
    swept strategy (points labelled with the knob value), single lines as stars; the
    middle panel zooms on agreement >= ``min_agreement`` - 0.01, the right one shows the
    same zoom with many-to-one ACC (lines that opened new ids count there; it rises with
    the number of ids, so compare ``grow`` with its control ``grow-random``)."""
    curves: dict[str, list[FrontierPoint]] = {}
    for point in points:
        curves.setdefault(point.label.split(" ")[0], []).append(point)
    fig, axes = plt.subplots(1, 3, figsize=(19, 5))
    for ax, gain in zip(axes, ("acc_gain", "acc_gain", "acc_many_gain")):
        for strategy, members in curves.items():
            xs, ys = [p.agreement for p in members], [getattr(p, gain) for p in members]
            if len(members) > 1:
                ax.plot(xs, ys, marker="o", label=strategy)
                for p, x, y in zip(members, xs, ys):
                    if "=" in p.label:
                        ax.annotate(p.label.split("=")[-1], (x, y), fontsize=7, textcoords="offset points",
                                    xytext=(3, 3))
            else:
                ax.scatter(xs, ys, marker="*", s=120, label=strategy, zorder=3)
        ax.axvline(min_agreement, color="grey", linestyle="--", linewidth=1, label=f"min_agreement {min_agreement}")
        ax.set(xlabel="label agreement on retained samples",
               ylabel=f"{'many-to-one ' if gain == 'acc_many_gain' else ''}ACC gain over frozen (new window)")
        ax.grid(alpha=0.3)
    zoomed = [p for p in points if p.agreement >= min_agreement - 0.01]
    for ax, gain in zip(axes[1:], ("acc_gain", "acc_many_gain")):
        if zoomed:
            gains = [getattr(p, gain) for p in zoomed]
            margin = max(1e-3, 0.1 * (max(gains) - min(gains)))
            ax.set(xlim=(min_agreement - 0.01, 1.0005), ylim=(min(gains) - margin, max(gains) + margin))
    axes[0].set_title(title)
    axes[1].set_title(f"zoom: agreement >= {min_agreement - 0.01:.2f}")
    axes[2].set_title("zoom, many-to-one ACC (K may grow; see grow-random)")
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
