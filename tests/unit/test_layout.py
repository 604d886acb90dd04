"""The runtime package stands alone: what a labeler or an updater installs or imports holds no
laboratory code and no plotting library; the laboratory is a distribution of its own."""

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile

from tests.conftest import ROOT

RUNTIME = ["stream_dec.cli", "stream_dec.model", "stream_dec.continual", "stream_dec.io", "stream_dec.stream.labeler",
           "stream_dec.stream.updater", "stream_dec.stream.versions", "stream_dec.stream.reservoir"]


def test_the_runtime_imports_no_lab_code_and_no_matplotlib():
    code = ("import sys\n" + "".join(f"import {name}\n" for name in RUNTIME) +
            "bad = sorted(m for m in sys.modules if m.startswith(('stream_dec_lab', 'matplotlib')))\n"
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_runtime_wheel_carries_no_lab_code_data_or_plotting(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "tests",
                                                                  "benchmarks", "__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("stream_dec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "stream_dec/cli.py" in names and "stream_dec/stream/labeler.py" in names
    assert not [n for n in names if "lab" in n.split("/")[0] or n.endswith((".npz", ".png"))], names
    requires = [line for line in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("METADATA"))).decode().splitlines() if line.startswith("Requires-Dist")]
    assert requires and not [r for r in requires if "matplotlib" in r]


def test_the_laboratory_is_its_own_distribution_with_matplotlib():
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lab = tomllib.loads((ROOT / "lab" / "pyproject.toml").read_text())["project"]
    everything = root["dependencies"] + [d for extra in root["optional-dependencies"].values() for d in extra]
    assert not [d for d in everything if d.startswith("matplotlib")]
    assert lab["name"] == "stream-dec-lab" and "stream-dec" in lab["dependencies"]
    assert any(d.startswith("matplotlib") for d in lab["dependencies"])
    assert not (ROOT / "stream_dec" / "lab").exists() and (ROOT / "lab" / "stream_dec_lab" / "demo.py").is_file()


def test_the_image_copies_only_the_runtime():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY stream_dec ./stream_dec" in dockerfile and "lab" not in dockerfile
    assert "lab" in (ROOT / ".dockerignore").read_text().split()


LAYERS = {"typed": 0, "errors": 0, "config": 0, "logs": 0, "io": 1, "model": 2, "continual": 3, "stream": 4,
          "local": 4, "cli": 5}


def test_a_lower_layer_never_imports_a_higher_one():
    """The order of stream_dec/__init__.py; the CLI reaches the lab only inside its evaluate and demo commands."""
    upward = []
    for path in (ROOT / "stream_dec").rglob("*.py"):
        layer = path.relative_to(ROOT / "stream_dec").parts[0].removesuffix(".py")
        if layer not in LAYERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stream_dec_lab"):
                upward.append((path.name, node.module, node.col_offset))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stream_dec."):
                if LAYERS.get(node.module.split(".")[1], 0) > LAYERS[layer]:
                    upward.append((path.name, node.module, node.col_offset))
    assert upward and all(name == "cli.py" and module.startswith("stream_dec_lab.") and indent > 0  # in a function
                          for name, module, indent in upward), upward
