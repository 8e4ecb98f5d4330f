"""Where the exercise notebooks live, and what is inside them.

    solutions/<chapter>/exercises_<framework>.ipynb   the master: solved, with solution markers
    chapters/<chapter>/exercises_<framework>.ipynb    the student view, generated from the master

The masters are trusted; a submission's structure is always read from its master, never from the
submission itself. Which assignments exist is the chapter records' business (`chapters.assignments()`),
never a folder listing.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

from autograder import chapters
from autograder.chapters import FRAMEWORKS, REPO_ROOT  # noqa: F401  (re-exported for the tests)

CHECK_TAG = "check"            # the self-check cell after each exercise: check("<name>")
SOLUTION_ONLY_TAG = "solution-only"


def master_path(chapter: str, framework: str) -> Path:
    """The solved master notebook of an assignment (from its chapter record)."""
    return chapters.chapter(chapter).master_path(framework)


def student_path(chapter: str, framework: str) -> Path:
    """The generated student notebook of an assignment (from its chapter record)."""
    return chapters.chapter(chapter).student_path(framework)


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def exercise_of(cell) -> str | None:
    """The exercise a cell defines (`metadata.course.exercise`), or None."""
    course = cell.get("metadata", {}).get("course") or {}
    return course.get("exercise") if isinstance(course, dict) else None


def exercises(nb) -> list[str]:
    """The exercise names of a notebook, in the order their defining cells appear."""
    names: list[str] = []
    for cell in nb.cells:
        name = exercise_of(cell)
        if name and name not in names:
            names.append(name)
    return names


def read(path: Path | str):
    return nbformat.read(str(path), as_version=4)


def load_namespace(path: Path | str) -> dict:
    """Run a notebook's code cells, except the `check` cells, in a fresh namespace, and return it.

    For the project's tests: it runs in this process, so only use it on trusted notebooks (the
    masters). Cells run as plain Python; IPython magics are not supported.
    """
    nb = read(path)
    namespace: dict = {"__name__": "__notebook__"}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or CHECK_TAG in tags(cell):
            continue
        code = compile(cell.source, f"{Path(path).name}[cell {index}]", "exec")
        exec(code, namespace)
    return namespace
