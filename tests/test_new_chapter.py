"""A chapter is its record, its checks, its oracle and its masters: nothing else to edit.

In a throw-away copy of the repository (never the real one), this adds chapter `99_scratch` with one
exercise, `double`, exactly as a new chapter would be added: a record appended in
`autograder/chapters.py`, `autograder/checks/ch99_scratch.py`, `autograder/oracle/ch99_scratch.py` and
two masters in `solutions/99_scratch/`. Then every part of the course must know it, run from the copy:
`assign` writes its student views, `check` and `autograder.checker` check it, `grade` gives the
reference full marks and the untouched view 0, `release` hands it out, the Gradescope zip takes it,
and the course-wide tests (assessment, nbval, assign) list it.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.chapters import FRAMEWORKS, REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("new_chapter")]

SLUG = "99_scratch"
EXERCISE = "double"
POINTS = {"test_double_worked_example": 2.0, "test_double_batch": 1.0}   # as declared in CHECKS below

RECORD = f'''
# --- added by tests/test_new_chapter.py, in a throw-away copy only ---
_CHAPTERS = _CHAPTERS + (Chapter("{SLUG}", "Scratch", exercises=("{EXERCISE}",)),)
'''

CHECKS = f'''"""Checks of the throw-away chapter {SLUG}."""
import numpy as np

from autograder.checks.api import assert_close, check


@check("{EXERCISE}", points=2, public=True)
def test_double_worked_example(student, oracle, rng):
    """doubles [1, 2, 3]"""
    x = np.array([1.0, 2.0, 3.0], np.float32)
    assert_close(student.{EXERCISE}(x), oracle.{EXERCISE}(x))


@check("{EXERCISE}", points=1)
def test_double_batch(student, oracle, rng):
    """doubles a batch of matrices"""
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    assert_close(student.{EXERCISE}(x), oracle.{EXERCISE}(x))
'''

ORACLE = f'''"""The NumPy reference of the throw-away chapter {SLUG}."""
import numpy as np


def {EXERCISE}(x):
    return (2 * np.asarray(x, np.float64)).astype(np.float32)
'''

IMPORT = {"torch": "import torch", "tf": "import tensorflow as tf"}


def master(framework: str):
    nb = nbformat.v4.new_notebook(metadata={
        "course": {"chapter": SLUG, "framework": framework},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
    cells = [
        nbformat.v4.new_markdown_cell("# Scratch exercises"),
        nbformat.v4.new_code_cell(f'{IMPORT[framework]}\nimport autograder\n'
                                  f'check = autograder.checker("{SLUG}", "{framework}")'),
        nbformat.v4.new_code_cell(f'def {EXERCISE}(x):\n    """Twice x."""\n    # BEGIN SOLUTION\n'
                                  f'    return x * 2\n    # END SOLUTION',
                                  metadata={"course": {"exercise": EXERCISE}}),
        nbformat.v4.new_code_cell(f'check("{EXERCISE}")', metadata={"tags": ["check"]}),
    ]
    for cell, name in zip(cells, ("title", "setup", EXERCISE, f"{EXERCISE}-check")):
        cell.id = name
    nb.cells = cells
    return nb


def _ignore(folder: str, names: list[str]) -> set[str]:
    top = {".venv", "_build", ".git", "node_modules"} if Path(folder) == REPO_ROOT else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".pyc")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the repository with the chapter added the documented way, and only that way."""
    root = tmp_path_factory.mktemp("course") / "repo"
    shutil.copytree(REPO_ROOT, root, ignore=_ignore, symlinks=True)
    with (root / "autograder" / "chapters.py").open("a", encoding="utf-8") as f:
        f.write(RECORD)
    text = (root / "autograder" / "chapters.py").read_text(encoding="utf-8")
    # the record must come before the lookup table is built: move the table's line after it
    table = "_BY_SLUG = {c.slug: c for c in _CHAPTERS}\n"
    assert table in text
    (root / "autograder" / "chapters.py").write_text(text.replace(table, "") + table, encoding="utf-8")
    (root / "autograder" / "checks" / f"ch{SLUG}.py").write_text(CHECKS, encoding="utf-8")
    (root / "autograder" / "oracle" / f"ch{SLUG}.py").write_text(ORACLE, encoding="utf-8")
    for framework in FRAMEWORKS:
        path = root / "solutions" / SLUG / f"exercises_{framework}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(master(framework), path)
    return root


