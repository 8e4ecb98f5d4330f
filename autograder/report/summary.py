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
from autograder.report.sections import (NOT_IMPLEMENTED, NOTEBOOK, UNRECOGNISED, Section,  # noqa: F401
                                        by_assignment, by_name, exercise_columns, sections, untouched)
from autograder.results import SubmissionResult

NONE_FAILED = "none failed"


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
        if not self.tied:
            return self.most_failed
        others = "1 other check" if self.tied == 1 else f"{self.tied} other checks"
        return f"{self.most_failed} (tied: {others} failed by as many)"

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
    return untouched(section)


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
    broken = [r.submission for r in by_name(graded) for s in sections(r) if s.title == NOTEBOOK
              and any(not c.passed for c in s.checks)]
    if broken:
        names = ", ".join(md_code(name) for name in broken)
        line += f" {len(broken)} notebook{'s do' if len(broken) > 1 else ' does'} not run top to bottom: {names}."
    return [line]


MIXED = ("This batch mixes {count} assignments. Each has its own section here, its own "
         "`grades_<chapter>.csv` and `histogram_<chapter>.png`; no number is averaged across them. "
         "To refuse every notebook but one assignment's, grade with `--assignment CHAPTER/FRAMEWORK`.")


def summary_markdown(results: list[SubmissionResult]) -> str:
    """DIR/summary.md: one assignment's summary, or one section per assignment for a batch that
    mixes them (sections.by_assignment). Names, paths and errors come from students: inert text."""
    groups = by_assignment(results)
    if len(groups) <= 1:
        chapter = next(iter(groups), UNRECOGNISED)
        title = "no assignment recognised" if chapter == UNRECOGNISED else chapter
        return _join([f"# Class summary: {md_text(title)}", "", *_assignment(results, "##")])
    known = [c for c in groups if c != UNRECOGNISED]
    out = [f"# Class summary: {md_text(', '.join(known))}", "", MIXED.format(count=len(known)), ""]
    for chapter, members in groups.items():
        if chapter == UNRECOGNISED:
            out += ["## Not any assignment", "", "These files could not be read as a notebook of any "
                    "assignment (they are in `grades_unrecognised.csv`):", ""]
            out += [f"- {md_code(r.submission)} ({md_code(r.path)}): {md_text(r.error or '')}" for r in by_name(members)]
            out.append("")
            continue
        out += [f"## {md_text(chapter)}", "", *_assignment(members, "###")]
    return _join(out)


def _join(lines: list[str]) -> str:
    return "\n".join(lines).rstrip("\n") + "\n"


def _assignment(results: list[SubmissionResult], heading: str) -> list[str]:
    out = [*_overview(results), ""]
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
        out += [f"{heading} Could not be graded", ""]
        out += [f"- {md_code(r.submission)} ({md_code(r.path)}): {md_text(r.error or '')}" for r in errored]
        out.append("")
    return out
