"""The stability/accuracy frontier of every update strategy, on the shared sets.

For each data set, the ``shift`` scenario of ``stream-dec evaluate --sweep``: every
tunable strategy runs its knob's grid (translate ratio, recentre ratio, refit anchor,
ewc lam, anchored distill, grow budget), each value its own line of versions from the
same initial model, beside frozen, retrain and MiniBatchKMeans (and ``grow-random``,
grow's control: ids opened by the same rules at random places, since many-to-one ACC
rises with the number of ids whatever they are). Prints the frontier table (means over
the steps) and the targets of the stability issue:

- a line with agreement >= 0.98 at every step that closes >= 50% of the
  frozen -> retrain ACC gap, at <= 10% of retrain's time;
- the chosen strategy's curve above translate's and refit's: every translate/refit
  point is dominated (agreement and gain no better) by some point of its curve (for
  translate, recentre and refit the curve starts at frozen: ratio 0, anchor -> inf); and the
  same within the noise: the translate/refit points that are clearly above every point
  of the curve (``clearly_above``: better in agreement or ACC beyond a paired 95%
  t-interval over the steps; with --seeds, over all of them).

Beside them, the ceiling at agreement 0.98 (``agreement_ceiling``): the most ACC any
update that labels by the embedding alone can gain, in expectation, at each step; where
it is below half the gap, the first target is out of reach for every strategy. And the
``retrain-cells-oracle`` row (``retrain_cells``): the window's cells (frozen id, retrain
id) relabelled with the true classes, most gain per retained label changed first, up to
agreement 0.98 in expectation: how much an update that finds only the structure retrain
finds could gain within the limit.

Writes ``benchmarks/results/frontier-<dataset>.{md,png,json}`` (the table and the verdicts, the
plot, every line's result at every step). Run from the repository root::

    python benchmarks/frontier.py --datasets wordnet
    python benchmarks/frontier.py --datasets mnist --config config/mnist.toml --pretrain-epochs 50
    python benchmarks/frontier.py --datasets wordnet --seeds 0 1 2
    python benchmarks/frontier.py --datasets wordnet --seeds 0 1 2 --from-json  # verdicts again, no training

(figures in README; CPU, 2 cores: about 3-5 min for wordnet, 9-15 min for mnist, by host).
``--seeds`` runs the scenario once per seed (each seed draws other class roles and
samples, so its initial model is trained on another first window) and pools the steps, so
every verdict covers them all; it writes ``frontier-<dataset>-seeds<...>.{md,png}``, with a
second table: each seed on its own.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from continual import experiment_config, experiment_parser  # benchmarks/ is the script's directory
from dec_quality import load
from stream_dec_lab.evaluate import GROW_RANDOM
from stream_dec_lab.evaluate import (RETRAIN_CELLS_ORACLE, StepResult, ceiling_point, ceilings, clearly_above,
                                           evaluate, frontier, frontier_table, gap_closed, sweep_lines)
from stream_dec_lab.plots import plot_frontier

RESULTS = Path(__file__).resolve().parent / "results"
STEP_FIELDS = ("step", "strategy", "acc", "acc_many", "nmi", "agreement", "agreement_heldout", "relative_drift_max",
               "seconds", "accepted", "clusters")
"""What the .json keeps of each step result (enough to redo every verdict)."""
STAND_STILL = ("translate", "recentre", "refit")
"""Strategies that are exactly ``frozen`` at one end of their knob (ratio 0; refit's anchor -> inf pins
every parameter): frozen is a point of their curves. Not ewc (lam -> inf leaves parameters with zero
Fisher free), anchored (distillation holds the retained samples only) or grow (budget 0 may still open
ids where no retained sample is)."""


def load_steps(path: Path) -> list[StepResult]:
    """The step results an earlier run saved (their ``STEP_FIELDS``; the other fields blank)."""
    blank = {"scenario": "shift", "ari": 0.0, "acc_step0": 0.0, "drift_mean": 0.0, "drift_max": 0.0,
             "relative_drift_mean": 0.0, "violations": (), "drift_per_cluster": ()}
    return [StepResult(**{**blank, **row}) for row in json.loads(path.read_text())]


def targets(results, points, strategy: str) -> list[str]:
    """Verdicts for the best line of ``strategy`` and the dominance of its curve."""
    retrain = next(p for p in points if p.label == "retrain")
    lines = []
    mine = [p for p in points if p.label.startswith(strategy + " ")]
    safe = [p for p in mine if min(r.agreement for r in results if r.strategy == p.label and r.step > 0) >= 0.98]
    if safe:
        best = max(safe, key=lambda p: p.acc_gain)
        gaps = gap_closed(results, best.label)
        lines.append(f"{strategy}: best line with agreement >= 0.98 at every step: {best.label} (held-out "
                     f"agreement {best.agreement_heldout:.4f}), gain {best.acc_gain:+.4f}, gap closed per step "
                     f"{[f'{g:.0%}' for g in gaps.values()]} "
                     f"(target >= 50%: {'ok' if min(gaps.values()) >= 0.5 else 'MISSED'}), time "
                     f"{best.seconds:.2f}s vs retrain {retrain.seconds:.2f}s "
                     f"({'ok' if best.seconds <= 0.1 * retrain.seconds else 'MISSED'})")
    else:
        lines.append(f"{strategy}: no line keeps agreement >= 0.98 at every step (MISSED)")
    if strategy in STAND_STILL:  # the curve's stiff end, for the dominance checks
        mine = mine + [p for p in points if p.label == "frozen"]
    for rival in ("translate", "refit"):
        theirs = [p for p in points if p.label.startswith(rival + " ")]
        beaten = [p for p in theirs if any(m.agreement >= p.agreement and m.acc_gain >= p.acc_gain for m in mine)]
        lines.append(f"{strategy} dominates {len(beaten)}/{len(theirs)} {rival} points "
                     f"({'ok' if len(beaten) == len(theirs) else 'MISSED'})")
        above = [p.label for p in theirs if all(clearly_above(results, p.label, m.label) for m in mine)]
        lines.append(f"{strategy} matches or beats {len(theirs) - len(above)}/{len(theirs)} {rival} points within "
                     f"the noise (paired 95% t-interval over the steps, agreement and ACC); clearly above all of "
                     f"{strategy}'s curve: {above or 'none'}")
    return lines


def control_verdicts(points) -> list[str]:
    """``grow`` against ``grow-random`` (random candidates, same rules) at each budget: the
    many-to-one gain that more ids alone bring, and what finding the structure adds."""
    by = {p.label: p for p in points}
    lines = []
    for p in points:
        control = by.get(p.label.replace("grow ", f"{GROW_RANDOM} ", 1)) if p.label.startswith("grow ") else None
        if control:
            lines.append(f"{p.label}: many-to-one gain {p.acc_many_gain:+.4f} with {p.clusters} ids at "
                         f"{p.agreement:.4f} / {p.agreement_heldout:.4f} held out; {GROW_RANDOM} "
                         f"{control.acc_many_gain:+.4f} with {control.clusters} ids at {control.agreement:.4f} / "
                         f"{control.agreement_heldout:.4f}")
    return lines


def seed_table(per_seed: dict[int, list]) -> str:
    """Each line's ACC gain, many-to-one gain and agreement on its own under every seed."""
    seeds = list(per_seed)
    rows = {}
    for seed in seeds:
        for p in per_seed[seed]:
            rows.setdefault(p.label, {})[seed] = p
    head = "| line | " + " | ".join(f"seed {s}: gain / many-to-one / agreement" for s in seeds) + " |"
    lines = [head, "|---" * (len(seeds) + 1) + "|"]
    for label, by_seed in rows.items():
        cells = [f"{by_seed[s].acc_gain:+.4f} / {by_seed[s].acc_many_gain:+.4f} / {by_seed[s].agreement:.4f}"
                 if s in by_seed else "-" for s in seeds]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = experiment_parser(__doc__)
    parser.add_argument("--strategies", default="translate,recentre,refit,ewc,anchored,grow")
    parser.add_argument("--from-json", action="store_true",
                        help="redo the table, verdicts and plot from the .json step results of an earlier run with the "
                             "same data set and seeds, without training")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="run the scenario once per seed and pool the steps (seed i's steps follow seed i-1's; "
                             "the table and verdicts cover them all, a second table shows each seed); default: --seed")
    args = parser.parse_args()
    config = experiment_config(args)
    strategies = args.strategies.split(",")
    seeds = args.seeds or [args.seed]
    for dataset in args.datasets:
        X, y = load(dataset, None)
        several = len(seeds) > 1
        name = f"frontier-{dataset}" + (f"-seeds{'-'.join(map(str, seeds))}" if several else "")
        saved = load_steps(RESULTS / f"{name}.json") if args.from_json else None
        results, per_step, per_seed = [], {}, {}
        for i, seed in enumerate(seeds):
            offset = i * args.steps
            if saved is None:
                run = evaluate(X, y, strategies=sweep_lines(strategies, config), config=config, scenario="shift",
                               window=args.window, steps=args.steps, seed=seed)
            else:
                run = [replace(r, step=r.step - offset) for r in saved if offset < r.step <= offset + args.steps]
            ceiling = ceilings(run, y, scenario="shift", window=args.window, steps=args.steps, seed=seed,
                               min_agreement=config.update.min_agreement)
            results += [replace(r, step=r.step + offset) for r in run if r.step > 0]
            per_step.update({step + offset: value for step, value in ceiling.items()})
            per_seed[seed] = frontier(run) + [ceiling_point(ceiling, config.update.min_agreement)]
        points = frontier(results) + [ceiling_point(per_step, config.update.min_agreement)]
        verdicts = [line for strategy in strategies for line in targets(results, points, strategy)]
        out_of_reach = [step for step, (_, closed) in per_step.items() if closed < 0.5]
        verdicts.append(
            f"ceiling at agreement >= {config.update.min_agreement}: gain <= "
            f"{[f'{gain:+.4f}' for gain, _ in per_step.values()]} per step = "
            f"{[f'{closed:.0%}' for _, closed in per_step.values()]} of the gap; >= 50% of the gap is out of reach "
            f"for every update at step(s) {out_of_reach or 'none'}")
        oracle = [r for r in results if r.strategy == RETRAIN_CELLS_ORACLE]
        verdicts.append(
            f"{RETRAIN_CELLS_ORACLE}: the frozen x retrain cells relabelled with the true classes close "
            f"{[f'{g:.0%}' for g in gap_closed(results, RETRAIN_CELLS_ORACLE).values()]} of the gap "
            f"per step at agreement {[f'{r.agreement:.4f}' for r in oracle]} (held out "
            f"{[f'{r.agreement_heldout:.4f}' for r in oracle]})")
        verdicts += control_verdicts(points)
        scope = f"{args.steps} steps"
        if several:
            scope = (f"seeds {', '.join(map(str, seeds))}, {args.steps} steps each, pooled (steps "
                     + ", ".join(f"{args.steps * i + 1}-{args.steps * (i + 1)}: seed {s}" for i, s in enumerate(seeds))
                     + ")")
        report = (f"## {dataset} / shift (window {args.window}, {scope}; means over steps)\n\n"
                  f"{frontier_table(points)}\n\n" + "\n".join(verdicts) + "\n")
        if several:
            report += f"\n### Each seed on its own (means over its steps)\n\n{seed_table(per_seed)}\n"
        print("\n" + report)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.md").write_text(report)
        (RESULTS / f"{name}.json").write_text(json.dumps([{k: getattr(r, k) for k in STEP_FIELDS} for r in results]))
        runs = f"seeds {','.join(map(str, seeds))} x " if several else ""
        plot_frontier(points, RESULTS / f"{name}.png", f"{dataset}, shift: {runs}{args.steps} steps of window "
                      f"{args.window}", config.update.min_agreement)


if __name__ == "__main__":
    main()