def run(repo: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python ARGS` in the copy, importing the copy's package (not the editable install's)."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def assigned(repo) -> Path:
    ok(run(repo, "-m", "autograder", "assign"))
    return repo


def test_the_copy_is_not_the_real_repository(repo):
    assert not (REPO_ROOT / "solutions" / SLUG).exists()
    assert ok(run(repo, "-c", "import autograder; print(autograder.__file__)")).startswith(str(repo))


def test_the_record_agrees_with_what_was_added(repo):
    code = f"from autograder.chapters import chapter; print(chapter('{SLUG}').audit())"
    assert ok(run(repo, "-c", code)).strip() == "[]"


def test_assign_generates_its_student_views(assigned):
    for framework in FRAMEWORKS:
        view = nbformat.read(assigned / "chapters" / SLUG / f"exercises_{framework}.ipynb", as_version=4)
        [cell] = [c for c in view.cells if c.get("metadata", {}).get("course", {}).get("exercise") == EXERCISE]
        assert "raise NotImplementedError" in cell.source and "x * 2" not in cell.source
    ok(run(assigned, "-m", "autograder", "assign", "--check"))


def test_check_knows_it(assigned):
    out = ok(run(assigned, "-m", "autograder", "check", f"solutions/{SLUG}/exercises_torch.ipynb"))
    assert f"✓ {EXERCISE}: the public check passed" in out
    code = textwrap.dedent(f"""\
        import tensorflow as tf
        import autograder
        check = autograder.checker("{SLUG}", "tf")
        def {EXERCISE}(x):
            return x * 3
        check("{EXERCISE}")
        """)
    out = ok(run(assigned, "-c", code))
    assert out.startswith(f"✗ {EXERCISE}") and "doubles [1, 2, 3]" in out


def test_grade_gives_the_reference_full_marks_and_the_untouched_view_zero(assigned, tmp_path):
    reference = tmp_path / "in" / "reference.ipynb"
    untouched = tmp_path / "in" / "untouched.ipynb"
    reference.parent.mkdir()
    shutil.copy(assigned / "solutions" / SLUG / "exercises_torch.ipynb", reference)
    shutil.copy(assigned / "chapters" / SLUG / "exercises_tf.ipynb", untouched)
    out = tmp_path / "out"
    ok(run(assigned, "-m", "autograder", "grade", str(reference), str(untouched), "--out", str(out)))
    with (out / "grades.csv").open(encoding="utf-8") as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    full = sum(POINTS.values())
    assert float(rows["reference"][EXERCISE]) == full and float(rows["reference"]["total"]) == full
    assert float(rows["untouched"][EXERCISE]) == 0 and float(rows["untouched"]["total"]) == 0
    assert rows["reference"]["chapter"] == SLUG


def test_the_release_hands_it_out(assigned, tmp_path):
    ok(run(assigned, "-m", "autograder", "release", "--out", str(tmp_path / "handout")))
    folder = tmp_path / "handout" / SLUG
    assert {f"exercises_{fw}.ipynb" for fw in FRAMEWORKS} <= {p.name for p in folder.iterdir()}
    assert (folder / "course_checks").is_dir()
    shipped = "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())
    assert "x * 2" not in shipped and "np.float64)).astype" not in shipped   # no solution, no oracle


def test_the_gradescope_zip_takes_it(assigned, tmp_path):
    ok(run(assigned, "-m", "autograder", "gradescope", SLUG, "--out", str(tmp_path / "z.zip")))
    names = set(zipfile.ZipFile(tmp_path / "z.zip").namelist())
    assert {f"solutions/{SLUG}/exercises_{fw}.ipynb" for fw in FRAMEWORKS} <= names
    assert {f"autograder/checks/ch{SLUG}.py", f"autograder/oracle/ch{SLUG}.py"} <= names
    config = json.loads(zipfile.ZipFile(tmp_path / "z.zip").read("gradescope.json"))
    assert config == {"chapter": SLUG, "framework": None}


def test_the_course_wide_tests_list_it(assigned):
    listed = ok(run(assigned, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                    "tests/test_assessment.py", "tests/test_notebooks_nbval.py", "tests/test_assign.py",
                    "tests/test_chapters.py"))
    for test in (f"test_assessment.py::test_the_pages_earn_at_most_a_quarter_of_the_points[{SLUG}-torch]",
                 f"test_notebooks_nbval.py::test_masters_reproduce_their_stored_outputs[{SLUG}]",
                 f"test_notebooks_nbval.py::test_untouched_student_view_says_not_implemented[{SLUG}-tf]",
                 f"test_assign.py::test_committed_student_view_is_generated[{SLUG}/torch]",
                 f"test_chapters.py::test_the_repository_agrees_with_the_record[{SLUG}]"):
        assert test in listed, test
