"""The assign stage: generate every student notebook from its master (`make exercises`).

    python -m autograder assign            write chapters/<chapter>/exercises_<fw>.ipynb
    python -m autograder assign --check    exit 1, listing the student views that are out of date

From master to student view:
- the lines between `# BEGIN SOLUTION` and `# END SOLUTION` (each alone on its line) are replaced,
  at the marker's indentation, by `# YOUR CODE HERE` and `raise NotImplementedError`;
- cells tagged `solution-only` are left out;
- outputs, execution counts and execution timings are cleared;
- everything else is kept as it is: text, signatures, docstrings, cell ids, metadata;
- a note at the top names the master and the command, for maintainers.

The output depends on the master only (ids come from the master, JSON via `nbformat.write`), so
generating twice gives the same bytes, and `--check` can compare with what is committed.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import nbformat

from autograder import chapters, examples, notebooks

BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"
PLACEHOLDER = ("# YOUR CODE HERE", "raise NotImplementedError")
NOTE_ID = "generated-note"
_MARKER_LINE = re.compile(r"^(?P<indent>[ \t]*)#\s*(?P<which>BEGIN|END) SOLUTION\s*$")
_MARKER_ANYWHERE = re.compile(r"(BEGIN|END) SOLUTION")
_CLEARED_CELL_METADATA = ("execution",)   # nbclient's timings: they change on every run


class AssignError(Exception):
    """A master that cannot be turned into a student view; the message says where and why."""


def strip_solutions(source: str, cell_index: int) -> str:
    """One code cell's source with each solution block replaced by the placeholder."""
    out: list[str] = []
    begin_line = None
    for number, line in enumerate(source.split("\n"), start=1):
        marker = _MARKER_LINE.match(line)
        if marker is None:
            if _MARKER_ANYWHERE.search(line):
                raise AssignError(f"cell {cell_index}, line {number}: a solution marker must be alone on "
                                  f"its line, as '{BEGIN}' or '{END}': {line.strip()!r}")
            if begin_line is None:
                out.append(line)
            continue
        if marker["which"] == "BEGIN":
            if begin_line is not None:
                raise AssignError(f"cell {cell_index}, line {number}: nested BEGIN SOLUTION (the block "
                                  f"opened on line {begin_line} is not closed)")
            begin_line = number
            out += [marker["indent"] + text for text in PLACEHOLDER]
        else:
            if begin_line is None:
                raise AssignError(f"cell {cell_index}, line {number}: END SOLUTION without BEGIN SOLUTION")
            begin_line = None
    if begin_line is not None:
        raise AssignError(f"cell {cell_index}, line {begin_line}: BEGIN SOLUTION without END SOLUTION")
    return "\n".join(out)


def _note(chapter: str, framework: str):
    master = notebooks.master_path(chapter, framework).relative_to(notebooks.REPO_ROOT).as_posix()
    text = (f"> Generated from `{master}` by `make exercises`. Maintainers: edit the master and "
            "regenerate; don't edit this file. Students: this notebook is yours to work in.")
    cell = nbformat.v4.new_markdown_cell(text)
    cell.id = NOTE_ID
    return cell


def _check_course(nb, chapter: str, framework: str) -> None:
    course = nb.metadata.get("course") or {}
    if course.get("chapter") != chapter or course.get("framework") != framework:
        raise AssignError(f"metadata.course is {dict(course)!r}, but the file's place says "
                          f"{{'chapter': {chapter!r}, 'framework': {framework!r}}}")


def _check_binding(nb, chapter: str, framework: str) -> None:
    """`check` is bound to the assignment in a code cell (autograder.checker: nothing guessed)."""
    want = chapters.chapter(chapter).binding(framework)
    for cell in nb.cells:
        code = [line.split("#", 1)[0].strip() for line in cell.source.split("\n")] if cell.cell_type == "code" else []
        if all(line in code for line in want.split("\n")):
            return
    raise AssignError(f"no code cell binds check to this assignment; the setup cell needs:\n{want}")


def student_view(master, chapter: str, framework: str):
    """The student notebook generated from a master notebook (the master is not modified)."""
    _check_course(master, chapter, framework)
    nb = copy.deepcopy(master)
    cells = [_note(chapter, framework)]
    for index, cell in enumerate(nb.cells):
        if notebooks.SOLUTION_ONLY_TAG in notebooks.tags(cell):
            continue
        if cell.get("id") in (None, NOTE_ID):
            raise AssignError(f"cell {index}: every master cell needs its own id (not {NOTE_ID!r})")
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, index)
            cell.outputs = []
            cell.execution_count = None
        elif _MARKER_ANYWHERE.search(cell.source):
            raise AssignError(f"cell {index}: solution markers in a {cell.cell_type} cell; "
                              "only code cells may contain solutions")
        else:   # worked examples: the oracle's numbers (examples.py)
            try:
                cell.source = examples.fill(cell.source, chapter, f"cell {index}")
            except examples.ExampleError as exc:
                raise AssignError(str(exc)) from None
        for key in _CLEARED_CELL_METADATA:
            cell.metadata.pop(key, None)
        cells.append(cell)
    nb.cells = cells
    nbformat.validate(nb)
    return nb


def render(nb) -> str:
    """The exact text `nbformat.write` puts in a file."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def generate(chapter: str, framework: str) -> str:
    """The student view of one assignment, as file text."""
    path = notebooks.master_path(chapter, framework)
    try:
        master = notebooks.read(path)
        _check_binding(master, chapter, framework)
        return render(student_view(master, chapter, framework))
    except AssignError as exc:
        raise AssignError(f"{path.relative_to(notebooks.REPO_ROOT)}: {exc}") from None


def _normalised(text: str):
    return json.loads(nbformat.writes(nbformat.reads(text, as_version=4)))


def is_current(chapter: str, framework: str) -> bool:
    """Whether the committed student view is what the generator produces now."""
    path = notebooks.student_path(chapter, framework)
    if not path.is_file():
        return False
    try:
        committed = _normalised(path.read_text(encoding="utf-8"))
    except Exception:   # unreadable counts as out of date
        return False
    return committed == _normalised(generate(chapter, framework))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder assign",
                                     description="Regenerate the student notebooks from their masters.")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing the student notebooks that are out of date")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = [(c, f) for c, f in chapters.assignments() if not is_current(c, f)]
            for chapter, framework in stale:
                print(f"out of date: {notebooks.student_path(chapter, framework).relative_to(notebooks.REPO_ROOT)}"
                      f" (run make exercises)")
            return 1 if stale else 0
        for chapter, framework in chapters.assignments():
            text = generate(chapter, framework)
            path = notebooks.student_path(chapter, framework)
            shown = path.relative_to(notebooks.REPO_ROOT)
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                print(f"up to date: {shown}")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {shown}")
        return 0
    except AssignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
