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


@pytest.fixture(scope="module")
def window_file(tmp_path_factory):
    """Half of the training slice (retained) plus 300 unseen samples of the same classes."""
    from tests.conftest import wordnet_slice

    old, _ = wordnet_slice(classes=6, per_class=100)
    new, _ = wordnet_slice(classes=6, per_class=150, seed=9)
    X = np.concatenate([old[:300], new[:300]])
    path = tmp_path_factory.mktemp("window") / "window.npz"
    np.savez(path, X=X, retained=np.arange(600) < 300)
    return path


def test_update_writes_the_next_version(capsys, trained, window_file, tmp_path):
    status, stdout, _ = run(capsys, "update", "--model", str(trained), "--data", str(window_file),
                            "--strategy", "translate", "--out", str(tmp_path / "v2"))
    report = json.loads(stdout)
    assert status == 0 and report["accepted"] and report["version"] == 2 and report["parent"] == 1
    header = json.loads((tmp_path / "v2" / "model.json").read_text())
    assert (header["version"], header["parent"], header["strategy"]) == (2, 1, "translate")
    assert header["metrics"]["agreement"] == pytest.approx(report["agreement"])


def test_rejected_update_is_reported_and_not_written(capsys, trained, window_file, tmp_path):
    config = tmp_path / "strict.toml"
    config.write_text("[update]\nmax_drift = 0.0\n\n[update.translate]\nratio = 1.0\n")
    status, stdout, err = run(capsys, "update", "--model", str(trained), "--data", str(window_file),
                              "--strategy", "translate", "--out", str(tmp_path / "v2"), "--config", str(config))
    assert status == 1 and not json.loads(stdout)["accepted"] and "relative drift" in err
    assert list(json.loads(stdout)["gate_failed"]) == ["limits"]
    assert not (tmp_path / "v2").exists()
    status, _, _ = run(capsys, "update", "--model", str(trained), "--data", str(window_file), "--strategy",
                       "translate", "--out", str(tmp_path / "v2"), "--config", str(config), "--force")
    assert status == 0 and (tmp_path / "v2" / "model.json").exists()


