"""A real Prometheus server scrapes a running labeler and updater and evaluates the alerts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.conftest import ROOT, wordnet_slice
from tests.integration.conftest import float32_record, free_port, produce

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("prometheus"), reason="needs Debian's prometheus")]


def query(port: int, expr: str) -> dict[str, float]:
    """Instant query: {job: value} of the result vector."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return {sample["metric"].get("job", ""): float(sample["value"][1]) for sample in result}


def test_prometheus_scrapes_labeler_and_updater_and_loads_the_alerts(service, tmp_path):
    config, path = service
    ports = {"labeler": free_port(), "updater": free_port(), "prometheus": free_port()}
    base = {**os.environ, "STREAM_DEC_METRICS__HOST": "127.0.0.1",
            "STREAM_DEC_MODEL__NAME": f"prometheus-{uuid.uuid4().hex[:8]}"}
    processes = []
    try:
        for role, command in (("labeler", "serve"), ("updater", "update-loop")):
            log = (tmp_path / f"{role}.log").open("w")
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "stream_dec", command, "--config", str(path)],
                env={**base, "STREAM_DEC_METRICS__PORT": str(ports[role])}, stdout=log, stderr=subprocess.STDOUT))
        X, _ = wordnet_slice(classes=3, per_class=20)
        produce(config.kafka["bootstrap.servers"], config.topics.embeddings,
                [float32_record(f"k{i}", x) for i, x in enumerate(X)])
        scrape = tmp_path / "prometheus.yml"
        scrape.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
            "scrape_configs": [{"job_name": f"stream-dec-{role}",
                                "static_configs": [{"targets": [f"127.0.0.1:{ports[role]}"]}]}
                               for role in ("labeler", "updater")],
        }))
        log = (tmp_path / "prometheus.log").open("w")
        processes.append(subprocess.Popen(
            ["prometheus", f"--config.file={scrape}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{ports['prometheus']}"], stdout=log, stderr=subprocess.STDOUT))
        deadline, seen = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            try:
                seen = {"up": query(ports["prometheus"], "up"),
                        "labels": query(ports["prometheus"], "stream_dec_labels_total"),
                        "version": query(ports["prometheus"], "stream_dec_model_version"),
                        "leader": query(ports["prometheus"], "stream_dec_updater_leader")}
            except OSError:
                seen = {}
            if seen and seen["labels"].get("stream-dec-labeler", 0) >= len(X) and seen["leader"].get(
                    "stream-dec-updater") == 1:
                break
            time.sleep(0.5)
        assert seen.get("up") == {"stream-dec-labeler": 1.0, "stream-dec-updater": 1.0}, seen
        assert seen["labels"] == {"stream-dec-labeler": float(len(X))}, seen
        assert seen["version"]["stream-dec-labeler"] == 1.0 and seen["leader"] == {"stream-dec-updater": 1.0}
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['prometheus']}/api/v1/rules", timeout=5) as response:
            rules = [rule for group in json.load(response)["data"]["groups"] for rule in group["rules"]]
        assert len(rules) == 7 and all(rule["health"] == "ok" for rule in rules), rules
        deadline = time.monotonic() + 10  # a rule evaluated before the first scrapes may be pending for a second
        while (alerts := query(ports["prometheus"], "ALERTS")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alerts, alerts  # a healthy system raises nothing, not even a pending alert
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
