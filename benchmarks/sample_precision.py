"""Does an update notice that the reservoir stored its window in bfloat16? The same update
on the same window, once in float32 and once as the reservoir's bfloat16 rounding, side
by side.

For each data set and seed: train DEC (``--config``, else the defaults) on one half of the
data, take a window of ``--window`` rows from the other half (its first half marked
retained, as after a cycle), run each strategy on the window as float32 and as bfloat16
with the same seed, and print:

- ``labels differ``: on how many rows of all the data the two updated models disagree;
- ``centres apart``: the largest distance between their centres, relative to the gap
  between neighbouring centres (``centre_drift``'s relative measure);
- ``update moved``: each update's own agreement with the old model on all the data, the
  scale a difference between the two is to be read against.

    python benchmarks/sample_precision.py                        # wordnet, seeds 0 1 2, translate and ewc
    python benchmarks/sample_precision.py --datasets mnist --limit 20000
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from dec_quality import load  # noqa: E402  (benchmarks/ is the script's directory)
from stream_dec.config import Config, load_config
from stream_dec.continual import make_strategy
from stream_dec.continual.base import Window
from stream_dec.model import ModelVersion
from stream_dec.model.metrics import centre_drift, label_agreement
from stream_dec.model.training import fit_dec
from stream_dec.stream.reservoir import from_bfloat16, to_bfloat16


def compare(config: Config, X: np.ndarray, n_clusters: int, seed: int, window_size: int,
            strategies: list[str]) -> list[str]:
    """One line per strategy for one data set and seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    train, rest = X[order[: len(X) // 2]], X[order[len(X) // 2:]]
    train_config = dataclasses.replace(config.train, seed=seed)
    model, _ = fit_dec(train, config.model, train_config, n_clusters)
    current = ModelVersion.from_model(model, version=1)
    window = rest[:window_size]
    retained = np.arange(len(window)) < len(window) // 2
    old_labels, _ = current.to_model().predict(X)
    rounded = from_bfloat16(to_bfloat16(window))
    changed = rounded != window
    lines = [f"seed {seed}: bfloat16 changed {changed.mean():.1%} of the window's values, by up to "
             f"{np.max(np.abs(rounded - window)[changed] / np.abs(window)[changed]):.2e} of each, relative"]
    for name in strategies:
        updated = {}
        for precision, rows in (("float32", window), ("bfloat16", rounded)):
            torch.manual_seed(seed)
            proposal = make_strategy(name, config, seed=seed).propose(current, Window.of(rows, retained))
            updated[precision] = proposal.model.eval()
        labels = {precision: model.predict(X)[0] for precision, model in updated.items()}
        apart = centre_drift(*(model.cluster_centres().detach().cpu().numpy() for model in updated.values()))
        differ = int(np.sum(labels["float32"] != labels["bfloat16"]))
        lines.append(f"seed {seed} {name:9} labels differ on {differ} of {len(X):,} rows"
                     f"  centres apart {apart.relative_max:.5f}  update moved "
                     + " / ".join(f"{label_agreement(old_labels, labels[p]):.4f}" for p in labels)
                     + " (float32 / bfloat16)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=["wordnet", "mnist"], default=["wordnet"])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", default="translate,ewc")
    parser.add_argument("--window", type=int, default=10_000, help="window rows ([reservoir] capacity)")
    parser.add_argument("--limit", type=int, default=None, help="rows of each data set (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = load_config(args.config) if args.config else Config()
    for dataset in args.datasets:
        X, y = load(dataset, args.limit)
        print(f"{dataset}: {len(X):,} rows, {X.shape[1]}-d, K = {len(np.unique(y))}", flush=True)
        for seed in args.seeds:
            for line in compare(config, X, len(np.unique(y)), seed, args.window, args.strategies.split(",")):
                print(line, flush=True)


if __name__ == "__main__":
    main()