def test_evaluate_writes_results_table_and_plots(capsys, fast_config, tmp_path):
    from tests.conftest import wordnet_slice

    X, y = wordnet_slice(classes=6, per_class=150, seed=4)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    status, stdout, err = run(capsys, "--log-level", "WARNING", "evaluate", "--data", str(tmp_path / "d.npz"),
                              "--scenario", "shift", "--strategies", "frozen,translate,ewc", "--out",
                              str(tmp_path / "out"), "--steps", "2", "--window", "300", "--config", str(fast_config))
    assert status == 0, err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {(r["step"], r["strategy"]) for r in rows} >= {(0, "initial"), (2, "ewc"), (2, "minibatch-kmeans")}
    frozen = [r for r in rows if r["strategy"] == "frozen"]
    assert all(r["agreement"] == r["agreement_heldout"] == 1.0 and r["drift_max"] == 0.0 for r in frozen)
    assert all(0.0 <= r["agreement_heldout"] <= 1.0 for r in rows if r["step"] > 0)  # on the old window's dropped half
    assert "| shift | 2 | translate |" in (tmp_path / "out" / "results.md").read_text()
    for name in ("accuracy.png", "agreement.png", "drift.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_sweep_writes_the_frontier(capsys, fast_config, tmp_path):
    from tests.conftest import wordnet_slice

    X, y = wordnet_slice(classes=6, per_class=150, seed=4)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    status, stdout, err = run(capsys, "--log-level", "WARNING", "evaluate", "--data", str(tmp_path / "d.npz"),
                              "--scenario", "shift", "--strategies", "translate", "--sweep", "--out",
                              str(tmp_path / "out"), "--steps", "1", "--window", "300", "--config", str(fast_config))
    assert status == 0, err
    table = (tmp_path / "out" / "frontier.md").read_text()
    lines = {line.split(" | ")[0].strip("| ") for line in table.splitlines()[2:]}
    assert lines == {"frozen", "retrain", "retrain-cells-oracle", "minibatch-kmeans", "minibatch-kmeans frozen",
                     "ceiling agreement=0.98"} | {f"translate ratio={r:g}" for r in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1)}
    assert "| frozen | 1.0000 | 1.0000 | +0.0000 |" in table  # frozen is the origin of the frontier
    frozen = next(line for line in table.splitlines() if line.startswith("| frozen |"))
    assert frozen.endswith("| 1/1 | 6 |")  # accepted steps, then the ids after the last step (K = 6 classes)
    ceiling = next(line for line in table.splitlines() if line.startswith("| ceiling"))
    assert ceiling.startswith("| ceiling agreement=0.98 | 0.9800 | 0.9800 | +0.") and float(ceiling.split(" | ")[3]) > 0
    oracle = next(line for line in table.splitlines() if line.startswith("| retrain-cells-oracle"))
    assert float(oracle.split(" | ")[1]) >= 0.95  # 0.98 in expectation: retrain's structure within the limit
    assert (tmp_path / "out" / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_train_and_update_refuse_to_replace_a_model_without_overwrite(capsys, trained, wordnet_file, fast_config):
    before = {p.name: p.read_bytes() for p in trained.iterdir()}
    status, _, err = run(capsys, "train", "--data", str(wordnet_file), "--out", str(trained),
                         "--config", str(fast_config))
    assert status == 2 and "exists and is not empty" in err and "--overwrite" in err
    status, _, err = run(capsys, "update", "--model", str(trained), "--data", str(wordnet_file),
                         "--strategy", "frozen", "--out", str(trained))
    assert status == 2 and "exists and is not empty" in err
    assert {p.name: p.read_bytes() for p in trained.iterdir()} == before  # untouched


def test_update_with_overwrite_replaces_its_own_model_directory_atomically(capsys, trained, wordnet_file, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(trained, model)
    status, stdout, _ = run(capsys, "update", "--model", str(model), "--data", str(wordnet_file),
                            "--strategy", "frozen", "--out", str(model), "--overwrite")
    assert status == 0
    header = json.loads((model / "model.json").read_text())
    assert header["version"] == 2 and header["parent"] == 1
    assert sorted(p.name for p in model.iterdir()) == ["catalogue.json", "model.json", "model.safetensors"]
    assert json.loads((model / "catalogue.json").read_text())["version"] == 2  # the new version's, not the old
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left beside it


def test_predict_reports_the_file_it_really_wrote(capsys, trained, wordnet_file, tmp_path):
    """np.save adds .npy to a name without it; the report once named the file that was not written."""
    status, stdout, _ = run(capsys, "predict", "--model", str(trained), "--data", str(wordnet_file),
                            "--out", str(tmp_path / "p.txt"))
    assert status == 0 and json.loads(stdout)["out"] == str(tmp_path / "p.txt.npy")
    assert (tmp_path / "p.txt.npy").is_file() and not (tmp_path / "p.txt").exists()


def test_log_level_is_accepted_after_the_command(capsys, trained, wordnet_file, tmp_path):
    from stream_dec.cli import build_parser

    args = build_parser().parse_args(["predict", "--model", "m", "--data", "d", "--log-level", "WARNING"])
    assert args.log_level == "WARNING"
    assert build_parser().parse_args(["predict", "--model", "m", "--data", "d"]).log_level == "INFO"
    status, _, _ = run(capsys, "predict", "--model", str(trained), "--data", str(wordnet_file),
                       "--out", str(tmp_path / "l.npy"), "--log-level", "ERROR")
    assert status == 0


def test_update_help_names_every_strategy_and_argument(capsys):
    from stream_dec.config import STRATEGIES

    with pytest.raises(SystemExit):
        main(["update", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in STRATEGIES)
    assert "the current version" in text and "where to write the new version" in text


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["serve", "--help"]])
def test_version_and_help_do_not_load_torch(argv):
    """Answered from argparse alone: importing torch took ~3 s of a 4 s `--version`."""
    code = f"import sys; from stream_dec.cli import main\ntry: main({argv!r})\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, 'imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_train_saves_and_reuses_the_pretrained_autoencoder(capsys, wordnet_file, fast_config, tmp_path):
    status, stdout, _ = run(capsys, "train", "--data", str(wordnet_file), "--out", str(tmp_path / "k6"),
                            "--config", str(fast_config), "--save-pretrained", str(tmp_path / "ae"))
    assert status == 0 and json.loads(stdout)["saved_pretrained"] == str(tmp_path / "ae")
    saved = json.loads((tmp_path / "ae" / "model.json").read_text())
    assert saved["strategy"] == "pretrain" and saved["dims"] == [384, 64, 10]
    status, stdout, _ = run(capsys, "train", "--data", str(wordnet_file), "--out", str(tmp_path / "k4"),
                            "--config", str(fast_config), "--clusters", "4", "--pretrained", str(tmp_path / "ae"))
    report = json.loads(stdout)
    assert status == 0 and report["clusters"] == 4 and report["pretrain_loss"] == saved["metrics"]["pretrain_loss"]
    status, _, err = run(capsys, "train", "--data", str(wordnet_file), "--out", str(tmp_path / "k5"),
                         "--pretrained", str(tmp_path / "missing"))
    assert status == 2 and "not a model directory" in err


def test_update_reports_k_before_and_after_and_acc_when_the_window_has_labels(capsys, trained, tmp_path):
    """A labelled CSV window with class names and a retained column: the report says K before and after,
    how many rows were retained, and ACC/NMI/ARI of both versions on the window."""
    from tests.conftest import wordnet_slice

    old, y_old = wordnet_slice(classes=6, per_class=100)
    new, y_new = wordnet_slice(classes=6, per_class=150, seed=9)
    X, y = np.concatenate([old[:300], new[:300]]), np.concatenate([y_old[:300], y_new[:300]])
    path = tmp_path / "window.csv"
    with path.open("w") as out:
        out.write("embedding,label,retained\n")
        for i, (row, label) in enumerate(zip(X, y)):
            out.write(f'"{json.dumps(row.tolist())}",class-{label},{"true" if i < 300 else "false"}\n')
    status, stdout, _ = run(capsys, "update", "--model", str(trained), "--data", str(path),
                            "--strategy", "translate", "--out", str(tmp_path / "v2"))
    report = json.loads(stdout)
    assert status == 0 and report["retained_rows"] == 300 and report["rows"] == 600
    assert report["clusters_before"] == report["clusters_after"] == 6
    assert 0.3 < report["before"]["acc"] <= 1 and 0.3 < report["after"]["acc"] <= 1  # 6 classes: chance ~0.17
    assert {"nmi", "ari"} <= set(report["after"])


def test_update_without_retained_rows_says_so(capsys, trained, tmp_path, caplog):
    from tests.conftest import wordnet_slice

    X, _ = wordnet_slice(classes=6, per_class=50, seed=3)
    np.save(tmp_path / "w.npy", X)
    status, stdout, _ = run(capsys, "update", "--model", str(trained), "--data", str(tmp_path / "w.npy"),
                            "--strategy", "frozen", "--out", str(tmp_path / "v2"))
    assert status == 0 and json.loads(stdout)["retained_rows"] == 0 and "before" not in json.loads(stdout)
    assert "no row is marked retained" in caplog.text and "grow cannot tell" in caplog.text


def test_predict_reads_a_file_with_class_names(capsys, trained, tmp_path):
    from tests.conftest import wordnet_slice

    X, y = wordnet_slice(classes=6, per_class=20)
    np.savez(tmp_path / "named.npz", X=X, y=np.array([f"class-{label}" for label in y]))
    status, stdout, err = run(capsys, "predict", "--model", str(trained), "--data", str(tmp_path / "named.npz"),
                              "--out", str(tmp_path / "labels.npy"))
    assert status == 0, err
    assert np.load(tmp_path / "labels.npy").shape == (120,) and json.loads(stdout)["acc"] > 0.3


def test_update_applies_the_updaters_loss_check_to_a_fine_tune(capsys, trained, window_file, tmp_path):
    """One gate for both: a refit whose DEC loss on the window rises past max_loss_increase is refused
    by `update` as by the updater (a large learning rate makes it rise), and the same settings pass translate."""
    config = tmp_path / "loss.toml"
    config.write_text("[update]\nmax_drift = 1000.0\nmin_agreement = 0.0\n\n[update.finetune]\nlr = 0.01\n"
                      "epochs = 3.0\n\n[updater]\nmax_loss_increase = 0.0\n")
    status, stdout, err = run(capsys, "update", "--model", str(trained), "--data", str(window_file),
                              "--strategy", "refit", "--out", str(tmp_path / "v2"), "--config", str(config))
    report = json.loads(stdout)
    assert status == 1 and report["accepted"] and list(report["gate_failed"]) == ["loss"], report
    assert "DEC loss" in err and not (tmp_path / "v2").exists()
    status, stdout, _ = run(capsys, "update", "--model", str(trained), "--data", str(window_file),
                            "--strategy", "translate", "--out", str(tmp_path / "v2"), "--config", str(config))
    assert status == 0 and json.loads(stdout)["gate_failed"] == {}


def test_inspect_prints_the_catalogue_that_train_wrote(capsys, trained):
    status, stdout, _ = run(capsys, "inspect", "--model", str(trained))
    assert status == 0 and stdout.startswith("version 1: 6 clusters on 600 samples")
    assert stdout.count("\ncluster ") == 6 and "exemplars: " in stdout
    status, stdout, _ = run(capsys, "inspect", "--model", str(trained), "--json")
    catalogue = json.loads(stdout)
    assert sum(c["size"] for c in catalogue["clusters"]) == 600 and catalogue["parent"] is None


def test_inspect_describes_a_model_on_a_file_with_texts(capsys, trained, tmp_path):
    from stream_dec_lab.demo import DEMO_DATA

    with np.load(DEMO_DATA) as demo:
        np.savez(tmp_path / "texts.npz", X=demo["X"][:300], texts=demo["texts"][:300])
    status, stdout, _ = run(capsys, "inspect", "--model", str(trained), "--data", str(tmp_path / "texts.npz"), "--json")
    catalogue = json.loads(stdout)
    assert status == 0 and catalogue["samples"] == 300
    texts = [str(t) for t in np.load(tmp_path / "texts.npz")["texts"]]
    for card in catalogue["clusters"]:
        assert all(0 <= int(i) < 300 for i in card["exemplars"])
        assert all(any(m.startswith(t) for m in texts) for t in card["texts"])
        assert card["size"] == 0 or card["terms"]


def test_update_writes_a_catalogue_that_knows_its_parent(capsys, trained, window_file, tmp_path):
    out = tmp_path / "v2"
    status, _, _ = run(capsys, "update", "--model", str(trained), "--data", str(window_file), "--out", str(out),
                       "--strategy", "translate", "--force")
    assert status == 0
    status, stdout, _ = run(capsys, "inspect", "--model", str(out), "--json")
    catalogue = json.loads(stdout)
    assert catalogue["version"] == 2 and catalogue["parent"] == 1
    assert all(c["drift"] is not None and c["previous_terms"] == [] for c in catalogue["clusters"])


def test_inspect_without_a_catalogue_says_what_to_do(capsys, tmp_path, trained):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.json", "model.safetensors"):
        (bare / name).write_bytes((trained / name).read_bytes())
    status, _, err = run(capsys, "inspect", "--model", str(bare))
    assert status == 2 and "give --data FILE" in err


def test_the_lab_commands_say_how_to_get_the_lab_when_it_is_missing(tmp_path):
    """A runtime install has no laboratory: evaluate and demo end in one line saying how to add it."""
    code = ("import sys; sys.modules['stream_dec_lab'] = None\n"  # as if stream-dec-lab were not installed
            "from stream_dec.cli import main\n"
            f"sys.exit(main(['demo', '--out', {str(tmp_path)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install -e ./lab" in result.stderr, result.stderr
