"""End-to-end CLI on a small real slice of wordnet_nouns."""

import json
import subprocess
import sys

import numpy as np
import pytest

from stream_dec.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, wordnet_file, fast_config):
    folder = tmp_path_factory.mktemp("model")
    status = main(["--log-level", "WARNING", "train", "--data", str(wordnet_file), "--out", str(folder),
                   "--config", str(fast_config), "--seed", "1"])
    assert status == 0
    return folder


def test_train_writes_version_one_with_k_from_labels(trained):
    header = json.loads((trained / "model.json").read_text())
    assert header["version"] == 1 and header["parent"] is None and header["n_clusters"] == 6
    assert header["dims"] == [384, 64, 10]


def test_predict_writes_int64_labels_and_scores(capsys, trained, wordnet_file, tmp_path):
    out = tmp_path / "labels.npy"
    status, stdout, _ = run(capsys, "predict", "--model", str(trained), "--data", str(wordnet_file), "--out", str(out))
    assert status == 0
    labels = np.load(out)
    assert labels.dtype == np.int64 and labels.shape == (600,) and set(labels) <= set(range(6))
    scores = json.loads(stdout)
    assert scores["acc"] > 0.45 and 0 < scores["nmi"] <= 1 and "ari" in scores  # chance ACC is 1/6


def test_predict_without_labels_prints_no_scores(capsys, trained, wordnet_small, tmp_path):
    np.save(tmp_path / "x.npy", wordnet_small[0][:20])
    status, stdout, _ = run(capsys, "predict", "--model", str(trained), "--data", str(tmp_path / "x.npy"),
                            "--out", str(tmp_path / "l.npy"))
    assert status == 0 and "acc" not in json.loads(stdout) and np.load(tmp_path / "l.npy").shape == (20,)


def test_clusters_flag_overrides_label_count(capsys, wordnet_file, fast_config, tmp_path):
    status, stdout, _ = run(capsys, "--log-level", "WARNING", "train", "--data", str(wordnet_file),
                            "--out", str(tmp_path / "m"), "--config", str(fast_config), "--clusters", "3")
    assert status == 0 and json.loads(stdout)["clusters"] == 3


def test_expected_errors_are_one_line_and_exit_2(capsys, trained, tmp_path):
    np.save(tmp_path / "narrow.npy", np.ones((4, 7), dtype=np.float32))
    status, _, err = run(capsys, "predict", "--model", str(trained), "--data", str(tmp_path / "narrow.npy"))
    assert status == 2 and err.strip() == f"stream-dec: error: {tmp_path / 'narrow.npy'}: embeddings have 7 dims, the model expects 384"
    status, _, err = run(capsys, "predict", "--model", str(tmp_path), "--data", str(tmp_path / "narrow.npy"))
    assert status == 2 and "not a model directory" in err and "Traceback" not in err


def test_console_script_runs_as_a_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stream_dec", "train", "--data", str(tmp_path / "absent.npz"),
                             "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"stream-dec: error: {tmp_path / 'absent.npz'}: no such file"
