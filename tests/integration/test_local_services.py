"""README's local recipe: `stream-dec local-services`, then `serve --config config/serve-local.toml`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis

from stream_dec.config import load_config
from stream_dec.stream.reservoir import from_bfloat16, to_bfloat16, unpack
from tests.conftest import ROOT, wordnet_slice
from tests.integration.conftest import float32_record, produce, read_all

pytestmark = pytest.mark.integration


def test_serve_local_labels_against_the_local_services(tmp_path, model_dir):
    services = subprocess.Popen([sys.executable, "-m", "stream_dec", "local-services", "--kafka-port", "0",
                                 "--redis-port", "0", "--config", str(ROOT / "config" / "serve-local.toml")], stdout=subprocess.PIPE, text=True)
    try:
        line = services.stdout.readline()
        children = _children(services.pid)
        assert len(children) == 2, children  # the broker and redis-server
        bootstrap, redis_url = re.match(r"kafka (\S+)  redis (\S+)", line).groups()
        assert redis.Redis.from_url(redis_url).ping()
        environ = {**os.environ, "STREAM_DEC_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "STREAM_DEC_REDIS__URL": redis_url}
        config = load_config(ROOT / "config" / "serve-local.toml", environ=environ)
        X, _ = wordnet_slice(classes=3, per_class=20)
        produce(bootstrap, config.topics.embeddings, [float32_record(f"k{i}", x) for i, x in enumerate(X)])
        log = tmp_path / "serve.log"
        with log.open("w") as out:
            labeler = subprocess.Popen([sys.executable, "-m", "stream_dec", "serve", "--config",
                                        str(ROOT / "config" / "serve-local.toml"), "--model", str(model_dir)],
                                       env=environ, stdout=out, stderr=subprocess.STDOUT)
        try:
            labels = read_all(bootstrap, config.topics.labels, len(X), timeout=90)
            assert sorted(m.key() for m in labels) == sorted(f"k{i}".encode() for i in range(len(X))), \
                log.read_text()[-2000:]
        finally:
            labeler.send_signal(signal.SIGTERM)
            assert labeler.wait(30) == 0, log.read_text()[-2000:]
        staged = redis.Redis.from_url(redis_url).hvals(f"stream-dec:{config.model.name}:staging")
        samples = {identifier: vector for identifier, _, vector, _ in map(unpack, staged)}
        assert sorted(samples) == sorted(f"k{i}" for i in range(len(X)))  # sampled, in bfloat16 (the default)
        assert all(np.array_equal(samples[f"k{i}"], from_bfloat16(to_bfloat16(x))) for i, x in enumerate(X))
    finally:
        services.send_signal(signal.SIGTERM)
        assert services.wait(30) == 0
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "a local service outlived its parent"


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(") ", 1)[1].split()[1] == str(pid):
                found.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return found
