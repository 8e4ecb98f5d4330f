"""Grades in the LMS's own import format: `python -m autograder lms canvas|moodle ...`.

Both LMSs import the CSV they export: the instructor exports the gradebook, we fill one
assignment's column from a graded folder, and the LMS imports the file back. Everything else in
the export (other assignments, sections, Canvas's "Points Possible" and muting rows, totals) is
written back exactly as read, so the import changes that one column and nothing else.

Students are matched, never guessed: the value of the column the instructor names (`--match`,
e.g. Canvas's "SIS Login ID" or Moodle's "Email address") must equal a submission's name, either
as it is or after the same clean-up that named the submission folders (`batch.safe_name`: "José
García" -> "Jose_Garcia"; for an e-mail address, its local part). A row that matches none, or
more than one, is left empty and listed; so is a submission no row matches.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from autograder import report
from autograder.batch import safe_name
from autograder.report.atomic import write_atomic

# Rows of a Canvas export that are not students: they sit under the header and start with these.
CANVAS_META_ROWS = ("points possible", "manual posting", "muted")
CANVAS_FIXED = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


class LmsError(Exception):
    """A gradebook or an option that cannot be used (exit status 2)."""


@dataclass
class Filled:
    rows: list[list[str]]
    column: str
    matched: dict[str, str] = field(default_factory=dict)         # gradebook key -> submission
    unmatched_rows: list[str] = field(default_factory=list)       # gradebook keys with no submission
    ambiguous_rows: list[str] = field(default_factory=list)       # keys that fit several submissions
    unmatched_submissions: list[str] = field(default_factory=list)
    ungraded: list[str] = field(default_factory=list)             # matched, but no score to give
    points_possible: str | None = None                            # Canvas's, for the column
    max_scores: set = field(default_factory=set)                  # the graded submissions' maxima


def _read(path: Path) -> tuple[list[str], list[list[str]], str]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise LmsError(f"cannot read the gradebook {path}: {exc.strerror or exc}") from None
    bom = raw.startswith(b"\xef\xbb\xbf")   # Canvas and Excel write one; keep it for the import
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LmsError(f"{path} is not UTF-8 text: export the gradebook as CSV (UTF-8)") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or not any(rows[0]):
        raise LmsError(f"{path} is empty: export the gradebook as CSV")
    return rows[0], rows[1:], "\ufeff" if bom else ""


def _column(header: list[str], wanted: str, what: str, lms: str) -> int:
    """The index of `wanted`: exactly, or (Canvas) `wanted (12345)`, or (Moodle) `Assignment:
    wanted (Real)`; never a guess among several."""
    exact = [i for i, h in enumerate(header) if h.strip() == wanted.strip()]
    if len(exact) == 1:
        return exact[0]
    pattern = {"canvas": rf"{re.escape(wanted.strip())} \(\d+\)",
               "moodle": rf"(?:[^:]+: )?{re.escape(wanted.strip())} \((?:Real|Punkte|Points|Letter|Percentage)\)"}[lms]
    loose = [i for i, h in enumerate(header) if re.fullmatch(pattern, h.strip())]
    found = exact or loose
    if len(found) == 1:
        return found[0]
    names = ", ".join(repr(h) for h in header)
    if not found:
        raise LmsError(f"no {what} column {wanted!r} in the gradebook; its columns are: {names}")
    raise LmsError(f"several {what} columns fit {wanted!r}: " + ", ".join(repr(header[i]) for i in found))


def _keys(value: str) -> set[str]:
    """The forms of a gradebook value that may equal a submission name (casefolded)."""
    value = value.strip()
    forms = {value, safe_name(value)}
    if "@" in value:
        local = value.split("@", 1)[0]
        forms |= {local, safe_name(local)}
    return {f.casefold() for f in forms if f}


def _score(result) -> str:
    score = result.score
    return f"{score:g}" if score != int(score) else str(int(score))


def fill(lms: str, gradebook: Path, assignment: str, match: str, graded: Path) -> Filled:
    if lms not in ("canvas", "moodle"):
        raise LmsError(f"unknown LMS {lms!r}: canvas or moodle")
    header, body, _ = _read(gradebook)
    target = _column(header, assignment, "assignment", lms)
    key_col = _column(header, match, "--match", lms)
    results = report.completed_results(graded)
    if not results:
        raise LmsError(f"no graded submissions in {graded}: grade (or merge) the class first")
    by_key: dict[str, list[str]] = {}
    for name in results:
        by_key.setdefault(name.casefold(), []).append(name)

    filled = Filled(rows=[list(header)] + [list(r) for r in body], column=header[target])
    used: set[str] = set()
    for row in filled.rows[1:]:
        row += [""] * (len(header) - len(row))
        first = row[0].strip().casefold()
        if not any(c.strip() for c in row):
            continue
        if lms == "canvas" and first.startswith(CANVAS_META_ROWS):
            if first.startswith("points possible"):
                filled.points_possible = row[target].strip() or None
            continue
        key = row[key_col].strip()
        if not key:
            filled.unmatched_rows.append(f"{row[0].strip() or '(no name)'} (empty {header[key_col]})")
            continue
        candidates = sorted({n for k in _keys(key) for n in by_key.get(k, [])})
        if len(candidates) > 1:
            filled.ambiguous_rows.append(f"{key}: {', '.join(candidates)}")
            continue
        if not candidates:
            filled.unmatched_rows.append(key)
            continue
        name = candidates[0]
        if name in used:
            filled.ambiguous_rows.append(f"{key}: {name} (already given to another row)")
            continue
        used.add(name)
        filled.matched[key] = name
        result = results[name]
        if result.error:   # could not be graded: the instructor decides, not an import
            filled.ungraded.append(f"{key} ({name}): {result.error}")
            continue
        row[target] = _score(result)
        filled.max_scores.add(result.max_score)
    filled.unmatched_submissions = sorted(set(results) - used, key=str.casefold)
    return filled


def scale_warning(filled: Filled) -> str | None:
    """Canvas's "Points Possible" for the column, when it is not what the grader scores out of:
    the import would then give wrong percentages (we write points, never rescale)."""
    try:
        possible = float(filled.points_possible) if filled.points_possible else None
    except ValueError:
        return None
    if possible is None or not filled.max_scores or filled.max_scores == {possible}:
        return None
    maxima = ", ".join(f"{m:g}" for m in sorted(filled.max_scores))
    return (f"the column is worth {possible:g} points in Canvas but the submissions are scored out of "
            f"{maxima}: change Points Possible in Canvas, or the percentages will be wrong")


def write(filled: Filled, gradebook: Path, out: Path) -> Path:
    """The filled gradebook, in the export's own dialect (BOM kept, CRLF as csv writes)."""
    _, _, bom = _read(gradebook)
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(filled.rows)
    return write_atomic(Path(out), bom + buffer.getvalue())
