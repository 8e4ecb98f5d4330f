"""autograder/export.py (the Gradescope zip) and autograder/inside_gradescope.py (run_autograder's
plumbing), in a fake /autograder.

The grade pipeline is replaced by a stub (AUTOGRADER_GRADE_CMD) that writes a hand-made result
through the report stage: these tests check selection, copying and every failure path, not
grading itself."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from autograder import export, inside_gradescope
from autograder.chapters import all_chapters, chapters_with_exercises
from autograder.report.gradescope import validate_gradescope

REPO = Path(__file__).resolve().parents[1]
RECORD = chapters_with_exercises()[0]   # the mechanics are the same for every chapter
CHAPTER = RECORD.slug
OTHER = next(c.slug for c in all_chapters() if c.slug != CHAPTER)   # a notebook of another chapter


def notebook(chapter: str | None, framework: str | None) -> str:
    course = {"chapter": chapter, "framework": framework} if chapter else None
    metadata = {"course": course} if course else {}
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": metadata, "cells": []})


@pytest.fixture(scope="module")
def fake_repo(tmp_path_factory) -> Path:
    """The real package, lock and pyproject, with masters for one chapter (solutions/ may still be
    empty in the real repo while the exercises are written)."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "autograder", repo / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (repo / "autograder" / "__pycache__").mkdir()
    (repo / "autograder" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"\0")
    for name in ("pyproject.toml", "requirements.txt", "requirements.in"):
        shutil.copy(REPO / name, repo / name)
    masters = repo / "solutions" / CHAPTER
    masters.mkdir(parents=True)
    for framework in ("torch", "tf"):
        (masters / f"exercises_{framework}.ipynb").write_text(notebook(CHAPTER, framework))
    return repo


@pytest.fixture(scope="module")
def torch_zip(fake_repo, tmp_path_factory) -> Path:
    return export.gradescope_zip(CHAPTER, "torch", tmp_path_factory.mktemp("zip") / "ch02.zip",
                                 repo=fake_repo)


def unpack(archive: Path, into: Path) -> Path:
    """Extract with the mode bits (zipfile.extractall drops them; Gradescope's unzip keeps them)."""
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            target = into / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            os.chmod(target, (info.external_attr >> 16) & 0o777)
    return into


def test_zip_holds_what_gradescope_and_the_grader_need(torch_zip):
    names = set(zipfile.ZipFile(torch_zip).namelist())
    for required in ("setup.sh", "run_autograder", "requirements.txt", "pyproject.toml",
                     "gradescope.json", "autograder/results.py", "autograder/export.py",
                     "autograder/inside_gradescope.py", f"autograder/oracle/ch{CHAPTER}.py",
                     "autograder/report/gradescope_results.schema.json",
                     f"solutions/{CHAPTER}/exercises_torch.ipynb"):
        assert required in names
    assert f"solutions/{CHAPTER}/exercises_tf.ipynb" not in names   # the other framework's master
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_both_frameworks_when_none_is_named(fake_repo, tmp_path):
    names = zipfile.ZipFile(export.gradescope_zip(CHAPTER, None, tmp_path / "z.zip",
                                                  repo=fake_repo)).namelist()
    assert {f"solutions/{CHAPTER}/exercises_{f}.ipynb" for f in ("torch", "tf")} <= set(names)


def test_scripts_are_executable_and_parse(torch_zip, tmp_path):
    root = unpack(torch_zip, tmp_path)
    for script in ("setup.sh", "run_autograder"):
        path = root / script
        assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
        assert path.read_text().startswith("#!/usr/bin/env bash\n")
        subprocess.run(["bash", "-n", str(path)], check=True)
    assert stat.S_IMODE((root / "requirements.txt").stat().st_mode) == 0o644


def test_setup_installs_cpu_torch_pinned_and_the_package_editable(torch_zip):
    z = zipfile.ZipFile(torch_zip)
    setup = z.read("setup.sh").decode()
    assert "apt-get install" in setup and "bubblewrap" in setup and "python3-venv" in setup
    assert "libseccomp2" in setup   # the uid-drop layer's network filter, where bubblewrap cannot run
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in setup
    assert '-r "$SOURCE/requirements.txt"' in setup and '-e "$SOURCE"' in setup
    requirements = z.read("requirements.txt").decode().splitlines()
    assert "torch==2.13.0" in requirements
    assert any(line.startswith("numpy==") for line in requirements)
    assert not any(line.lower().startswith(("tensorflow", "jupyter-book", "playwright"))
                   for line in requirements)
    assert all("==" in line for line in requirements if not line.startswith("#"))
    assert json.loads(z.read("gradescope.json")) == {"chapter": CHAPTER, "framework": "torch"}


