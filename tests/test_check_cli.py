"""`python -m autograder check NOTEBOOK [EXERCISE]`: a student's pre-flight, public checks only."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from autograder import cli, notebooks

# The runs that grade a real notebook start a framework's worker: the gallery tier. The clean-up
# tests grade nothing real and stay in `make test-fast`.
CHAPTER = "02_principles"
SCRATCH_PREFIX = "autograder-check-"


def check(path, *extra, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmpdir)} if tmpdir else None
    return subprocess.run([sys.executable, "-m", "autograder", "check", str(path), *extra],
                          capture_output=True, text=True, timeout=600, env=env)


def scratch_dirs(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith(SCRATCH_PREFIX))


def public_counts() -> dict[str, int]:
    source = (notebooks.REPO_ROOT / "autograder/checks/ch02_principles.py").read_text()
    counts: dict[str, int] = {}
    for name, arguments in re.findall(r'@check\("(\w+)"([^)]*)\)', source):
        if "public=True" in arguments:
            counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.mark.slow
@pytest.mark.xdist_group("gallery")
def test_the_reference_passes_every_public_check_and_only_those(tmp_path):
    run = check(notebooks.master_path(CHAPTER, "torch"), tmpdir=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert scratch_dirs(tmp_path) == []   # the check's own report folder is gone
    for exercise, n in public_counts().items():
        assert f"✓ {exercise}: all {n} public checks passed" in run.stdout
    assert "✓ runs top to bottom" in run.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("gallery")
def test_an_untouched_notebook_is_not_implemented_yet_everywhere():
    run = check(notebooks.student_path(CHAPTER, "tf"))
    assert run.returncode == 0
    for exercise in public_counts():
        assert f"… {exercise}: not implemented yet" in run.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("gallery")
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


def test_a_bad_file_is_one_clear_line_and_leaves_no_scratch_folder(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("print('hello')\n")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    run = check(path, tmpdir=tmpdir)
    assert run.returncode == 1
    assert "not valid JSON" in run.stdout and "Traceback" not in run.stdout + run.stderr
    assert scratch_dirs(tmpdir) == []


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), RuntimeError("the grader broke")],
                         ids=["interrupted", "crashed"])
def test_an_interrupted_or_crashed_check_leaves_no_scratch_folder(tmp_path, monkeypatch, stop):
    path = tmp_path / "mine.ipynb"
    path.write_text("{}")
    seen = []

    def grade_batch(paths, out, options, **kwargs):
        seen.append(out)
        (out / "mine").mkdir()
        (out / "mine" / "feedback.md").write_text("half written")
        raise stop

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cli, "grade_batch", grade_batch)
    if isinstance(stop, KeyboardInterrupt):
        assert cli.main(["check", str(path)]) == 130
    else:
        with pytest.raises(RuntimeError):
            cli.main(["check", str(path)])
    assert seen and seen[0].name.startswith(SCRATCH_PREFIX) and seen[0].parent == tmp_path
    assert scratch_dirs(tmp_path) == []


def test_a_mistyped_exercise_is_a_one_line_error_listing_the_exercises(tmp_path):
    """Refused from the metadata, before any code runs: no verdict, exit status 2, and the valid
    names on the same line (long as it is: a console narrower than the list does not break it)."""
    run = check(notebooks.student_path(CHAPTER, "torch"), "masked_sofmax", tmpdir=tmp_path)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "'masked_sofmax' is not an exercise of 02_principles" in lines[0]
    assert all(exercise in lines[0] for exercise in public_counts()), lines[0]
    assert "runs top to bottom" not in run.stdout and scratch_dirs(tmp_path) == []


def _code_ordinal(nb, cell) -> int:
    """The cell's number among the notebook's code cells, from 1: what JupyterLab shows as [n]
    after "Restart Kernel and Run All Cells" (markdown cells carry no number)."""
    return [c for c in nb.cells if c.cell_type == "code"].index(cell) + 1


@pytest.mark.slow
@pytest.mark.xdist_group("gallery")
def test_failures_name_code_cells_as_jupyterlab_numbers_them_and_a_list_is_a_list(tmp_path):
    nb = copy.deepcopy(nbformat.read(notebooks.master_path(CHAPTER, "torch"), as_version=4))
    cells = {c.metadata["course"]["exercise"]: c for c in nb.cells if c.get("metadata", {}).get("course", {}).get("exercise")}
    cells["dot_product_scores"].source = ("def dot_product_scores(queries, keys):\n"
                                          "    return [queries @ keys.transpose(-2, -1)]\n")
    cells["masked_softmax"].source = "def masked_softmax(scores, mask=None):\n    raise ValueError('boom')\n"
    nb.cells.append(nbformat.v4.new_code_cell("this_name_is_not_defined"))
    raising, last = _code_ordinal(nb, cells["masked_softmax"]), _code_ordinal(nb, nb.cells[-1])
    # the numbering differs from the index among all cells (markdown counted), so this can fail
    assert raising != nb.cells.index(cells["masked_softmax"]) and last != len(nb.cells) - 1
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, path)
    run = check(path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"code cell {last}: NameError: name 'this_name_is_not_defined' is not defined" in run.stdout
    assert f'File "<code cell {raising}>", line 2, in masked_softmax' in run.stdout
    returned = run.stdout.split("✗ dot_product_scores", 1)[1].split("\n✗ ")[0]
    assert "got a list of 1" in returned and "tuple" not in returned, returned
