"""The parse stage: read one submitted file into a `Submission`, or say in one line why not.

Trusted side. Only the submission's code cells and its assignment (metadata.course) are taken
from it; checks, points and everything else come from the grader's own files.
"""
from __future__ import annotations

import ast
import errno
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import chapters, untrusted

MAX_BYTES = 64 << 20   # a notebook's code is tiny; anything this big is outputs or a mistake
FRAMEWORK_IMPORT = {
    "torch": re.compile(r"^\s*(import|from)\s+torch\b", re.M),
    "tf": re.compile(r"^\s*(import|from)\s+(tensorflow|keras)\b", re.M),
}


class BadSubmission(Exception):
    """A submission that cannot be graded; the message is one line for the CSV and feedback."""


@dataclass
class Submission:
    path: Path
    chapter: str
    framework: str
    # (n, source) of every code cell, in order; n counts code cells from 1 ("code cell n"): the
    # number a student finds in JupyterLab, where markdown cells carry no number
    cells: list[tuple[int, str]]
    exercises: list[str]                  # from the chapter record, in the masters' order
    digest: str
    warnings: list[str] = field(default_factory=list)


LINK = "is a symbolic link; hand in the notebook itself"


def open_no_follow(path: Path) -> int:
    """A descriptor of the regular file `path`, never of what a link names: a submission that is a
    link (to the master, to another student's notebook) is refused, not read as root.
    Raises BadSubmission with the one-line reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadSubmission(f"{Path(path).name} {LINK}") from None
        raise BadSubmission(f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadSubmission("not a file")
    return fd


def digest_of(path: Path) -> str:
    """sha256 of the file, read in chunks: a file of any size costs no memory. OSError for a link."""
    try:
        fd = open_no_follow(path)
    except BadSubmission as exc:
        raise OSError(str(exc)) from None
    with os.fdopen(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


TOO_DEEP = "nested too deeply for the grader to read (a structure hundreds of levels deep)"


def _check_depth(code: list[tuple[int, str]]) -> None:
    """Every cell must parse without exhausting the parser: the trusted side reads the source
    (scan.py), and a cell 100,000 levels deep raises MemoryError or RecursionError, not SyntaxError."""
    for index, source in code:
        try:
            ast.parse(source)
        except (RecursionError, MemoryError):
            raise BadSubmission(f"code cell {index}'s code is {TOO_DEEP}: simplify it") from None
        except (SyntaxError, ValueError):
            continue   # the run reports it; IPython magics are stripped there


def load(path: Path, expect: str | None = None) -> Submission:
    """`expect`, "CHAPTER/FRAMEWORK", rejects a notebook of another assignment."""
    if os.path.islink(path):
        raise BadSubmission(f"{path.name} {LINK}")
    fd = open_no_follow(path)   # what was checked is what is read: one descriptor
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise BadSubmission("the file is empty")
        if size > MAX_BYTES:
            raise BadSubmission(f"the file is {size / 2**20:.0f} MB, over the {MAX_BYTES >> 20} MB limit: "
                                "clear the outputs (Edit > Clear Outputs of All Cells) and resubmit")
        raw = f.read(MAX_BYTES + 1)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (RecursionError, MemoryError):
        raise BadSubmission(f"the notebook's JSON is {TOO_DEEP}: open and save it in a current "
                            "JupyterLab") from None
    except (UnicodeDecodeError, ValueError):
        looks_py = raw.lstrip()[:1] not in (b"{", b"[")
        hint = " (is it a .py or another file renamed to .ipynb?)" if looks_py else " (the JSON is broken)"
        raise BadSubmission("not a notebook: the file is not valid JSON" + hint) from None
    if not isinstance(data, dict):
        raise BadSubmission("not a notebook: the JSON is not an object")
    version = data.get("nbformat")
    if not isinstance(version, int) or version < 4 or "cells" not in data:
        shown = version if isinstance(version, int) else "unknown"
        raise BadSubmission(f"not a notebook this grader reads (nbformat {shown}; version 4 is needed): "
                            "open and save it in a current JupyterLab")
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise BadSubmission("not a notebook: 'cells' is not a list")
    course = (data.get("metadata") or {}).get("course") if isinstance(data.get("metadata"), dict) else None
    if not isinstance(course, dict) or not course.get("chapter") or not course.get("framework"):
        raise BadSubmission("the notebook says which assignment it is nowhere (metadata.course is missing): "
                            "work in the course's exercise notebook")
    chapter, framework = untrusted.name(course["chapter"], 40), untrusted.name(course["framework"], 20)
    if (chapter, framework) not in chapters.assignments():
        raise BadSubmission(f"unknown assignment {chapter}/{framework} in metadata.course")
    if expect and expect != f"{chapter}/{framework}":
        raise BadSubmission(f"this is the {chapter}/{framework} notebook, but {expect} is being graded")

    code: list[tuple[int, str]] = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        index = len(code) + 1
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise BadSubmission(f"code cell {index} has no readable source")
        code.append((index, source))
    if not code:
        raise BadSubmission("the notebook has no code cells")
    _check_depth(code)

    other = "tf" if framework == "torch" else "torch"
    text = "\n".join(s for _, s in code)
    if FRAMEWORK_IMPORT[other].search(text) and not FRAMEWORK_IMPORT[framework].search(text):
        raise BadSubmission(f"the notebook is marked {framework} but its code imports {other}: "
                            f"submit the exercises_{framework}.ipynb notebook")

    warnings = []
    try:
        nbformat.validate(nbformat.from_dict(data))
    except Exception:   # a schema nit (RecursionError on deep JSON included) (e.g. a stray key) does not stop grading, but say so
        warnings.append("the notebook does not fully match the notebook format; graded anyway")
    return Submission(path, chapter, framework, code, list(chapters.chapter(chapter).exercises),
                      hashlib.sha256(raw).hexdigest(), warnings)
