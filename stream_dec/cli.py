"""The ``stream-dec`` command line.

Each sub-command is a thin shell: parse arguments, load files and config, call the
library, print one JSON line with the result. Expected failures
(:class:`~stream_dec.errors.StreamDecError`) end in one ``stream-dec: error: ...``
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import orjson

from stream_dec import __version__
from stream_dec.config import load_config
from stream_dec.errors import DataError, StreamDecError
from stream_dec.io import Dataset, load_dataset
from stream_dec.model import ModelVersion, fit_dec, resolve_device
from stream_dec.model.metrics import clustering_scores

log = logging.getLogger("stream_dec")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-dec",
        description="Continual clustering of embedding streams with Deep Embedded Clustering (DEC).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log verbosity on stderr (default: INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a DEC model on an embedding file",
                                description="Pretrain the autoencoder, initialise centres with KMeans, "
                                            "self-train, and write version 1 of the model to MODEL_DIR.")
    train.add_argument("--data", required=True, type=Path, help="embeddings: .npz (X, optional y), .npy or .csv")
    train.add_argument("--out", required=True, type=Path, metavar="MODEL_DIR", help="directory to write the model to")
    train.add_argument("--config", type=Path, help="TOML config (default: built-in defaults, see config/default.toml)")
    train.add_argument("--clusters", type=int, metavar="K",
                       help="number of clusters (default: distinct labels in the file, else model.clusters)")
    train.add_argument("--seed", type=int, help="random seed (default: train.seed from the config)")
    train.set_defaults(handler=run_train)

    predict = commands.add_parser("predict", help="label an embedding file with a trained model",
                                  description="Write the cluster id of every row (int64 .npy); when the file "
                                              "has labels, print one JSON line with acc, nmi and ari.")
    predict.add_argument("--model", required=True, type=Path, metavar="MODEL_DIR", help="directory written by train")
    predict.add_argument("--data", required=True, type=Path, help="embeddings: .npz, .npy or .csv")
    predict.add_argument("--out", type=Path, default=Path("labels.npy"), metavar="LABELS.npy",
                         help="where to write the cluster ids (default: labels.npy)")
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    predict.set_defaults(handler=run_predict)
    return parser


def run_train(args: argparse.Namespace) -> dict:
    config = load_config(args.config)
    data = load_dataset(args.data)
    if args.seed is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=args.seed))
    clusters = args.clusters or data.n_classes or config.model.clusters
    if clusters < 2 or clusters > len(data.X):
        raise DataError(f"{data.path}: cannot make {clusters} clusters from {len(data.X)} rows (need 2 <= K <= rows)")
    model, report = fit_dec(data.X, config.model, config.train, clusters)
    metrics = {"pretrain_loss": report.pretrain_loss, "loss": report.self_train.loss,
               "label_change": report.self_train.label_change}
    metrics |= _scores(model, data)
    ModelVersion.from_model(model, version=1, strategy="train", metrics=metrics).save(args.out)
    return {"model": str(args.out), "version": 1, "clusters": clusters, "dims": list(model.dims),
            "epochs": round(report.self_train.epochs, 2), "converged": report.self_train.converged,
            "seconds": round(sum(report.seconds.values()), 2), **metrics}


def run_predict(args: argparse.Namespace) -> dict:
    version = ModelVersion.load(args.model)
    data = load_dataset(args.data)
    _check_width(version, data)
    model = version.to_model(resolve_device(args.device))
    labels, _ = model.predict(data.X)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, labels)
    result = {"out": str(args.out), "rows": len(labels), "version": version.header.version}
    if data.y is not None:
        result |= clustering_scores(data.y, labels)
    return result


def _check_width(version: ModelVersion, data: Dataset) -> None:
    if data.dim != version.header.dims[0]:
        raise DataError(f"{data.path}: embeddings have {data.dim} dims, the model expects {version.header.dims[0]}")


def _scores(model, data: Dataset) -> dict[str, float]:
    if data.y is None:
        return {}
    labels, _ = model.predict(data.X)
    return clustering_scores(data.y, labels)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stream-dec`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = args.handler(args)
    except StreamDecError as exc:
        print(f"stream-dec: error: {exc}", file=sys.stderr)
        return 2
    if result is not None:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    return 0
