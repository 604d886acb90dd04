"""The reliability report: every fault test, N runs each, one table.

The faults are the integration tests marked ``reliability`` (real Tansu broker, real
Redis, real processes): labeler kill -9 three times at random points, two labelers
with one killed, broker paused with SIGSTOP, Redis killed and restarted, the updater
killed mid fine-tune and mid-publish, an updater paused past its lease, 10,000 fuzzed
payloads (values, keys, ids, headers), poison pills (huge keys, labels too large, long
multi-byte ids, unreadable samples, a topic that refuses every record), hostile version
records, a diverged fine-tune, TLS and ACL settings against real servers, bad config and
unreachable services at start-up. Each run of a fault test draws other
random points (kill points, fuzz seed) and adds one row. CI runs every fault once
(``python -m pytest``); this script runs them ``--runs`` times and writes
``benchmarks/results/reliability.md``.

Target row, the same for every fault: lost 0, duplicates after dedup 0, crashes 0.
The exit status is 0 only when every run met it (and every test passed).

Run from the repository root::

    python benchmarks/reliability.py --runs 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each randomised fault test (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reliability.md",
                        help="where to write the table")
    args = parser.parse_args()
    code = pytest.main([str(ROOT / "tests" / "integration"), "-m", "reliability", "-p", "no:cacheprovider",
                        "--reliability-runs", str(args.runs), "--reliability-report", str(args.out)])
    print(f"\nwritten: {args.out}" if args.out.exists() else "\nno table written")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
