"""A handed-out notebook (`python -m autograder release`, whose setup cell imports `course_checks`)
is a normal submission: solved, it earns from `grade`, from `check`, from the Gradescope zip and
from the handout's own `python -m course_checks` what the repository's solved notebook earns, with
no "does not run top to bottom" and no noise in its feedback.

Both solved notebooks are made the same way: the master's code pasted into every cell that the
student view leaves to the student, so they differ in their setup cell alone. The handout is handed
in as a student would, its whole folder with it: a `course_checks/` of the student's making sits
beside the notebook, and it must never run, on the grader's side or in the sandbox (the grader's
own stub binds `check` there)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import chapters, cli, export
from autograder.chapters import REPO_ROOT
from autograder.release import PACKAGE

pytestmark = [pytest.mark.xdist_group("frameworks")]

RECORD = chapters.chapter("02_principles")   # the chapter of the new-user report
FRAMEWORK = "torch"


# What a student's own `course_checks/` does if anything imports it: leaves a mark on the grader's
# side (a host path the sandbox cannot reach), and breaks the setup cell in the sandbox.
HOSTILE = """import pathlib
try:
    pathlib.Path({marker!r}).write_text("imported")
except OSError:
    pass
def checker(*args, **kwargs):
    raise RuntimeError("the student's own course_checks ran")
check = checker
"""


def graft(view: Path, master: Path, into: Path) -> Path:
    """A student view with the master's code in every cell it leaves to the student (cells keep
    their ids from master to student view); its setup cell untouched."""
    nb = nbformat.read(str(view), as_version=4)
    solved = {c.id: c.source for c in nbformat.read(str(master), as_version=4).cells if c.cell_type == "code"}
    grafted = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and "raise NotImplementedError" in cell.source:
            cell.source, grafted = solved[cell.id], grafted + 1
    assert grafted == len(RECORD.exercises)   # one cell per exercise, each solved
    into.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(into))
    return into


def plant(folder: Path, marker: Path) -> None:
    (folder / PACKAGE).mkdir(parents=True, exist_ok=True)
    (folder / PACKAGE / "__init__.py").write_text(HOSTILE.format(marker=str(marker)))


@pytest.fixture(scope="module")
def handout(tmp_path_factory) -> Path:
    """The chapter released as `release` writes it (in a fresh Python: it loads both frameworks)."""
    out = tmp_path_factory.mktemp("handout")
    code = ("import sys; from pathlib import Path; from autograder import chapters; "
            "from autograder.release import release_chapter; "
            f"release_chapter(chapters.chapter({RECORD.slug!r}), Path(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / RECORD.slug


@pytest.fixture(scope="module")
def marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("marker") / "the student's course_checks ran"


@pytest.fixture(scope="module")
def solved(handout, marker, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("class")
    released = graft(handout / f"exercises_{FRAMEWORK}.ipynb", RECORD.master_path(FRAMEWORK),
                     folder / "handout" / "exercises_torch.ipynb")
    assert f"import {PACKAGE}" in released.read_text() and "import autograder" not in released.read_text()
    plant(released.parent, marker)
    repository = graft(RECORD.student_path(FRAMEWORK), RECORD.master_path(FRAMEWORK), folder / "repository.ipynb")
    assert "import autograder" in repository.read_text()
    return {"handout": released, "repository": repository}


@pytest.fixture(scope="module")
def graded(solved, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("out")
    assert cli.main(["grade", *map(str, solved.values()), "--out", str(out)]) == 0
    return {name: json.loads((out / name / "results.json").read_text()) | {"_feedback":
            (out / name / "feedback.md").read_text()} for name in ("exercises_torch", "repository")}


def _score(data: dict) -> tuple[float, float]:
    return (sum(t["score"] for t in data["tests"]), sum(t["max_score"] for t in data["tests"]))


def _verdicts(data: dict) -> list[tuple]:
    """Every test of a results.json as the student sees it: name, points, status."""
    return [(t["name"], t["score"], t["max_score"], t.get("status")) for t in data["tests"]]


def test_grade_gives_a_solved_handout_the_repository_notebooks_score(graded, marker):
    handout, repository = graded["exercises_torch"], graded["repository"]
    assert _verdicts(handout) == _verdicts(repository)
    assert _score(handout) == _score(repository) == (_score(repository)[1], _score(repository)[1]) != (0, 0)
    assert not marker.exists()


def test_a_handout_runs_top_to_bottom_with_no_noise_in_its_feedback(graded):
    feedback = graded["exercises_torch"]["_feedback"]
    for noise in ("ModuleNotFoundError", "NameError", "does not run", PACKAGE, "RuntimeError"):
        assert noise not in feedback, feedback


def test_check_gives_a_solved_handout_the_repository_notebooks_verdicts(solved, marker, capsys, monkeypatch):
    monkeypatch.chdir(solved["handout"].parent)   # as a student would run it: from the folder
    printed = {}
    for name, path in solved.items():
        assert cli.main(["check", str(path)]) == 0
        printed[name] = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("note:")]
    assert printed["handout"] == printed["repository"]
    assert printed["handout"][0] == "✓ runs top to bottom"
    assert all(line.startswith("✓") for line in printed["handout"]), printed["handout"]
    assert not marker.exists()


def test_the_handout_checks_a_whole_notebook_itself(handout, solved, tmp_path):
    """`python -m course_checks NOTEBOOK`, from the chapter folder, in a Python that cannot import
    the grader: every exercise's public checks, the same verdicts as `autograder check`."""
    folder = tmp_path / "student"
    shutil.copytree(handout, folder)
    shutil.copy(solved["handout"], folder / "mine.ipynb")
    block = tmp_path / "block"
    (block / "autograder").mkdir(parents=True)
    (block / "autograder" / "__init__.py").write_text("raise ImportError('the grader is not here')\n")
    env = {**os.environ, "PYTHONPATH": str(block)}
    run = lambda *args: subprocess.run([sys.executable, "-m", PACKAGE, *args], cwd=folder, env=env,
                                       capture_output=True, text=True, timeout=600)
    done = run("mine.ipynb")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "✓ runs top to bottom"
    assert [line.split(":")[0].lstrip("✓ ") for line in lines[1:]] == list(RECORD.exercises)
    assert all(line.startswith("✓") for line in lines[1:]), done.stdout
    untouched = run(f"exercises_{FRAMEWORK}.ipynb")
    assert untouched.returncode == 0 and all("not implemented yet" in line
                                             for line in untouched.stdout.splitlines()[1:]), untouched.stdout
    typo = run("mine.ipynb", "masked_sofmax")
    assert typo.returncode == 2 and "masked_softmax" in typo.stderr


@pytest.mark.slow
def test_the_gradescope_zip_gives_a_solved_handout_the_repository_notebooks_score(solved, graded, marker, tmp_path):
    """The zip's own grader in a fake /autograder (as tests/test_export.py runs it), the handout
    folder handed in whole (the student's own course_checks/ with it)."""
    zipped = export.gradescope_zip(RECORD.slug, FRAMEWORK, tmp_path / "autograder.zip")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(root / "source")
    for script in ("run_autograder", "setup.sh"):
        (root / "source" / script).chmod(0o755)
    shutil.copytree(solved["handout"].parent, root / "submission")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    env.pop("AUTOGRADER_GRADE_CMD", None)
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert _verdicts(results) == _verdicts(graded["repository"])
    assert not any(noise in t["output"] for t in results["tests"]
                   for noise in ("does not run", "ModuleNotFoundError", "NameError", "RuntimeError"))
    assert not marker.exists()
