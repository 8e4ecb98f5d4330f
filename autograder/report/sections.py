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


NOT_IMPLEMENTED = "not implemented yet"


def untouched(section: Section) -> bool:
    """Still `raise NotImplementedError`: no check passed, and one says so (checks/api.py's
    NotImplementedYet; student.py's verdict reads the same words)."""
    return (bool(section.checks) and not any(c.passed for c in section.checks)
            and any(c.output.rstrip().endswith(NOT_IMPLEMENTED) for c in section.checks))


def status(section: Section) -> str:
    """One word or phrase per section, for overviews: what a reader should look at first."""
    if section.builtins:
        return "forbidden built-in"
    if not section.checks:
        return "no checks ran"
    if untouched(section):
        return NOT_IMPLEMENTED
    failed = sum(1 for c in section.checks if not c.passed)
    return "passed" if not failed else f"{failed} of {len(section.checks)} checks failed"


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


UNRECOGNISED = "unrecognised"   # the group of files that are no assignment at all (not a notebook...)


def by_assignment(results: list[SubmissionResult]) -> dict[str, list[SubmissionResult]]:
    """The batch split per assignment (chapter), in chapter order, for its own summary, grades file
    and histogram. A batch of one chapter is one group, its unreadable files included; in a batch
    that mixes chapters, the files that name no chapter form the group UNRECOGNISED, last."""
    chapters = sorted({r.chapter for r in results if r.chapter})
    if len(chapters) <= 1:
        return {chapters[0] if chapters else UNRECOGNISED: list(results)} if results else {}
    groups = {c: [r for r in results if r.chapter == c] for c in chapters}
    stray = [r for r in results if not r.chapter]
    return groups | ({UNRECOGNISED: stray} if stray else {})


def exercise_columns(results: list[SubmissionResult]) -> list[str]:
    """Exercise names, each assignment's in its order, united across chapters in first-seen order
    over the sorted results (so the order does not depend on which job finished first)."""
    seen: dict[str, None] = {}
    for result in by_name(results):
        for section in sections(result):
            if section.title != NOTEBOOK:
                seen.setdefault(section.title, None)
    return list(seen)
