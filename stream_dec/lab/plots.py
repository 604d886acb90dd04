"""PNG plots of an evaluate run: accuracy and agreement per step, drift per cluster, the frontier."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

from stream_dec.lab.evaluate import FrontierPoint, StepResult  # noqa: E402


def plot_steps(results: list[StepResult], out: Path) -> list[Path]:
    """Write ``accuracy.png``, ``agreement.png`` and ``drift.png`` into ``out``; return their paths."""
    strategies = list(dict.fromkeys(r.strategy for r in results if r.step > 0))
    initial = next(r for r in results if r.step == 0)
    paths = []
    for metric, title, name in (("acc", "ACC on the new window", "accuracy.png"),
                                ("agreement", "label agreement on retained samples", "agreement.png")):
        fig, ax = plt.subplots(figsize=(7, 4))
        for strategy in strategies:
            rows = [initial] + [r for r in results if r.strategy == strategy]
            ax.plot([r.step for r in rows], [getattr(r, metric) for r in rows], marker="o", label=strategy)
        ax.set(xlabel="step", ylabel=metric, title=f"{initial.scenario}: {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / name))
    fig, axes = plt.subplots(len(strategies), 1, figsize=(8, 1.6 * len(strategies) + 1), sharex=True, squeeze=False)
    for ax, strategy in zip(axes[:, 0], strategies):
        for r in (r for r in results if r.strategy == strategy):
            ax.plot(range(len(r.drift_per_cluster)), r.drift_per_cluster, marker=".", label=f"step {r.step}")
        ax.set_ylabel(strategy, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(f"{initial.scenario}: centre drift (L2) per cluster")
    axes[0, 0].legend(fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("cluster id")
    paths.append(_save(fig, out / "drift.png"))
    return paths


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
