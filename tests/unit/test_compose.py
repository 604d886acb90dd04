"""docker-compose.yml agrees with config/: topics, ports, hosts and mounted config files.

Docker cannot run on the development machine, so this parses the file instead.
"""

import re

import pytest
import yaml

from stream_dec.config import load_config
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def created_topics(compose) -> dict[str, str]:
    script = compose["services"]["topics"]["command"][0]
    return {m.group(1): m.group(0) for m in re.finditer(r"--topic (\S+)[^\n]*", script)}


@pytest.mark.parametrize("service, file", [("labeler", "labeler.toml"), ("labeler-cpu", "labeler.toml"),
                                           ("updater", "updater.toml")])
def test_services_mount_and_run_the_config_files(compose, service, file):
    spec = compose["services"][service]
    assert "./config:/config:ro" in spec["volumes"]
    assert spec["command"][-1] == f"/config/{file}" and (ROOT / "config" / file).is_file()


@pytest.mark.parametrize("file", ["labeler.toml", "updater.toml"])
def test_topics_brokers_and_redis_match_the_configs(compose, file):
    config = load_config(ROOT / "config" / file, environ={})
    topics = created_topics(compose)
    for name in (config.topics.embeddings, config.topics.labels, config.topics.dead_letters, config.topics.versions):
        assert name in topics
    assert "cleanup.policy=compact" in topics[config.topics.versions]
    host, port = config.kafka["bootstrap.servers"].split(":")
    kafka = compose["services"][host]["environment"]
    assert f"PLAINTEXT://{host}:{port}" == kafka["KAFKA_ADVERTISED_LISTENERS"]
    redis_host, redis_port = re.match(r"redis://([^:/]+):(\d+)", config.redis.url).groups()
    redis = compose["services"][redis_host]
    assert "--appendonly" in redis["command"] and f"{redis_port}:{redis_port}" in redis["ports"]


@pytest.mark.parametrize("service, file", [("labeler", "labeler.toml"), ("updater", "updater.toml")])
def test_metrics_ports_are_published(compose, service, file):
    config = load_config(ROOT / "config" / file, environ={})
    assert config.metrics.port and config.metrics.host == "0.0.0.0"
    assert any(p.endswith(f":{config.metrics.port}") for p in compose["services"][service]["ports"])


def test_labeler_gpu_reservation(compose):
    config = load_config(ROOT / "config" / "labeler.toml", environ={})
    labeler = compose["services"]["labeler"]
    assert labeler["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert config.labeler.device == "auto" and config.labeler.input_dim > 0


def test_services_wait_for_their_dependencies(compose):
    services = compose["services"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("updater", "labeler"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert all("healthcheck" in services[name] for name in ("kafka", "redis"))
