"""The runtime package stands alone: what a labeler or an updater imports pulls in no
laboratory code and no plotting library, and the labeler's image leaves the lab out."""

import subprocess
import sys

from tests.conftest import ROOT

RUNTIME = ["stream_dec.cli", "stream_dec.model", "stream_dec.continual", "stream_dec.io", "stream_dec.stream.labeler",
           "stream_dec.stream.updater", "stream_dec.stream.versions", "stream_dec.stream.reservoir"]


def test_the_runtime_imports_no_lab_code_and_no_matplotlib():
    code = ("import sys\n" + "".join(f"import {name}\n" for name in RUNTIME) +
            "bad = sorted(m for m in sys.modules if m.startswith(('stream_dec.lab', 'matplotlib')))\n"
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_matplotlib_is_only_in_the_extras():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("matplotlib")]
    assert any(d.startswith("matplotlib") for d in project["optional-dependencies"]["lab"])


def test_the_image_leaves_the_lab_out():
    assert "stream_dec/lab" in (ROOT / ".dockerignore").read_text().split()


LAYERS = {"typed": 0, "errors": 0, "config": 0, "logs": 0, "io": 1, "model": 2, "continual": 3, "stream": 4,
          "local": 4, "cli": 5, "lab": 6}


def test_a_lower_layer_never_imports_a_higher_one():
    """The order of stream_dec/__init__.py; the CLI reaches the lab only inside its evaluate and demo commands."""
    import ast

    upward = []
    for path in (ROOT / "stream_dec").rglob("*.py"):
        layer = path.relative_to(ROOT / "stream_dec").parts[0].removesuffix(".py")
        if layer not in LAYERS:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stream_dec."):
                other = node.module.split(".")[1]
                if LAYERS.get(other, 0) > LAYERS[layer]:
                    upward.append((path.name, node.module, node.col_offset))
    assert all(name == "cli.py" and module.startswith("stream_dec.lab.") and indent > 0  # inside a function
               for name, module, indent in upward), upward
