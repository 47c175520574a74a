"""Every Python file of the project passes pyflakes: an undefined name in a script CI never runs (the
training scripts need python3-torch, which CI does not install) otherwise waits for the next person who
trains a model (train_covering_classifier.py once called a module a tidy had stopped importing)."""

import subprocess
import sys

import kg_e2e

SKIP = {"build", ".git"}  # top-level folders that are not the project's sources


def python_files():
    root = kg_e2e.SOURCE_DIR
    return sorted(p for p in root.rglob("*.py") if p.relative_to(root).parts[0] not in SKIP)


def pyflakes(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pyflakes", *args], capture_output=True, text=True, timeout=60, **kw)


def test_every_python_file_passes_pyflakes():
    files = python_files()
    names = {p.relative_to(kg_e2e.SOURCE_DIR).as_posix() for p in files}
    assert {"models/train/train_covering_classifier.py", "tests/e2e/kg_e2e.py", "bench/cameras.py"} <= names
    r = pyflakes(*map(str, files))
    assert r.returncode == 0, f"pyflakes on {len(files)} files:\n{r.stdout}{r.stderr}"


def test_pyflakes_finds_an_undefined_name():
    r = pyflakes(input="import math\n\ndef f():\n    return thd.load_helmet(math.pi)\n")
    assert r.returncode != 0 and "undefined name 'thd'" in r.stdout
