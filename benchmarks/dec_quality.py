"""DEC against KMeans on the shared labelled sets, side by side in one run.

For each seed: train DEC with the given config (default: the built-in defaults) and
KMeans (same K, same data, n_init=10) and print ACC/NMI/ARI and seconds, then the
means and the DEC - KMeans differences. Also times default-config training of
10,000 x 384 (target: under 60 s on a 2-core CPU).

Run from the repository root::

    python benchmarks/dec_quality.py --dataset wordnet --seeds 0 1 2
    python benchmarks/dec_quality.py --dataset mnist --config config/mnist.toml --seeds 0
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans

from stream_dec.config import load_config
from stream_dec.model.metrics import clustering_scores
from stream_dec.model.training import fit_dec

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load(name: str, limit: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA / f"{'wordnet_nouns' if name == 'wordnet' else 'mnist'}.npz") as archive:
        X, y = archive["X"].astype(np.float32), archive["y"].astype(np.int64)
    if name == "mnist":
        X /= 255.0
    if limit and limit < len(X):
        rows = np.random.default_rng(seed).choice(len(X), limit, replace=False)
        X, y = X[rows], y[rows]
    return X, y


def row(name: str, seed: int | str, scores: dict, seconds: float) -> str:
    return f"| {name:8} | {seed!s:>4} | {scores['acc']:.4f} | {scores['nmi']:.4f} | {scores['ari']:.4f} | {seconds:8.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["wordnet", "mnist"], default="wordnet")
    parser.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--limit", type=int, help="use a random subset of this many rows")
    parser.add_argument("--skip-timing", action="store_true", help="skip the 10k x 384 timing run")
    parser.add_argument("--pretrain-epochs", type=int, help="override train.pretrain_epochs (CPU budget)")
    parser.add_argument("--max-epochs", type=int, help="override train.max_epochs (CPU budget)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = load_config(args.config)
    overrides = {k: v for k, v in (("pretrain_epochs", args.pretrain_epochs), ("max_epochs", args.max_epochs))
                 if v is not None}
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, **overrides))
    X, y = load(args.dataset, args.limit)
    k = int(np.unique(y).size)
    print(f"{args.dataset}: {X.shape[0]} x {X.shape[1]}, K={k}, config={args.config or 'defaults'}")
    print("| method   | seed | ACC    | NMI    | ARI    | seconds  |\n|---|---|---|---|---|---|")
    results: dict[str, list[dict]] = {"DEC": [], "KMeans": []}
    for seed in args.seeds:
        started = time.perf_counter()
        model, _ = fit_dec(X, config.model, dataclasses.replace(config.train, seed=seed), k)
        dec = clustering_scores(y, model.predict(X)[0]) | {"seconds": time.perf_counter() - started}
        started = time.perf_counter()
        kmeans = clustering_scores(y, KMeans(k, n_init=10, random_state=seed).fit_predict(X))
        kmeans["seconds"] = time.perf_counter() - started
        for name, scores in (("DEC", dec), ("KMeans", kmeans)):
            results[name].append(scores)
            print(row(name, seed, scores, scores["seconds"]), flush=True)
    means = {name: {m: float(np.mean([r[m] for r in rs])) for m in ("acc", "nmi", "ari", "seconds")}
             for name, rs in results.items()}
    for name, scores in means.items():
        print(row(name, "mean", scores, scores["seconds"]))
    gap = {m: means["DEC"][m] - means["KMeans"][m] for m in ("acc", "nmi")}
    verdict = "DEC beats KMeans" if gap["acc"] > 0 and gap["nmi"] > 0 else "DEC does NOT beat KMeans"
    print(f"DEC - KMeans: ACC {gap['acc']:+.4f}, NMI {gap['nmi']:+.4f} -> {verdict} (mean of {len(args.seeds)} seeds)")
    if not args.skip_timing:
        Xt, _ = load("wordnet", 10_000)
        started = time.perf_counter()
        fit_dec(Xt, config.model, config.train, 24)
        seconds = time.perf_counter() - started
        print(f"training 10,000 x 384 with this config: {seconds:.1f} s (target < 60 s): {'ok' if seconds < 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
