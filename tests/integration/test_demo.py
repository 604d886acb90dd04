"""`stream-dec demo` end to end, bounded: labels produced, a new version published, everything stopped."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

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
    assert summary["decisions"][0] == "step 0: version 1 published (train; cold start)"
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "summary.md").read_text()
    assert "| 2 | translate |" in table and "frozen v1, same samples" in table
    assert not any(listening(port) for port in started_ports(result.stderr))
    # the texts travelled with the JSON inputs: the published catalogue names its clusters
    catalogue = json.loads((tmp_path / "catalogue.json").read_text())
    assert catalogue["version"] == summary["versions"] and len(catalogue["clusters"]) == 24
    assert sum(bool(c["terms"]) for c in catalogue["clusters"]) >= 20
    dom, console = in_browser(tmp_path / "report.html")
    assert dom.count('class="cluster-card"') == 24 and 'data-images-loaded="1"' in dom
    assert "CONSOLE" not in console and "src=\"http" not in dom  # no script error, nothing fetched


def in_browser(page: Path) -> tuple[str, str]:
    """``page`` loaded in headless Chromium (Debian's package): its DOM after scripts ran, and the
    browser's log (console messages appear there as ``INFO:CONSOLE``)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                             "--v=0", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, "\n".join(line for line in result.stderr.splitlines() if "CONSOLE" in line)


def test_the_same_seed_gives_the_same_versions_and_decisions(tmp_path):
    runs = []
    for attempt in range(2):
        result = subprocess.run([sys.executable, "-m", "stream_dec", "demo", "--window", "600", "--steps", "2",
                                 "--seed", "3", "--out", str(tmp_path / str(attempt))],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(json.loads(result.stdout)["decisions"])
    assert runs[0] == runs[1] and len(runs[0]) == 3, runs


# `python -m stream_dec ARGS` with Ctrl-C's handler, as from a terminal (under `nohup ... &` the
# test run, and so the demo, would inherit SIGINT ignored)
RUN_WITH_CTRL_C = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                   "sys.argv[0] = 'stream-dec'; runpy.run_module('stream_dec', run_name='__main__')")


def test_ctrl_c_stops_everything_the_demo_started(tmp_path):
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:  # 10 steps: still replaying when interrupted, however fast the host
        process = subprocess.Popen([sys.executable, "-c", RUN_WITH_CTRL_C, "demo", "--window", "600", "--steps", "10",
                                    "--out", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=log)
    wait_for_line(log_path, r"step \d+/10 \| .* \| produced [1-9]", timeout=120)  # services up, replay running
    process.send_signal(signal.SIGINT)
    process.wait(120)
    stderr = log_path.read_text()
    assert process.returncode == 130 and "interrupted" in stderr
    assert not any(listening(port) for port in started_ports(stderr))
    assert "Interrupted: figures so far." in (tmp_path / "summary.md").read_text()  # the summary so far
