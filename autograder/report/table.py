"""The batch as a table: grades.csv for the LMS, and the summary for the terminal.

grades.csv (or grades_<chapter>.csv, one per assignment of a batch that mixes them; see
report/__init__.py): one row per submission, sorted by name; columns
`submission, file, chapter, framework, <exercise>..., total, max_total, error`; `file` is the
submitted file's path as given on the command line (the submission's name is a cleaned-up form).
Exercise columns follow each assignment's order, united across chapters in first-seen order (over
the sorted rows, so the header does not depend on which job finished first). A cell is empty where
the submission's assignment has no such exercise. The file is UTF-8 without a byte-order mark (a
BOM would become part of the first header name in several LMS importers), with a header row and
the csv module's quoting.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autograder.report.atomic import write_atomic
from autograder.report.numbers import fmt_percent, fmt_points
from autograder.report.sections import (NOTEBOOK, UNRECOGNISED, by_assignment, by_name, exercise_columns,
                                        framework_label, one_line, sections)
from autograder.report.summary import CHECK_HEADER, HEADERS, exercise_summary, summary_cells
from autograder.results import SubmissionResult

FIXED_HEAD = ["submission", "file", "chapter", "framework"]
FIXED_TAIL = ["total", "max_total", "error"]
# A spreadsheet runs a cell starting with these as a formula; error text can quote student code.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _exercise_cells(result: SubmissionResult) -> dict[str, str]:
    return {s.title: fmt_points(s.score) for s in sections(result) if s.title != NOTEBOOK}


def _safe_text(text: str) -> str:
    text = one_line(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def grade_rows(results: list[SubmissionResult]) -> list[list[str]]:
    """Header row, then one row per submission: the exact cells of grades.csv."""
    exercises = exercise_columns(results)
    rows = [FIXED_HEAD + exercises + FIXED_TAIL]
    for r in by_name(results):
        cells = _exercise_cells(r)
        rows.append([
            r.submission, _safe_text(r.path), r.chapter or "", r.framework or "",
            *(cells.get(name, "") for name in exercises),
            fmt_points(r.score),
            fmt_points(r.max_score) if r.checks else "",   # unknown, not 0, when nothing ran
            _safe_text(r.error or ""),
        ])
    return rows


def write_grades_csv(results: list[SubmissionResult], path: Path) -> Path:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(grade_rows(results))   # RFC 4180: CRLF, minimal quoting
    return write_atomic(Path(path), buffer.getvalue())


# --- terminal -------------------------------------------------------------------------------------

def summary_table(results: list[SubmissionResult]) -> Table:
    """Per submission: assignment, total, and the error if any."""
    plural = "" if len(results) == 1 else "s"
    table = Table(title=f"Graded {len(results)} submission{plural}", title_justify="left")
    table.add_column("submission")
    table.add_column("assignment")
    table.add_column("score", justify="right")
    table.add_column("%", justify="right")
    table.add_column("error", overflow="fold", style="red")
    for r in by_name(results):
        assignment = f"{r.chapter or '?'} {framework_label(r.framework)}" if r.chapter else "?"
        # Text, not str: a file named "[red]x" must print as itself, not as rich markup
        table.add_row(Text(r.submission), Text(assignment),
                      f"{fmt_points(r.score)} / {fmt_points(r.max_score)}",
                      fmt_percent(r.score, r.max_score), Text(one_line(r.error or "")))
    return table


def exercise_summary_table(results: list[SubmissionResult], width: int = 120, assignment: str = "") -> Table:
    """summary.py's rows, one line each, the most failed check last. Names and numbers keep their
    full width; a narrow terminal (`width` columns) cuts only the check's end (summary.md has it
    whole). Widths are fixed here: rich's own fitting drops whole columns instead."""
    order = [i for i, h in enumerate(HEADERS) if h != CHECK_HEADER] + [HEADERS.index(CHECK_HEADER)]
    rows = [[cells[i] for i in order] for cells in map(summary_cells, exercise_summary(results))]
    headers = [HEADERS[i] for i in order]
    widths = [max([len(h), *(len(cells[i]) for cells in rows)]) for i, h in enumerate(headers)]
    widths[-1] = max(12, min(widths[-1], width - sum(widths[:-1]) - len(widths) + 1))
    title = "Class summary per exercise (graded submissions)" + (f": {assignment}" if assignment else "")
    table = Table(title=title, title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, padding=0)   # the box's blanks separate them
    for header, size in zip(headers, widths):
        left = header in ("exercise", CHECK_HEADER)
        table.add_column(header, justify="left" if left else "right", width=size, no_wrap=True,
                         overflow="ellipsis")
    for cells in rows:
        table.add_row(*(Text(cell) for cell in cells))
    return table


def print_summary(results: list[SubmissionResult], console: Console | None = None) -> None:
    """What `grade` prints at the end of a batch."""
    console = console or Console()
    console.print(summary_table(results))
    groups = {c: m for c, m in by_assignment(results).items() if c != UNRECOGNISED}
    for chapter, members in groups.items():   # one table per assignment: no mean across chapters
        console.print(exercise_summary_table(members, console.width, chapter if len(groups) > 1 else ""))
    errored = sum(1 for r in results if r.error)
    if errored:
        console.print(f"[bold red]{errored} of {len(results)} submissions could not be graded[/]")
