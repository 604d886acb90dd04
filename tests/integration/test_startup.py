"""Start-up against bad config and unreachable services: one clear line, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.integration.conftest import free_port
from tests.integration.reliability import Row

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture()
def run(reliability):
    """Run the CLI; each start-up is one reliability row (a crash: a traceback or an exit code other than 2)."""
    def run(*argv, timeout=60):
        result = subprocess.run([sys.executable, "-m", "stream_dec", *argv], capture_output=True, text=True,
                                timeout=timeout)
        reliability(Row("start-up: bad config, unreachable broker, unreachable Redis",
                        crashes=int("Traceback" in result.stderr or result.returncode != 2)))
        return result
    return run


def test_labeler_with_unreachable_broker_exits_with_a_clear_message(run, tmp_path, model_dir):
    port = free_port()  # nothing listens there
    (tmp_path / "c.toml").write_text(f'[kafka]\n"bootstrap.servers" = "127.0.0.1:{port}"\n\n'
                                     f'[labeler]\nmodel_dir = "{model_dir}"\nstartup_timeout_s = 3.0\n')
    started = time.monotonic()
    result = run("serve", "--config", str(tmp_path / "c.toml"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"stream-dec: error: cannot read the versions topic 'centre-versions' at "
                                    f"127.0.0.1:{port}")
    assert len(result.stderr.splitlines()) == 1, result.stderr[:3000]  # none of librdkafka's connect failures
    assert time.monotonic() - started < 3.0 + 10  # the configured wait, plus Python and torch start-up


def test_updater_with_unreachable_redis_exits_with_a_clear_message(run, tmp_path):
    port = free_port()
    (tmp_path / "c.toml").write_text(f'[redis]\nurl = "redis://127.0.0.1:{port}/0"\n')
    result = run("update-loop", "--config", str(tmp_path / "c.toml"))
    assert result.returncode == 2
    assert f"stream-dec: error: cannot reach Redis at redis://127.0.0.1:{port}/0" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_exits_with_the_file_and_key(run, tmp_path):
    (tmp_path / "c.toml").write_text("[labeler]\nmax_batch = -1\n")
    result = run("serve", "--config", str(tmp_path / "c.toml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"stream-dec: error: {tmp_path / 'c.toml'}: 'labeler.max_batch' must be >= 1, got -1"


@pytest.mark.parametrize("command", ["serve", "update-loop"])
def test_a_misspelt_kafka_property_is_one_line_not_a_traceback(run, tmp_path, command):
    """Written unquoted, a typo is a dotted librdkafka name like any other: librdkafka itself refuses it."""
    (tmp_path / "c.toml").write_text('[kafka]\nsecurty.protocol = "SSL"\n')
    result = run(command, "--config", str(tmp_path / "c.toml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ('stream-dec: error: [kafka] settings of the consumer: No such configuration '
                                      'property: "securty.protocol"')
