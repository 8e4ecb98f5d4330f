"""The class summary, per exercise: what to reteach.

`exercise_summary` builds the rows once; the terminal table (table.py) and DIR/summary.md (here)
render them. Per exercise: the class mean, how many earned full marks, and the check failed by the
most submissions that implemented it (hidden checks included: this is for staff).

Submissions that could not be graded are left out of the rows (they say nothing about how hard an
exercise is) and listed by name in summary.md instead. Full marks are the exercise's full marks
(the most any graded submission could score on it), not what ran: a submission whose grading
stopped before an exercise's last check did not earn them.
"""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from autograder.report.feedback import md_code, md_text
from autograder.report.numbers import fmt_percent, fmt_points
from autograder.report.sections import NOTEBOOK, Section, by_name, exercise_columns, sections
from autograder.results import SubmissionResult

NONE_FAILED = "none failed"
NOT_IMPLEMENTED = "not implemented yet"


@dataclass(frozen=True)
class ExerciseSummary:
    exercise: str
    graded: int           # submissions graded on this exercise
    mean: float           # their mean score on it
    max_score: float      # its full marks
    full_marks: int       # how many of them earned full marks
    most_failed: str = ""  # what the most failed check checks (its name without "<exercise>: ")
    failed_by: int = 0    # how many of the submissions that tried the exercise failed that check
    tied: int = 0         # other checks failed by as many
    tried: int = 0        # submissions that implemented it (an untouched one fails every check
                          # alike, which says nothing about what to reteach)

    @property
    def full_share(self) -> float:
        return self.full_marks / self.graded if self.graded else 0.0

    # The cells both renderings show, as text.
    def mean_cell(self) -> str:
        return f"{fmt_points(round(self.mean, 2))} / {fmt_points(self.max_score)}"

    def percent_cell(self) -> str:
        return fmt_percent(self.mean, self.max_score)

    def full_marks_cell(self) -> str:
        return f"{self.full_marks} of {self.graded} ({fmt_points(round(100 * self.full_share, 1))}%)"

    def most_failed_cell(self) -> str:
        if not self.most_failed:
            return NONE_FAILED
        return self.most_failed + (f" (+{self.tied} as often)" if self.tied else "")

    def failed_by_cell(self) -> str:
        return f"{self.failed_by} of {self.tried}" if self.failed_by else ""


CHECK_HEADER = "most failed check"
HEADERS = ["exercise", "mean", "%", "full marks", CHECK_HEADER, "failed by"]


def exercise_summary(results: list[SubmissionResult]) -> list[ExerciseSummary]:
    """One row per exercise, in grades.csv's column order, over the graded submissions."""
    graded = [r for r in results if not r.error]
    rows = []
    for name in exercise_columns(graded):
        scored = [s for r in by_name(graded) for s in sections(r) if s.title == name and s.checks]
        if not scored:
            continue
        top = max(s.max_score for s in scored)
        tried = [s for s in scored if not _untouched(s)]
        failed: Counter[str] = Counter()
        for section in tried:   # Counter keeps first-seen order: ties go to the earlier check
            failed.update({c.name: 1 for c in section.checks if not c.passed})
        most = failed.most_common()
        worst, count = most[0] if most else ("", 0)
        rows.append(ExerciseSummary(
            exercise=name, graded=len(scored), mean=round(statistics.fmean(s.score for s in scored), 6),
            max_score=top, full_marks=sum(1 for s in scored if top > 0 and s.score >= top),
            most_failed=worst.removeprefix(f"{name}: "), failed_by=count,
            tied=sum(1 for _, n in most[1:] if n == count), tried=len(tried)))
    return rows


def _untouched(section: Section) -> bool:
    """Still `raise NotImplementedError`: no check passed, and one says so (checks/api.py's
    NotImplementedYet; student.py's verdict reads the same words)."""
    return (not any(c.passed for c in section.checks)
            and any(c.output.rstrip().endswith(NOT_IMPLEMENTED) for c in section.checks))


def summary_cells(row: ExerciseSummary) -> list[str]:
    return [row.exercise, row.mean_cell(), row.percent_cell(), row.full_marks_cell(),
            row.most_failed_cell(), row.failed_by_cell()]


def _overview(results: list[SubmissionResult]) -> list[str]:
    graded = [r for r in results if not r.error]
    errored = len(results) - len(graded)
    plural = "" if len(results) == 1 else "s"
    line = f"{len(results)} submission{plural}: {len(graded)} graded, {errored} could not be graded."
    pcts = [100 * r.score / r.max_score for r in graded if r.max_score > 0]
    if pcts:
        line += (f" Total: mean {fmt_points(round(statistics.fmean(pcts), 1))}%,"
                 f" median {fmt_points(round(statistics.median(pcts), 1))}%.")
    broken = sum(1 for r in graded for s in sections(r) if s.title == NOTEBOOK
                 for c in s.checks if not c.passed)
    if broken:
        line += f" {broken} notebook{'s do' if broken > 1 else ' does'} not run top to bottom."
    return [line]


def summary_markdown(results: list[SubmissionResult]) -> str:
    """DIR/summary.md. Names, paths and errors come from students: they stay inert text."""
    chapters = sorted({r.chapter for r in results if r.chapter})
    out = [f"# Class summary: {md_text(', '.join(chapters) or 'no assignment recognised')}", "",
           *_overview(results), ""]
    rows = exercise_summary(results)
    if rows:
        out += ["| " + " | ".join(HEADERS) + " |", "|---|--:|--:|--:|---|--:|"]
        for row in rows:
            cells = summary_cells(row)
            out.append("| " + " | ".join([md_code(cells[0]).replace("|", "\\|"),
                                           *(md_text(c) for c in cells[1:])]) + " |")
        out += ["", "*failed by*: among the submissions that implemented the exercise; one still raising "
                "`NotImplementedError` scores 0 in the mean and full marks but fails every check alike.", ""]
    errored = [r for r in by_name(results) if r.error]
    if errored:
        out += ["## Could not be graded", ""]
        out += [f"- {md_code(r.submission)} ({md_code(r.path)}): {md_text(r.error or '')}" for r in errored]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
