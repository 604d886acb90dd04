"""PNG plots of an evaluate run: accuracy and agreement per step, drift per cluster."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

from stream_dec.continual.evaluate import StepResult  # noqa: E402


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


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
