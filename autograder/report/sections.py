"""A SubmissionResult regrouped the way a reader goes through it: the notebook, then exercise by
exercise in the assignment's order. The Markdown and HTML feedback both render this view."""
from __future__ import annotations

from dataclasses import dataclass, field

from autograder.results import CheckResult, SubmissionResult, points

FRAMEWORK_LABELS = {"torch": "PyTorch", "tf": "TensorFlow"}
NOTEBOOK = "notebook"   # the exercise name results.py gives to whole-notebook lines

# The headings every report shows a student or instructor (feedback.md and .html, Gradescope's
# summary), written once so that they cannot drift apart.
NOT_GRADED = "This submission could not be graded"
INSTRUCTOR_NOTES = "For the instructor: what the built-in check could not settle"
FORBIDDEN = "Forbidden built-in"


def framework_label(framework: str | None) -> str:
    if framework is None:
        return "framework unknown"
    return FRAMEWORK_LABELS.get(framework, framework)


@dataclass
class Section:
    title: str                    # the exercise name, or "notebook"
    checks: list[CheckResult] = field(default_factory=list)
    builtins: list[str] = field(default_factory=list)   # forbidden calls seen in this exercise

    @property
    def score(self) -> float:
        return points(self.checks)[0]

    @property
    def max_score(self) -> float:
        return points(self.checks)[1]


def sections(result: SubmissionResult) -> list[Section]:
    """The notebook section (if it has checks), then one section per exercise.

    Exercises come in the assignment's order; any exercise that only the checks or the built-in
    scan mention follows, in first-seen order, so nothing graded is ever dropped from a report."""
    by_name: dict[str, Section] = {}

    def section(name: str) -> Section:
        return by_name.setdefault(name, Section(name))

    if any(c.exercise == NOTEBOOK for c in result.checks):
        section(NOTEBOOK)
    for name in result.exercises:
        section(name)
    for check in result.checks:
        section(check.exercise).checks.append(check)
    for name, calls in result.builtins.items():
        section(name).builtins.extend(calls)
    return list(by_name.values())


def one_line(text: str) -> str:
    """Collapse any whitespace run (newlines included) to one space."""
    return " ".join(text.split())


def by_name(results: list[SubmissionResult]) -> list[SubmissionResult]:
    """The order of every batch report: by name, case-insensitively, whatever finished first."""
    return sorted(results, key=lambda r: (r.submission.casefold(), r.submission))


def exercise_columns(results: list[SubmissionResult]) -> list[str]:
    """Exercise names, each assignment's in its order, united across chapters in first-seen order
    over the sorted results (so the order does not depend on which job finished first)."""
    seen: dict[str, None] = {}
    for result in by_name(results):
        for section in sections(result):
            if section.title != NOTEBOOK:
                seen.setdefault(section.title, None)
    return list(seen)
