"""DEC (and IDEC) against KMeans on the shared labelled sets, side by side in one run.

For each seed: pretrain the autoencoder once (or load it from ``--pretrained-dir``),
then self-train each variant from that same autoencoder (``dec``: the config as given;
``idec``: the reconstruction loss kept with ``--idec-weight``, and the IDEC paper's
optimiser, Adam at 0.001, unless ``--idec-optimiser``/``--idec-lr`` say otherwise), and
run KMeans (same K, same data, 10 restarts). ``AE+KMeans`` is the start both variants
share: KMeans in the pretrained latent space (the config's restarts), before any
self-training, as the DEC and IDEC papers report it. Prints ACC/NMI/ARI and seconds per
row, then means and the differences to KMeans. Also times default-config training of
10,000 x 384 (target: under 60 s on a 2-core CPU).

Run from the repository root::

    python benchmarks/dec_quality.py --dataset wordnet --seeds 0 1 2
    python benchmarks/dec_quality.py --dataset mnist --config config/mnist.toml \\
        --variants dec idec --seeds 0 1 2 --pretrained-dir runs/pretrained --skip-timing

``--dataset digits`` is an image set the configs were not tuned on: scikit-learn's bundled
8 x 8 handwritten digits (1,797 images of 64 pixels, values 0-16, divided by 16), for
checking that ``config/mnist.toml``'s protocol carries over.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from stream_dec.config import load_config
from stream_dec.model import ModelVersion
from stream_dec.model.metrics import clustering_scores
from stream_dec.model.training import fit_dec

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load(name: str, limit: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        digits = load_digits()
        X, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    else:
        with np.load(DATA / f"{'wordnet_nouns' if name == 'wordnet' else 'mnist'}.npz") as archive:
            X, y = archive["X"].astype(np.float32), archive["y"].astype(np.int64)
    X /= {"mnist": 255.0, "digits": 16.0}.get(name, 1.0)  # pixels to [0, 1]
    if limit and limit < len(X):
        rows = np.random.default_rng(seed).choice(len(X), limit, replace=False)
        X, y = X[rows], y[rows]
    return X, y


def row(name: str, seed: int | str, scores: dict, seconds: float) -> str:
    return f"| {name:9} | {seed!s:>4} | {scores['acc']:.4f} | {scores['nmi']:.4f} | {scores['ari']:.4f} | {seconds:8.1f} |"


def pretrained_for(args, config, X, k, seed):
    """The seed's pretrained model: loaded from ``--pretrained-dir`` when there, else trained (and saved)."""
    folder = args.pretrained_dir / f"{args.dataset}-seed{seed}" if args.pretrained_dir else None
    if folder is not None and (folder / "model.json").exists():
        return ModelVersion.load(folder).to_model(), 0.0
    started = time.perf_counter()
    train = dataclasses.replace(config.train, seed=seed, max_epochs=0, n_init=1)
    _, report = fit_dec(X, config.model, train, k, keep_pretrained=True)
    seconds = report.seconds["pretrain"]
    print(f"seed {seed}: pretrained in {seconds:.0f} s, reconstruction {report.pretrain_loss:.5f}", flush=True)
    if folder is not None:
        ModelVersion.from_model(report.pretrained, version=1, strategy="pretrain",
                                metrics={"pretrain_loss": report.pretrain_loss}).save(folder, overwrite=True)
    return report.pretrained, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["wordnet", "mnist", "digits"], default="wordnet")
    parser.add_argument("--config", type=Path, help="TOML config (default: built-in defaults)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--limit", type=int, help="use a random subset of this many rows")
    parser.add_argument("--variants", nargs="+", choices=["dec", "idec"], default=["dec"],
                        help="dec: the config's self-training; idec: the same with the reconstruction loss kept")
    parser.add_argument("--idec-weight", type=float, default=10.0,
                        help="reconstruction_weight of the idec variant (10 = IDEC's gamma 0.1: L_r + 0.1 L_c)")
    parser.add_argument("--idec-optimiser", choices=["adam", "sgd"], default="adam",
                        help="self-training optimiser of the idec variant (the IDEC paper's: adam)")
    parser.add_argument("--idec-lr", type=float, default=0.001,
                        help="self-training learning rate of the idec variant (the IDEC paper's: 0.001)")
    parser.add_argument("--pretrained-dir", type=Path,
                        help="keep each seed's pretrained autoencoder here and reuse it on the next run")
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
    print(f"{args.dataset}: {X.shape[0]} x {X.shape[1]}, K={k}, config={args.config or 'defaults'}, "
          f"train={config.train}")
    if "idec" in args.variants:
        print(f"idec: reconstruction_weight={args.idec_weight}, optimiser={args.idec_optimiser}, lr={args.idec_lr}")
    print("| method    | seed | ACC    | NMI    | ARI    | seconds  |\n|---|---|---|---|---|---|")
    names = {"dec": "DEC", "idec": "IDEC"}
    results: dict[str, list[dict]] = {names[v]: [] for v in args.variants} | {"AE+KMeans": [], "KMeans": []}
    for seed in args.seeds:
        pretrained, pretrain_seconds = pretrained_for(args, config, X, k, seed)
        started = time.perf_counter()  # no self-training: the centres stay the latent KMeans centroids
        model, _ = fit_dec(X, config.model, dataclasses.replace(config.train, seed=seed, max_epochs=0), k,
                           pretrained=pretrained)
        scores = clustering_scores(y, model.predict(X)[0])
        scores["seconds"] = time.perf_counter() - started + pretrain_seconds
        results["AE+KMeans"].append(scores)
        print(row("AE+KMeans", seed, scores, scores["seconds"]), flush=True)
        for variant in args.variants:
            train = dataclasses.replace(config.train, seed=seed)
            if variant == "idec":
                train = dataclasses.replace(train, reconstruction_weight=args.idec_weight,
                                            optimiser=args.idec_optimiser, lr=args.idec_lr)
            started = time.perf_counter()
            model, report = fit_dec(X, config.model, train, k, pretrained=pretrained)
            scores = clustering_scores(y, model.predict(X)[0])
            scores["seconds"] = time.perf_counter() - started + pretrain_seconds
            results[names[variant]].append(scores)
            print(row(names[variant], seed, scores, scores["seconds"]),
                  f"<- {report.self_train.iterations} iterations, converged {report.self_train.converged}", flush=True)
        started = time.perf_counter()
        kmeans = clustering_scores(y, KMeans(k, n_init=10, random_state=seed).fit_predict(X))
        kmeans["seconds"] = time.perf_counter() - started
        results["KMeans"].append(kmeans)
        print(row("KMeans", seed, kmeans, kmeans["seconds"]), flush=True)
    means = {name: {m: float(np.mean([r[m] for r in rs])) for m in ("acc", "nmi", "ari", "seconds")}
             for name, rs in results.items()}
    for name, scores in means.items():
        print(row(name, "mean", scores, scores["seconds"]))
    for name in (names[v] for v in args.variants):
        gap = {m: means[name][m] - means["KMeans"][m] for m in ("acc", "nmi")}
        verdict = f"{name} beats KMeans" if gap["acc"] > 0 and gap["nmi"] > 0 else f"{name} does NOT beat KMeans"
        print(f"{name} - KMeans: ACC {gap['acc']:+.4f}, NMI {gap['nmi']:+.4f} -> {verdict} "
              f"(mean of {len(args.seeds)} seeds)")
    if not args.skip_timing:
        Xt, _ = load("wordnet", 10_000)
        started = time.perf_counter()
        fit_dec(Xt, config.model, config.train, 24)
        seconds = time.perf_counter() - started
        print(f"training 10,000 x 384 with this config: {seconds:.1f} s (target < 60 s): {'ok' if seconds < 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
