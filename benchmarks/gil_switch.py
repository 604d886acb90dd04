"""The model step on a thread of its own, beside a thread running Python: what the
interpreter's switch interval does to it.

Every torch operation of ``Predictor.predict`` releases the GIL while it computes and
takes it back when it returns. While another thread runs Python, taking it back waits
up to the switch interval (``sys.setswitchinterval``; Python's default is 5 ms). This
script times ``Predictor.predict`` on 2,048 real 768-d rows (two wordnet embeddings
side by side), the benchmarks' default model, one torch thread:

- alone, on the main thread;
- on a second thread for ``--seconds``, while the main thread runs a pure-Python loop,
  at each ``--intervals`` value.

It prints the model step's wall and CPU time per row, and the Python loop's
iterations relative to the loop run alone.

Run from the repository root::

    python benchmarks/gil_switch.py
    python benchmarks/gil_switch.py --intervals 0.005 0.0002 --seconds 5
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np
import torch

from labeler_throughput import default_model
from peers import embeddings
from stream_dec.model.predictor import Predictor


def model_step(predictor: Predictor, X: np.ndarray, seconds: float) -> tuple[float, float]:
    """Wall and CPU microseconds per row of ``predictor.predict(X)``, repeated for ``seconds``."""
    torch.set_num_threads(1)  # a new thread starts with torch's default, not the caller's
    calls, ended = 0, time.perf_counter() + seconds
    wall, cpu = time.perf_counter(), time.thread_time()
    while time.perf_counter() < ended:
        predictor.predict(X)
        calls += 1
    return ((time.perf_counter() - wall) / calls / len(X) * 1e6, (time.thread_time() - cpu) / calls / len(X) * 1e6)


def python_loop(seconds: float) -> int:
    """Iterations of a dict-and-str loop (the kind of work the labeler's thread does) in ``seconds``."""
    table, i, ended = {}, 0, time.perf_counter() + seconds
    while time.perf_counter() < ended:
        for _ in range(1000):
            table[i % 1000] = (i, str(i))
            i += 1
    return i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.005, 0.001, 0.0002],
                        help="switch intervals to try, in seconds (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X = np.ascontiguousarray(embeddings(768)[:2048], dtype=np.float32)
    predictor = Predictor(default_model(768), "cpu", "float32")
    predictor.predict(X)
    wall, cpu = model_step(predictor, X, args.seconds)
    alone = python_loop(args.seconds)
    print(f"2,048 x 768 rows, Predictor.predict (float32) alone: {wall:.1f} us a row wall, {cpu:.1f} CPU")
    print("| switch interval | predict on a thread: us a row wall | CPU | the Python loop beside it |")
    print("|---|---|---|---|")
    default = sys.getswitchinterval()
    for interval in args.intervals:
        sys.setswitchinterval(interval)
        timed: list[tuple[float, float]] = []
        thread = threading.Thread(target=lambda: timed.append(model_step(predictor, X, args.seconds)))
        thread.start()
        iterations = python_loop(args.seconds)
        thread.join()
        print(f"| {interval * 1000:g} ms | {timed[0][0]:.1f} | {timed[0][1]:.1f} | {iterations / alone:.2f}x alone |")
    sys.setswitchinterval(default)


if __name__ == "__main__":
    main()
