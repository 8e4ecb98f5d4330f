"""The report stage: the last of parse -> execute -> check -> score -> report.

Per submission, in DIR/<submission>/:
    results.json             Gradescope's format (gradescope.py), validated before it is written
    feedback.md, .html       for the student (feedback.py; hidden checks per disclosure.py)
    feedback_instructor.md   every message in full, for staff only
    result.json              the whole SubmissionResult, written LAST: its presence means the
                             submission's report is complete, which is what a resumed batch checks
For the batch, in DIR/: grades.csv, summary.md (per exercise: mean, full marks, most failed check)
and histogram.png (table.py, summary.py, histogram.py); a batch that mixes assignments gets a
summary.md section, a grades_<chapter>.csv and a histogram_<chapter>.png per assignment instead
(write_batch_report). result.json and results.json are both needed: result.json is the grader's
whole record (every message in full, hidden checks included; the resume/regrade marker), for
staff; results.json is what Gradescope reads and what a student may see (hidden checks trimmed).
histogram.py (matplotlib) is imported only when needed: run_autograder on Gradescope, and every
`check` a student runs, would otherwise pay a second for a plot they never draw.

Every file is written atomically (atomic.py), so a batch killed at any moment leaves each file
either whole or absent.
"""
from __future__ import annotations

import json
from pathlib import Path

from autograder.report.atomic import remove_durably, write_atomic
from autograder.report.feedback import feedback_html, feedback_markdown
from autograder.report.gradescope import to_gradescope, validate_gradescope
from autograder.report.sections import UNRECOGNISED, by_assignment
from autograder.report.summary import summary_markdown
from autograder.report.table import print_summary, summary_table, write_grades_csv
from autograder.results import SubmissionResult

__all__ = [
    "completed_results", "feedback_html", "feedback_markdown", "print_summary", "read_submission_result",
    "submission_dir", "summary_table", "to_gradescope", "validate_gradescope",
    "write_batch_report", "write_grades_csv", "write_submission_report",
]

COMPLETE_MARKER = "result.json"


def submission_dir(out_dir: Path, submission: str) -> Path:
    """out_dir/<submission>, refusing names that would land anywhere else."""
    if (not submission or submission in (".", "..") or "/" in submission or "\\" in submission
            or "\0" in submission):
        raise ValueError(f"not usable as a folder name: {submission!r}")
    return Path(out_dir) / submission


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_submission_report(result: SubmissionResult, out_dir: Path) -> Path:
    """Write one submission's reports; return its folder."""
    folder = submission_dir(out_dir, result.submission)
    folder.mkdir(parents=True, exist_ok=True)
    # A re-graded submission's old marker must go first: otherwise a kill below would leave new
    # reports beside an old marker that claims they are complete.
    remove_durably(folder / COMPLETE_MARKER)
    gradescope = to_gradescope(result)
    validate_gradescope(gradescope)   # never hand Gradescope a file it would reject
    write_atomic(folder / "results.json", _json(gradescope))
    write_atomic(folder / "feedback.md", feedback_markdown(result))
    write_atomic(folder / "feedback.html", feedback_html(result))
    write_atomic(folder / "feedback_instructor.md", feedback_markdown(result, instructor=True))
    write_atomic(folder / COMPLETE_MARKER, _json(result.to_dict()))
    return folder


def read_submission_result(out_dir: Path, submission: str) -> SubmissionResult | None:
    """The result a previous run completed, or None if it must be graded (again).

    None also for a marker this version cannot read (records changed since): re-grading is always
    safe, trusting a half-understood file is not."""
    marker = submission_dir(out_dir, submission) / COMPLETE_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        result = SubmissionResult.from_dict(data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        return None
    return result if result.submission == submission else None


def completed_results(out_dir: Path) -> dict[str, SubmissionResult]:
    """Every submission whose report in out_dir is complete, by name (what --regrade rebuilds from)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return {}
    found = {}
    for folder in sorted(out_dir.iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            result = read_submission_result(out_dir, folder.name)
            if result is not None:
                found[folder.name] = result
    return found


def batch_files(results: list[SubmissionResult]) -> list[str]:
    """The names write_batch_report writes for these results, in its order: the grades first."""
    groups = by_assignment(results)
    if len(groups) <= 1:
        return ["grades.csv", "summary.md", "histogram.png"]
    return [*(f"grades_{chapter}.csv" for chapter in groups), "summary.md",
            *(f"histogram_{chapter}.png" for chapter in groups if chapter != UNRECOGNISED)]


def _layout_files() -> set[str]:
    """Every table or histogram name write_batch_report can write, in either layout: the only
    files it may remove (an instructor's own grades_final.csv in DIR stays)."""
    from autograder import chapters

    slugs = [c.slug for c in chapters.chapters_with_exercises()] + [UNRECOGNISED]
    return {"grades.csv", "histogram.png", *(f"grades_{s}.csv" for s in slugs), *(f"histogram_{s}.png" for s in slugs)}


def write_batch_report(results: list[SubmissionResult], out_dir: Path) -> dict[str, Path]:
    """grades.csv, summary.md and histogram.png for a batch of one assignment; for a batch that
    mixes assignments, grades_<chapter>.csv per assignment (the files that are no assignment in
    grades_unrecognised.csv), summary.md with a section each, and histogram_<chapter>.png per
    assignment. The grades come first: a full disk costs what it must. A table or histogram of the
    other layout, left by an earlier run, is removed: each such file in DIR describes the results
    in DIR. Returns the paths by name."""
    from autograder.report.histogram import write_histogram

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = by_assignment(results)
    single = len(groups) <= 1
    written: dict[str, Path] = {}
    for chapter, members in ({"": results} if single else groups).items():
        name = "grades.csv" if single else f"grades_{chapter}.csv"
        written[name] = write_grades_csv(members, out_dir / name)
    written["summary.md"] = write_atomic(out_dir / "summary.md", summary_markdown(results))
    for chapter, members in ({"": results} if single else groups).items():
        if chapter != UNRECOGNISED:
            name = "histogram.png" if single else f"histogram_{chapter}.png"
            written[name] = write_histogram(members, out_dir / name)
    for name in sorted(_layout_files() - set(written)):
        stale = out_dir / name
        if stale.is_file() and not stale.is_symlink():
            remove_durably(stale)
    return written
