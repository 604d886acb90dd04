"""What the reservoir's writes cost, outside the stream: CPU microseconds per offered label
of the offering thread and of the Redis server, and what Redis received.

Starts its own ``redis-server``, fills a window with real embeddings (WordNet nouns, 768-d
as the peers benchmark builds them), cycles it as an updater past its first version does
(staging then keeps the 5,000 samples the next cycle takes), then offers batches of 2,048
rows, the labeler's batch size, as the labeler's writer thread does: each batch into a
local sample (``LocalSample``), merged into staging (``Reservoir.write``) every
``--every`` batches (1: each batch, ``write_interval_ms = 0``; 50: about a second of a
labeler at 100,000 labels/s, the default 1,000 ms). Interleaved in each round for each
sample precision. The labeler freezes its start-up objects out of the garbage
collector's reach (``gc.freeze``); so does this script, or the collector's passes over
them would count as the writes' cost.

    python benchmarks/reservoir_offer.py                      # 3 rounds of 200,704 labels
    python benchmarks/reservoir_offer.py --batches 200 --rounds 5 --every 1 50 --precisions bfloat16
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid

import numpy as np
import redis
import torch

from peers import embeddings, redis_cpu_seconds, start_redis
from stream_dec.stream.reservoir import Reservoir
from stream_dec.stream.sampling import LocalSample

BATCH = 2048


def offer_round(client: redis.Redis, X: np.ndarray, capacity: int, batches: int, precision: str, every: int) -> dict:
    """One fresh reservoir, cycled full, then ``batches`` batches of ``BATCH`` rows of ``X``
    into a local sample merged into staging every ``every`` batches."""
    name = f"offer-{uuid.uuid4().hex[:8]}"
    reservoir = Reservoir(client, name, capacity, precision=precision)
    rng = np.random.default_rng(0)
    reservoir.offer([f"w{i}" for i in range(capacity)], X[:capacity], time.time(), rng)
    reservoir.cycle(1.0, rng, next_fraction=0.5)
    ids = [f"key-{i:08d}" for i in range(len(X))]
    local = LocalSample(reservoir.room)  # sized as SampleWriter sizes it: staging's room as the last write read it
    received = client.info("stats")["total_net_input_bytes"]
    server, thread = redis_cpu_seconds(client), time.thread_time()
    for b in range(batches):
        start = (b * BATCH) % (len(X) - BATCH)
        local.add(ids[start:start + BATCH], X[start:start + BATCH], time.time(), rng)
        if (b + 1) % every == 0 or b == batches - 1:
            reservoir.write(local, rng)
            local.clear(reservoir.room)
    n = batches * BATCH
    return {"thread": (time.thread_time() - thread) / n * 1e6, "redis": (redis_cpu_seconds(client) - server) / n * 1e6,
            "received": (client.info("stats")["total_net_input_bytes"] - received) / 2**20,
            "staging": reservoir.sizes()["staging"], "labels": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=98, help="batches per round (98 x 2,048 = 200,704 labels)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=10_000, help="the window's size ([reservoir] capacity)")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"],
                        help="sample precisions, interleaved in each round ([reservoir] sample_precision)")
    parser.add_argument("--every", nargs="+", type=int, default=[1, 50],
                        help="batches between writes, interleaved in each round")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a labeler runs ([labeler] threads): bfloat16 conversion is a torch call
    X = np.ascontiguousarray(embeddings(768), dtype=np.float32)
    server, port = start_redis()
    try:
        client = redis.Redis(port=port)
        print(f"{args.batches} batches of {BATCH:,} x 768-d float32 after a cycle, window {args.capacity:,}; "
              f"hiredis: {redis.utils.HIREDIS_AVAILABLE}")
        gc.freeze()
        for r in range(1, args.rounds + 1):
            for precision in args.precisions:
                for every in args.every:
                    got = offer_round(client, X, args.capacity, args.batches, precision, every)
                    print(f"round {r} {precision} written every {every} batches: {got['labels']:,} labels offered, "
                          f"offering thread {got['thread']:.2f} "
                          f"us CPU a label, Redis {got['redis']:.2f} us CPU a label, Redis received "
                          f"{got['received']:,.1f} MiB, staging {got['staging']:,}", flush=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
