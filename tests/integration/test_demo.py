"""`stream-dec demo` end to end, bounded: labels produced, a new version published, everything stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from tests.integration.conftest import wait_for_line

pytestmark = pytest.mark.integration


def started_ports(stderr: str) -> list[int]:
    match = re.search(r"local broker 127\.0\.0\.1:(\d+), redis redis://127\.0\.0\.1:(\d+)/0", stderr)
    assert match, stderr[-2000:]
    return [int(match.group(1)), int(match.group(2))]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def test_demo_replays_updates_and_stops_everything(tmp_path):
    # a 600-sample window makes agreement noisy (0.98 +- 0.01) and translate's KMeans targets too (relative drift
    # 0.116 at ratio 0.05 in one run): this test is about the mechanics, not the gate
    env = {**os.environ, "STREAM_DEC_UPDATE__MIN_AGREEMENT": "0.9", "STREAM_DEC_UPDATE__MAX_DRIFT": "1.0",
           "STREAM_DEC_UPDATER__MAX_LOSS_INCREASE": "1.0"}
    result = subprocess.run([sys.executable, "-m", "stream_dec", "demo", "--window", "600", "--steps", "1",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["labels"] == summary["produced"] == 900  # 600 + one half-window of 300
    gate = [line for line in result.stderr.splitlines() if "gate" in line]
    assert summary["versions"] >= 2, gate  # cold start + one update published
    assert (tmp_path / "versions.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 2 | translate |" in (tmp_path / "summary.md").read_text()
    assert not any(listening(port) for port in started_ports(result.stderr))


# `python -m stream_dec ARGS` with Ctrl-C's handler, as from a terminal (under `nohup ... &` the
# test run, and so the demo, would inherit SIGINT ignored)
RUN_WITH_CTRL_C = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "sys.argv[0] = 'stream-dec'; runpy.run_module('stream_dec', run_name='__main__')")


def test_ctrl_c_stops_everything_the_demo_started(tmp_path):
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:  # 10 steps: still replaying when interrupted, however fast the host
        process = subprocess.Popen([sys.executable, "-c", RUN_WITH_CTRL_C, "demo", "--window", "600", "--steps", "10",
                                    "--out", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=log)
    wait_for_line(log_path, r"step \d+ \| produced +[1-9]", timeout=120)  # services up, replay running
    process.send_signal(signal.SIGINT)
    process.wait(120)
    stderr = log_path.read_text()
    assert process.returncode == 130 and "interrupted" in stderr
    assert not any(listening(port) for port in started_ports(stderr))
