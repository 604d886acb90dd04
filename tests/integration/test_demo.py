"""`stream-dec demo` end to end, bounded: labels produced, a new version published, everything stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

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
    # a 600-sample window makes agreement noisy (0.98 +- 0.01): this test is about the mechanics, not the gate
    env = {**os.environ, "STREAM_DEC_UPDATE__MIN_AGREEMENT": "0.9", "STREAM_DEC_UPDATER__MAX_LOSS_INCREASE": "1.0"}
    result = subprocess.run([sys.executable, "-m", "stream_dec", "demo", "--window", "600", "--steps", "1",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["labels"] == summary["produced"] == 900  # 600 + one half-window of 300
    gate = [line for line in result.stderr.splitlines() if "gate" in line]
    assert summary["versions"] >= 2, gate  # cold start + one update published
    assert (tmp_path / "versions.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 2 | ewc |" in (tmp_path / "summary.md").read_text()
    assert not any(listening(port) for port in started_ports(result.stderr))


def test_ctrl_c_stops_everything_the_demo_started(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "stream_dec", "demo", "--window", "600", "--steps", "3",
                                "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(12)  # services up, replay running
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in stderr
    assert not any(listening(port) for port in started_ports(stderr))
