"""`python -m autograder check NOTEBOOK [EXERCISE]`: a student's pre-flight, public checks only."""
from __future__ import annotations

import copy
import re
import subprocess
import sys

import nbformat
import pytest

from autograder import notebooks

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gallery")]
CHAPTER = "02_principles"


def check(path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", "check", str(path), *extra],
                          capture_output=True, text=True, timeout=600)


def public_counts() -> dict[str, int]:
    source = (notebooks.REPO_ROOT / "autograder/checks/ch02_principles.py").read_text()
    counts: dict[str, int] = {}
    for name, public in re.findall(r'@check\("(\w+)"[^)]*?(public=True)?\)', source):
        if public:
            counts[name] = counts.get(name, 0) + 1
    return counts


def test_the_reference_passes_every_public_check_and_only_those():
    run = check(notebooks.master_path(CHAPTER, "torch"))
    assert run.returncode == 0, run.stderr[-2000:]
    for exercise, n in public_counts().items():
        assert f"✓ {exercise}: all {n} public checks passed" in run.stdout
    assert "✓ runs top to bottom" in run.stdout


def test_an_untouched_notebook_is_not_implemented_yet_everywhere():
    run = check(notebooks.student_path(CHAPTER, "tf"))
    assert run.returncode == 0
    for exercise in public_counts():
        assert f"… {exercise}: not implemented yet" in run.stdout


def test_a_wrong_shape_says_which_shapes(tmp_path):
    nb = copy.deepcopy(nbformat.read(notebooks.master_path(CHAPTER, "torch"), as_version=4))
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("course", {}).get("exercise") == "dot_product_scores")
    cell.source = "def dot_product_scores(queries, keys):\n    return keys @ queries.transpose(-2, -1)\n"
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, path)
    run = check(path, "dot_product_scores")
    assert "✗ dot_product_scores" in run.stdout
    assert "expected shape" in run.stdout
    assert "masked_softmax" not in run.stdout        # only the exercise asked for


def test_a_bad_file_is_one_clear_line(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("print('hello')\n")
    run = check(path)
    assert run.returncode == 1
    assert "not valid JSON" in run.stdout and "Traceback" not in run.stdout + run.stderr
