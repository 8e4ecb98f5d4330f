"""What a student may see of each check, decided once for every report format.

The decision, in full:

- A public check ("visible") is shown with everything it says, at once.
- A hidden check is graded at once but shown to students only after the instructor publishes the
  grades: on Gradescope its visibility is "after_published", not "hidden". "hidden" would mean
  never, and students learn most from the checks they failed. Publishing, not the due date, is
  the gate, because late submissions and extensions make the due date differ between students.
- Even then, a failed hidden check shows its name (which says what it tests), its points, and the
  first line of its message (what went wrong), but not the rest: the inputs, array dumps and
  tracebacks would let a student tune a resubmission to the hidden inputs.
- The instructor's copy (`instructor=True` in `feedback.py`; the `stdout` that Gradescope shows
  only to staff) shows every message in full.
"""
from __future__ import annotations

from autograder.results import CheckResult

# results.py's visibility -> Gradescope's. See the module docstring for why not "hidden".
GRADESCOPE_VISIBILITY = {"visible": "visible", "hidden": "after_published"}

WITHHELD = "(The rest of a hidden check's message is withheld.)"
FIRST_LINE_LIMIT = 200   # long enough for "expected zeros, got NaN in row 1", short of an array dump


def first_line(text: str) -> str:
    """The first non-blank line, cut to FIRST_LINE_LIMIT characters."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= FIRST_LINE_LIMIT else line[: FIRST_LINE_LIMIT - 1] + "…"
    return ""


def student_output(check: CheckResult) -> str:
    """The part of `check.output` that a student may read."""
    if check.visibility == "visible" or not check.output.strip():
        return check.output
    head = first_line(check.output)
    rest_exists = check.output.strip() != head
    return f"{head}\n{WITHHELD}" if rest_exists else head


def shown_output(check: CheckResult, instructor: bool) -> str:
    return check.output if instructor else student_output(check)
