"""docker-compose.yml agrees with config/ and deploy/: topics, listeners, ports, Redis
auth, profiles, restart policies, healthchecks, scrape targets and dashboards.

Docker cannot run on the development machine, so this parses the file; `docker-compose
config` (Debian's docker-compose, installed by .ci/run) validates it where installed.
"""

import json
import re
import shutil
import subprocess

import pytest
import yaml

from stream_dec.config import load_config
from stream_dec.stream.observability import LabelerMetrics, UpdaterMetrics
from tests.conftest import ROOT

STREAM_DEC = ("updater", "labeler", "labeler-gpu")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def created_topics(compose) -> dict[str, str]:
    script = compose["services"]["topics"]["command"][0]
    return {m.group(1): m.group(0) for m in re.finditer(r"--topic (\S+)[^\n]*", script)}


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="needs Debian's docker-compose")
def test_docker_compose_accepts_the_file_and_requires_the_passwords():
    environ = {"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": "r", "GRAFANA_PASSWORD": "g"}
    for profile in ("cpu", "gpu"):
        result = subprocess.run(["docker-compose", "--profile", profile, "config", "-q"], cwd=ROOT, env=environ,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, env={"PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True)
    assert result.returncode != 0 and "set REDIS_PASSWORD" in result.stderr


@pytest.mark.parametrize("service, file", [("labeler", "labeler.toml"), ("labeler-gpu", "labeler.toml"),
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
    assert f"PLAINTEXT://{host}:{port}" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    redis_host, redis_port = re.match(r"redis://([^:/]+):(\d+)", config.redis.url).groups()
    redis = compose["services"][redis_host]
    assert "--appendonly" in redis["command"] and f"127.0.0.1:{redis_port}:{redis_port}" in redis["ports"]


def test_kafka_keeps_its_log_on_the_volume_and_has_a_host_listener(compose):
    kafka = compose["services"]["kafka"]
    log_dir = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert any(volume.endswith(f":{log_dir}") for volume in kafka["volumes"])
    external = re.search(r"EXTERNAL://localhost:(\d+)", kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]).group(1)
    assert f"127.0.0.1:{external}:{external}" in kafka["ports"]
    assert f"EXTERNAL://:{external}" in kafka["environment"]["KAFKA_LISTENERS"]


def test_redis_requires_the_password_the_clients_send(compose):
    services = compose["services"]
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == "${REDIS_PASSWORD:?set REDIS_PASSWORD}"  # healthcheck
    for name in STREAM_DEC:
        assert services[name]["environment"]["STREAM_DEC_REDIS__PASSWORD"] == "${REDIS_PASSWORD:?set REDIS_PASSWORD}"


def test_published_ports_are_on_loopback_only(compose):
    for name, spec in compose["services"].items():
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_labelers_are_in_profiles_and_the_gpu_one_gets_cuda_torch(compose):
    services = compose["services"]
    assert services["labeler"]["profiles"] == ["cpu"] and services["labeler-gpu"]["profiles"] == ["gpu"]
    gpu = services["labeler-gpu"]
    assert "cu" in gpu["build"]["args"]["TORCH_INDEX"].rsplit("/", 1)[-1]
    assert gpu["image"] != services["labeler"]["image"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert gpu["environment"]["STREAM_DEC_LABELER__DEVICE"] == "cuda"
    assert services["labeler"]["environment"]["STREAM_DEC_LABELER__DEVICE"] == "cpu"
    assert "profiles" not in services["updater"]  # what `up` without a profile starts needs no GPU
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in dockerfile


def test_every_long_running_service_restarts_and_has_a_healthcheck(compose):
    for name, spec in compose["services"].items():
        if name == "topics":
            assert spec["restart"] == "on-failure"
            continue
        assert spec["restart"] == "unless-stopped", name
        assert "healthcheck" in spec, name


def test_services_wait_for_their_dependencies(compose):
    services = compose["services"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in STREAM_DEC:
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_image_runs_as_a_user_with_a_home_and_leaves_the_venv_out():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "useradd --create-home --uid 1000" in dockerfile and "USER stream-dec" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= set(ignored)


@pytest.mark.parametrize("service, file, job", [("labeler", "labeler.toml", "stream-dec-labeler"),
                                                ("updater", "updater.toml", "stream-dec-updater")])
def test_prometheus_scrapes_every_service_on_its_metrics_port(compose, service, file, job):
    config = load_config(ROOT / "config" / file, environ={})
    assert config.metrics.port and config.metrics.host == "0.0.0.0"
    assert str(config.metrics.port) in compose["services"][service]["expose"]
    assert str(config.metrics.port) in str(compose["services"][service]["healthcheck"]["test"])
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {s["job_name"]: s["dns_sd_configs"][0] for s in scrape["scrape_configs"]}
    assert service in jobs[job]["names"] and jobs[job]["port"] == config.metrics.port
    assert "./deploy/prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]


def exported_series() -> set[str]:
    """Every series name the labeler and the updater export (counters as name_total, histograms' parts)."""
    names = set()
    for metrics in (LabelerMetrics(), UpdaterMetrics()):
        for family in metrics.registry.collect():
            names |= {family.name, f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_count",
                      f"{family.name}_sum"} if family.type in ("counter", "histogram") else {family.name}
    return names


def queried_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\b(stream_dec_[a-z_]+)", expr))


def test_every_dashboard_query_names_an_exported_metric(compose):
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "stream-dec.json").read_text())
    exported = exported_series()
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(queries) >= 10
    for expr in queries:
        assert queried_metrics(expr) <= exported, expr
        assert queried_metrics(expr) or "up{" in expr, expr
    used = set().union(*map(queried_metrics, queries))
    assert {"stream_dec_labels_total", "stream_dec_consumer_lag", "stream_dec_updater_leader"} <= used
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    provider = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "stream-dec.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source["datasources"][0]["uid"]}


def test_every_alert_names_an_exported_metric():
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    exported = exported_series()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) == 7
    for rule in alerts:
        assert queried_metrics(rule["expr"]) <= exported, rule["alert"]
