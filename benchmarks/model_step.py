"""The labeler's model step alone: DEC's network as the model defines it against the
:class:`~stream_dec.model.predictor.Head` that ``Predictor`` labels through on the CPU.

Times, on 2,048-row batches of real rows (two wordnet embeddings side by side, cut to
``--dim``) with the benchmarks' model (centres at the codes of 24 rows, one torch
thread), in interleaved rounds:

- ``network``: ``model(x).max(dim=1)``: the codes, normalised (cosine geometry), every
  squared distance by ``cdist``, Q, its maximum;
- ``head``: :class:`Head`: one product for the codes, one (d, K) product for their
  scores against the centres, and their lengths;
- ``product``: the last layer's product alone (``addmm``): the floor of either.

Prints the thread's CPU microseconds per row of each (median over the rounds), the
paired ratio network / head, and how many labels the two give differently over all
``--rows`` (the check: none, but for ties to float32 rounding).

Run from the repository root::

    python benchmarks/model_step.py
    python benchmarks/model_step.py --dim 384 --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from peers import embeddings, spread_model
from stream_dec.model.predictor import Head


def cpu_us_per_row(step, batches: list[torch.Tensor], repeats: int) -> float:
    """Thread CPU microseconds per row of ``step`` over every batch, ``repeats`` times."""
    step(batches[0])  # warm: first-call allocations are not the step's cost
    started = time.thread_time()
    for _ in range(repeats):
        for batch in batches:
            step(batch)
    return (time.thread_time() - started) / (repeats * sum(len(b) for b in batches)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--rows", type=int, default=20_480, help="rows, in batches of --batch")
    parser.add_argument("--batch", type=int, default=2048, help="the labeler's max_batch")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the rows in each timing")
    args = parser.parse_args()
    torch.set_num_threads(1)  # [labeler] threads' default
    X = np.ascontiguousarray(embeddings(args.dim)[: args.rows], dtype=np.float32)
    model = spread_model(args.dim, X).to_model()
    head = Head(model)
    batches = list(torch.from_numpy(X).split(args.batch))
    layer = model.autoencoder.encoder[-1]
    steps = {"network": lambda x: model(x).max(dim=1), "head": head,
             "product": lambda x: torch.addmm(layer.bias, x, layer.weight.T)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, step in steps.items():
                times[name].append(cpu_us_per_row(step, batches, args.repeats))
        ours = torch.cat([head(b)[0] for b in batches])
        theirs = torch.cat([model(b).argmax(dim=1) for b in batches])
    differ = int((ours != theirs).sum())
    print(f"{len(X):,} x {args.dim}-d float32 in batches of {args.batch}, {model.n_clusters} centres, "
          f"dims {model.dims}, {args.rounds} interleaved rounds, one torch thread")
    print("| step | CPU us per row (median, range) | network / step, paired per round (median) |\n|---|---|---|")
    for name, runs in times.items():
        ratios = [a / b for a, b in zip(times["network"], runs)]
        print(f"| {name} | {statistics.median(runs):.2f} ({min(runs):.2f}-{max(runs):.2f}) | "
              f"{statistics.median(ratios):.2f}x |")
    print(f"labels that differ between network and head: {differ} of {len(X):,}")


if __name__ == "__main__":
    main()
