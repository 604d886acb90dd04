"""The alert rules, checked and unit-tested by Prometheus's own promtool (Debian package
`prometheus`, installed by .ci/run): each alert fires on the series that should fire it
and stays silent on a healthy system (deploy/prometheus/alerts_test.yml)."""

import shutil
import subprocess

import pytest

from tests.conftest import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
pytestmark = pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian package prometheus)")


def promtool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *argv], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)


def test_rules_and_config_are_valid():
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0 and "SUCCESS: 7 rules found" in rules.stdout, rules.stdout + rules.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_unit_tests_pass():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
