"""Continual-update targets, checked per step on the shared sets, side by side.

Runs the ``stream-dec evaluate`` experiment (frozen, the default strategy, retrain and
MiniBatchKMeans, plus any ``--also`` strategies) for each data set and scenario, then
prints the table and, for the default strategy at every step, whether it meets the
targets of the continual-update issue:

- label agreement on retained samples >= 0.98 and relative centre drift <= 0.10;
- ACC on the new window >= frozen's;
- in ``shift``: closes >= 50% of the frozen -> retrain ACC gap;
- ACC > MiniBatchKMeans.partial_fit's;
- update time <= 10% of retrain's.

Run from the repository root::

    python benchmarks/continual.py --datasets wordnet --also refit,ewc
    python benchmarks/continual.py --datasets mnist --config config/mnist.toml --pretrain-epochs 20
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from stream_dec.config import load_config
from stream_dec_lab.evaluate import MINIBATCH_KMEANS, evaluate, gap_closed, markdown_table

from dec_quality import load  # noqa: E402  (benchmarks/ is the script's directory)


def check(results, strategy: str, scenario: str) -> list[str]:
    """One line per step with each target's verdict for ``strategy``."""
    by = {(r.step, r.strategy): r for r in results}
    gaps = gap_closed(results, strategy)
    lines = []
    for step in sorted({r.step for r in results if r.step > 0}):
        me, frozen, retrain, peer = (by[(step, s)] for s in (strategy, "frozen", "retrain", MINIBATCH_KMEANS))
        checks = {
            "agreement>=0.98": me.agreement >= 0.98,
            "drift<=0.10": me.relative_drift_max <= 0.10,
            "acc>=frozen": me.acc >= frozen.acc,
            "acc>minibatch-kmeans": me.acc > peer.acc,
            "time<=10%retrain": me.seconds <= 0.1 * retrain.seconds,
        }
        if scenario == "shift":
            checks["gap_closed>=0.5"] = gaps[step] >= 0.5
        verdict = " ".join(f"{name}:{'ok' if ok else 'MISS'}" for name, ok in checks.items())
        lines.append(f"step {step}: agreement {me.agreement:.4f} drift {me.relative_drift_max:.4f} "
                     f"acc {me.acc:.4f} (frozen {frozen.acc:.4f}, retrain {retrain.acc:.4f}, mbk {peer.acc:.4f}) "
                     f"gap closed {gaps[step]:+.2f} time {me.seconds:.2f}s vs {retrain.seconds:.2f}s | {verdict}")
    return lines


def experiment_parser(doc: str) -> argparse.ArgumentParser:
    """Arguments shared by the experiment benchmarks (data sets, config, window, steps, seed)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=["wordnet", "mnist"], default=["wordnet"])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--window", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-epochs", type=int, help="override train.pretrain_epochs (CPU budget)")
    return parser


def experiment_config(args: argparse.Namespace):
    """The config file's settings, with ``--pretrain-epochs`` applied."""
    logging.basicConfig(level=logging.WARNING)
    config = load_config(args.config)
    if args.pretrain_epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, pretrain_epochs=args.pretrain_epochs))
    return config


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--scenarios", nargs="+", choices=["replace-half", "shift"], default=["replace-half", "shift"])
    parser.add_argument("--also", default="", help="extra strategies to run beside the default, comma-separated")
    parser.add_argument("--out", type=Path, help="write each run's results.md here")
    args = parser.parse_args()
    config = experiment_config(args)
    default = config.update.strategy
    strategies = list(dict.fromkeys(["frozen", default, *filter(None, args.also.split(",")), "retrain"]))
    for dataset in args.datasets:
        X, y = load(dataset, None)
        for scenario in args.scenarios:
            results = evaluate(X, y, strategies=strategies, config=config, scenario=scenario,
                               window=args.window, steps=args.steps, seed=args.seed)
            print(f"\n## {dataset} / {scenario} (window {args.window}, {args.steps} steps, default strategy: {default})\n")
            print(markdown_table(results))
            for strategy in strategies:
                if strategy not in ("frozen", "retrain"):
                    print(f"\n{strategy}{' (default)' if strategy == default else ''}:")
                    print("\n".join(check(results, strategy, scenario)))
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{dataset}-{scenario}.md").write_text(markdown_table(results) + "\n")


if __name__ == "__main__":
    main()