def test_tf_zip_pins_tensorflow_not_torch(fake_repo):
    requirements = export.pinned_requirements("tf", fake_repo).splitlines()
    assert "tensorflow_cpu==2.21.0" in requirements
    assert not any(line.startswith("torch==") for line in requirements)


def test_same_sources_give_the_same_zip(fake_repo, torch_zip, tmp_path):
    again = export.gradescope_zip(CHAPTER, "torch", tmp_path / "again.zip", repo=fake_repo)
    assert again.read_bytes() == torch_zip.read_bytes()


def test_unknown_chapter_or_framework_is_refused(fake_repo, tmp_path):
    with pytest.raises(ValueError, match="no chapter '99_nothing'"):
        export.gradescope_zip("99_nothing", None, tmp_path / "z.zip", repo=fake_repo)
    with pytest.raises(ValueError, match="framework"):
        export.gradescope_zip(CHAPTER, "jax", tmp_path / "z.zip", repo=fake_repo)
    without = next((c.slug for c in all_chapters() if not c.has_exercises), None)
    if without:
        with pytest.raises(ValueError, match="has no exercises to grade"):
            export.gradescope_zip(without, None, tmp_path / "z.zip", repo=fake_repo)
    assert not (tmp_path / "z.zip").exists()


def test_main_writes_the_zip_and_reports_misuse(fake_repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "REPO", fake_repo)
    assert export.main([CHAPTER, "--framework", "tf", "--out", str(tmp_path / "o.zip")]) == 0
    assert f"solutions/{CHAPTER}/exercises_tf.ipynb" in zipfile.ZipFile(tmp_path / "o.zip").namelist()
    assert export.main(["99_nothing", "--out", str(tmp_path / "x.zip")]) == 2
    assert "no chapter" in capsys.readouterr().err


# --- run_autograder in a fake /autograder ---------------------------------------------------------

STUB = "CHAPTER = %r\n" % CHAPTER + textwrap.dedent("""\
    # Stands in for `python -m autograder grade NOTEBOOK --out DIR`: one hand-made result.
    import sys
    from pathlib import Path
    from autograder.report import write_submission_report
    from autograder.results import CheckResult, SubmissionResult

    notebook, out = Path(sys.argv[1]), Path(sys.argv[3])
    write_submission_report(SubmissionResult(
        submission=notebook.stem, path=str(notebook), chapter=CHAPTER, framework="torch",
        exercises=["masked_softmax"],
        checks=[CheckResult("masked_softmax", "masked_softmax: rows sum to one", 1, 2, "failed",
                            "hidden", "graded " + notebook.name + "\\nsecret inputs", seed=1)],
    ), out)
""")


@pytest.fixture
def gradescope_root(torch_zip, tmp_path) -> Path:
    """/autograder as Gradescope lays it out: source/ unpacked, run_autograder copied beside it."""
    root = tmp_path / "autograder"
    unpack(torch_zip, root / "source")
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    return root


