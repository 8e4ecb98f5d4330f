"""Every chapter's exercise notebooks run (one parametrised case per chapter record): masters
reproduce their stored outputs, student views run untouched.

- `pytest --nbval` re-executes each master and compares every cell's output with the stored one
  (sanitized with tests/nbval_sanitize.cfg), so a master committed with stale outputs fails.
- `pytest --nbval-lax` runs each untouched student view top to bottom: it must not raise.
- An untouched student view's check() cells all say "not implemented yet"; a master's stored check
  outputs all say that the public checks passed.
"""
import subprocess
import sys

import nbformat
import pytest

from autograder import notebooks
from autograder.chapters import FRAMEWORKS, REPO_ROOT, assignments, chapter, chapters_with_exercises

RECORDS = pytest.mark.parametrize("record", chapters_with_exercises(), ids=lambda c: c.slug)
ASSIGNMENTS = pytest.mark.parametrize("slug, framework", assignments(), ids=[f"{c}-{f}" for c, f in assignments()])


def _rel(path) -> str:
    return str(path.relative_to(REPO_ROOT))


def _pytest(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-q"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"pytest {' '.join(args)} exited {proc.returncode}:\n{tail}"


@pytest.mark.slow
@RECORDS
def test_masters_reproduce_their_stored_outputs(record):
    _pytest("--nbval", *(_rel(record.master_path(fw)) for fw in FRAMEWORKS),
            "--nbval-sanitize-with", "tests/nbval_sanitize.cfg")


@pytest.mark.slow
@RECORDS
def test_student_views_run_without_error(record):
    _pytest("--nbval-lax", *(_rel(record.student_path(fw)) for fw in FRAMEWORKS))


def _check_cells(nb):
    return [c for c in nb.cells if notebooks.CHECK_TAG in notebooks.tags(c)]


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def _errors(nb) -> list[str]:
    return [f"{c.id}: {o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if o.get("output_type") == "error"]


@pytest.mark.slow
@ASSIGNMENTS
def test_untouched_student_view_says_not_implemented(slug, framework):
    from nbclient import NotebookClient

    path = chapter(slug).student_path(framework)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    assert not _errors(nb)
    names = notebooks.exercises(nb)
    assert tuple(names) == chapter(slug).exercises
    checks = _check_cells(nb)
    assert [c.source for c in checks] == [f'check("{name}")' for name in names]
    for name, cell in zip(names, checks):
        assert _stdout(cell).strip() == f"… {name}: not implemented yet", (name, cell.outputs)


@ASSIGNMENTS
def test_master_stored_outputs_say_all_checks_passed(slug, framework):
    nb = nbformat.read(chapter(slug).master_path(framework), as_version=4)
    assert not _errors(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "the master was not executed top to bottom"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    names = notebooks.exercises(nb)
    checks = _check_cells(nb)
    assert tuple(names) == chapter(slug).exercises and len(checks) == len(names)
    for name, cell in zip(names, checks):
        out = _stdout(cell)
        assert out.startswith(f"✓ {name}: all ") and out.rstrip().endswith("public checks passed"), (name, out)
