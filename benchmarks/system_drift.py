"""A drift run through the whole system: broker, Redis, labeler, updater, versions topic.

Replays the full wordnet_nouns set through the embeddings topic following the ``shift``
scenario (half of the classes start rare and become common, a quarter fade out),
starting from an empty system: the labeler samples the first window into the reservoir,
the updater trains version 1, and every later step's new half-window makes the updater
cycle the reservoir, run the configured strategy behind the promotion gate and publish
(or keep the current version). Prints per version: ACC of the labels on the labels
topic against the true classes beside frozen version 1 and the parent version labelling
the same samples, label agreement with the previous version, relative drift, update
seconds and how long the labeler took to switch; then every gate decision.
(The same machinery as ``stream-dec demo``: :mod:`stream_dec_lab.demo`.)

Run from the repository root::

    python benchmarks/system_drift.py [--window 4000] [--steps 3] [--config FILE] [--strategy NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from stream_dec.config import load_config
from stream_dec_lab.demo import DriftRun, isolated, markdown
from stream_dec.local import LocalServices

from dec_quality import load  # noqa: E402  (benchmarks/ is the script's directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--config", type=Path, help="TOML config (default: the defaults)")
    parser.add_argument("--strategy", help="[update] strategy (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    X, y = load("wordnet", None)
    base = load_config(args.config)
    strategy = args.strategy or base.update.strategy
    config = dataclasses.replace(
        base, train=dataclasses.replace(base.train, device="cpu"),
        update=dataclasses.replace(base.update, strategy=strategy),
        labeler=dataclasses.replace(base.labeler, device="cpu", log_interval_s=3600.0),
        updater=dataclasses.replace(base.updater, poll_s=0.2),  # default 15 s lease, renewed while training
    )
    with LocalServices() as services:
        run = DriftRun(isolated(config, services.bootstrap, services.redis_url), X, y,
                       window=args.window, steps=args.steps, seed=args.seed)
        result = run.run()
    settings = getattr(config.update, strategy, None)
    print(f"shift scenario, window {args.window}, {args.steps} steps, strategy {strategy}"
          f"{f' ({settings})' if settings else ''}: "
          f"{result.produced} inputs, {sum(r.labels for r in result.rows)} labels, {len(result.rows)} versions")
    print(markdown(result))


if __name__ == "__main__":
    main()