def run_autograder(root: Path, grade_cmd: str | None = None, python: str = sys.executable) -> dict:
    stub = root.parent / "stub_grade.py"
    stub.write_text(STUB)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": python,
           "AUTOGRADER_GRADE_CMD": grade_cmd or f"{sys.executable} {stub}"}
    done = subprocess.run([str(root / "run_autograder")], env=env, cwd=root, timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads((root / "results" / "results.json").read_text())
    validate_gradescope(data)
    data["_stdout"] = done.stdout
    return data


def test_run_autograder_grades_the_notebook_of_this_chapter(gradescope_root):
    submission = gradescope_root / "submission"
    (submission / "exercises_torch.ipynb").write_text(notebook(CHAPTER, "torch"))
    (submission / "old_ch03.ipynb").write_text(notebook(OTHER, "torch"))
    (submission / ".ipynb_checkpoints").mkdir()
    (submission / ".ipynb_checkpoints" / "x.ipynb").write_text(notebook(CHAPTER, "torch"))
    data = run_autograder(gradescope_root)
    assert data["score"] == 1
    [test] = data["tests"]
    assert test["output"].startswith("graded exercises_torch.ipynb")
    assert "secret inputs" not in test["output"]           # students: first line of a hidden check
    assert "secret inputs" in data["_stdout"]              # staff-only stdout: everything
    assert data["stdout_visibility"] == "hidden"


@pytest.mark.parametrize("files, says", [
    ({}, "No notebook (.ipynb) was submitted"),
    ({"mine.ipynb": (OTHER, "torch")}, f"mine.ipynb: {OTHER} (torch)"),
    ({"tf.ipynb": (CHAPTER, "tf")}, "None of the submitted notebooks is the assignment"),
    ({"a.ipynb": (CHAPTER, "torch"), "sub/b.ipynb": (CHAPTER, "torch")}, "Submit only the one"),
    ({"bare.ipynb": (None, None)}, "bare.ipynb: no assignment in its metadata"),
])
def test_a_submission_that_cannot_be_picked_is_explained(tmp_path, files, says):
    for name, (chapter, framework) in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(notebook(chapter, framework))
    chosen, message = inside_gradescope.select_notebook(tmp_path, CHAPTER, "torch")
    assert chosen is None and says in message


def test_either_framework_is_accepted_when_the_zip_names_none(tmp_path):
    (tmp_path / "nb.ipynb").write_text(notebook(CHAPTER, "tf"))
    assert inside_gradescope.select_notebook(tmp_path, CHAPTER, None) == (tmp_path / "nb.ipynb", "")


def test_run_autograder_explains_a_wrong_notebook_in_results_json(gradescope_root):
    (gradescope_root / "submission" / "mine.ipynb").write_text(notebook(OTHER, "torch"))
    data = run_autograder(gradescope_root)
    assert data["score"] == 0 and data["tests"] == []
    assert f"None of the submitted notebooks is the assignment {CHAPTER} (torch)" in data["output"]
    assert f"mine.ipynb: {OTHER} (torch)" in data["output"]


def test_run_autograder_survives_a_failing_grader(gradescope_root):
    (gradescope_root / "submission" / "nb.ipynb").write_text(notebook(CHAPTER, "torch"))
    data = run_autograder(gradescope_root, grade_cmd=f"{sys.executable} -c 'raise SystemExit(3)'")
    assert data["score"] == 0 and "exit status 3" in data["output"]


def test_run_autograder_survives_a_broken_python(gradescope_root):
    (gradescope_root / "submission" / "nb.ipynb").write_text(notebook(CHAPTER, "torch"))
    data = run_autograder(gradescope_root, python="/bin/false")
    assert data["score"] == 0 and "tell your instructor" in data["output"]


@pytest.mark.slow
@pytest.mark.xdist_group("gallery")
@pytest.mark.parametrize("source", ["master", "student"])
def test_the_real_zip_grades_a_real_notebook_end_to_end(tmp_path, source):
    """No stub: the zip's own grader, sandbox and checks, in a fake /autograder."""
    zipped = export.gradescope_zip(CHAPTER, "torch", tmp_path / "autograder.zip")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(root / "source")
    for script in ("run_autograder", "setup.sh"):
        (root / "source" / script).chmod(0o755)
    # A check that exists only in the unpacked zip proves the zip's own grader is the one running.
    # It passes whatever the submission does, so it adds its point to both scores.
    with (root / "source" / RECORD.checks_path.relative_to(REPO)).open("a") as f:
        f.write(textwrap.dedent(f'''

            @check("{RECORD.exercises[0]}", points=1)
            def test_zip_marker(student, oracle, rng):
                """only in the unpacked zip"""
            '''))
    (root / "submission").mkdir()
    path = RECORD.master_path("torch") if source == "master" else RECORD.student_path("torch")
    shutil.copy(path, root / "submission" / "exercises_torch.ipynb")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    env.pop("AUTOGRADER_GRADE_CMD", None)
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    validate_gradescope(results)
    total = sum(d.points for d in RECORD.declared_checks()) + 1    # the chapter's checks + the marker
    assert sum(t["max_score"] for t in results["tests"]) == total
    assert sum(t["score"] for t in results["tests"]) == (total if source == "master" else 1)
    assert f"{RECORD.exercises[0]}: only in the unpacked zip" in [t["name"] for t in results["tests"]]
