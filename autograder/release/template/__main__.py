"""`python -m course_checks NOTEBOOK [EXERCISE]`: every public check of a handed-out notebook.

Run it from the chapter's folder (the one holding `course_checks/`):

    python -m course_checks exercises_torch.ipynb

It runs the notebook's code cells top to bottom in a fresh namespace, as "Restart Kernel and Run All
Cells" would (the `check(...)` cells stay quiet), says which cells failed, then runs the public checks
of every exercise (or of EXERCISE) and prints one verdict each, as `check(...)` does in the notebook.
Exit status: 0 when it ran, whatever the checks said; 2 for a file that is not a course notebook or
an exercise the notebook does not have.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from course_checks.runtime import Checker
from course_checks.student import verdict

USAGE = "usage: python -m course_checks NOTEBOOK [EXERCISE]"


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else str(source)
    # IPython's line magics and shell escapes are not Python: left out, as the grader does
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))


def _quiet(exercise: str) -> None:
    """`check(...)` while the cells run: the verdicts come once, at the end."""


def run_cells(cells: list[dict]) -> tuple[dict, Checker | None, list[str]]:
    """Run the code cells in order; the namespace, the notebook's checker and one line per failed cell."""
    namespace: dict = {"__name__": "__main__"}
    checker, failures = None, []
    code_cells = [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    for number, cell in enumerate(code_cells, start=1):
        label = f"code cell {number}"
        try:
            exec(compile(_source(cell), f"<{label}>", "exec"), namespace)
        except (Exception, SystemExit) as exc:   # a cell's error or exit() does not stop the others
            shown = traceback.format_exception_only(type(exc), exc)[-1].strip()
            failures.append(f"{label}: {shown}")
        if isinstance(namespace.get("check"), Checker):
            checker = namespace["check"]
            namespace["check"] = _quiet
    return namespace, checker, failures


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2 or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    path = Path(args[0])
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {path} is not a notebook this can read ({exc})", file=sys.stderr)
        return 2
    namespace, checker, failures = run_cells(cells)
    if checker is None:
        print(f"error: no cell of {path} binds check to its assignment "
              '(import course_checks / check = course_checks.checker("CHAPTER", "FRAMEWORK"))', file=sys.stderr)
        return 2
    exercises = list(checker.exercises)
    if len(args) == 2:
        if args[1] not in exercises:
            print(f"error: '{args[1]}' is not an exercise of {checker.chapter} "
                  f"(its exercises: {', '.join(exercises)})", file=sys.stderr)
            return 2
        exercises = [args[1]]
    if failures:
        print("✗ the notebook does not run from top to bottom; what could run was still checked:")
        print("\n".join(f"  {line}" for line in failures))
    else:
        print("✓ runs top to bottom")
    for exercise in exercises:
        print(verdict(exercise, checker.results(namespace, exercise)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
