"""Build one chapter's Gradescope autograder zip, on the instructor's machine (trusted side).

    python -m autograder gradescope 02_principles [--framework torch] --out ch02.zip

Gradescope unpacks the zip into /autograder/source, runs `setup.sh` once as root to build its
image, and then, for every submission, runs `run_autograder` with the student's files in
/autograder/submission; it reads /autograder/results/results.json. The zip holds:

    setup.sh, run_autograder   the two scripts Gradescope requires at the root
    gradescope.json            the assignment this zip grades: {"chapter": ..., "framework": ...}
    course_secret              the key this chapter's graded inputs are drawn from: derived from
                               the instructor's course secret (secret.py), never the secret itself
    requirements.txt           the project's lock, cut down to what grading needs
    pyproject.toml, autograder/    the grader, installed editable so it finds solutions/ beside it
    solutions/<chapter>/       the chapter's masters (the trusted side compares against them)

`run_autograder` calls `python -m autograder.inside_gradescope`, the part that runs on Gradescope:
it picks the submitted notebook whose metadata names this chapter, grades it with `python -m
autograder grade`, and copies the single results.json into place. Every failure on the way still
ends in a valid results.json that tells the student what happened.

Isolation inside Gradescope: the grader uses bubblewrap if the container lets it create namespaces;
Gradescope's Docker containers usually do not (Docker's default seccomp profile refuses them), and
run_autograder runs as root, so the grader then uses its second layer ("uid-drop", see
autograder/isolation.py): the submission runs as an unprivileged uid with no network, and
/autograder/source (grader, checks, masters), the submission folder and the output are closed to it.
It never grades without isolation there: without either layer the student gets an explanation.

For tests, AUTOGRADER_ROOT replaces /autograder and AUTOGRADER_PYTHON the venv's python in the
scripts (see inside_gradescope.py for the rest); AUTOGRADER_NO_BWRAP=1 makes bubblewrap unavailable,
as in most Gradescope containers.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import re
import sys
import zipfile
from pathlib import Path

from autograder import secret

from autograder import chapters
from autograder.inside_gradescope import CONFIG_NAME

REPO = Path(__file__).resolve().parents[1]
FRAMEWORKS = chapters.FRAMEWORKS
FRAMEWORK_PACKAGE = {"torch": "torch", "tf": "tensorflow-cpu"}
# Needed to build and test the book, never to grade: leaving them out saves Gradescope's image
# build several minutes and a browser download.
BOOK_ONLY = {"jupyter-book", "jupyterlab", "playwright", "jupytext"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)   # a fixed date makes the same sources give the same zip

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
VENV="$ROOT/venv"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# bubblewrap is the grader's sandbox where the container allows user namespaces; where it does not,
# the grader (root) drops student code to an unprivileged uid behind a seccomp filter (libseccomp2).
apt-get install -y -qq python3 python3-venv python3-pip bubblewrap libseccomp2

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"Python {sys.version.split()[0]} is too old; the autograder needs 3.11 or newer. "
             "Choose the Ubuntu 24.04 base image in Gradescope's autograder settings.")
PY

python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip==26.3
# The lock pins torch without "+cpu"; PyTorch's CPU index serves 2.13.0+cpu, which pip ranks above
# PyPI's CUDA build of the same version (gigabytes, and Gradescope has no GPU).
"$VENV/bin/python" -m pip install --quiet --extra-index-url https://download.pytorch.org/whl/cpu \
    -r "$SOURCE/requirements.txt"
# Editable, so that the package keeps finding solutions/ next to it in $SOURCE.
"$VENV/bin/python" -m pip install --quiet --no-deps -e "$SOURCE"
"$VENV/bin/python" -c "import autograder.report"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission. Whatever fails, a results.json must come out of it:
# without one the student sees only "The autograder failed to execute correctly".
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
PY="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
RESULTS="$ROOT/results/results.json"

mkdir -p "$ROOT/results"
rm -f "$RESULTS"
cd "$SOURCE" || exit 1
# The zip's own grader, not whatever else the interpreter might import.
PYTHONPATH="$SOURCE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m autograder.inside_gradescope
status=$?

if [ ! -s "$RESULTS" ]; then
    echo "run_autograder: the grader wrote no results.json (exit status $status)" >&2
    cat > "$RESULTS" <<'JSON'
{"score": 0, "output": "The autograder failed before it could grade this submission. This is not your fault; please tell your instructor.", "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden", "tests": []}
JSON
fi
exit 0
"""


# --- building the zip ---------------------------------------------------------------------------

def _normalize(name: str) -> str:
    """PEP 503 name: the lock says tensorflow_cpu, metadata says tensorflow-cpu."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str | None:
    line = line.split("#", 1)[0].strip()
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    return _normalize(match.group(0)) if match else None


def _dependency_closure(roots: set[str]) -> set[str]:
    """Every distribution the roots need here, from the installed packages' metadata.

    Markers are evaluated for this machine. A package Gradescope's Python needs beyond these is
    still installed there, because pip resolves dependencies; it is only unpinned."""
    from packaging.requirements import InvalidRequirement, Requirement

    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for spec in requires:
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_normalize(req.name))
    return seen


def pinned_requirements(framework: str | None, repo: Path | None = None) -> str:
    """requirements.txt for the zip: the lock's pins for what grading `framework` needs."""
    repo = Path(repo or REPO)
    lock = {}
    for line in (repo / "requirements.txt").read_text(encoding="utf-8").splitlines():
        name = _requirement_name(line)
        if name:
            lock[name] = line.strip()
    direct = repo / "requirements.in"
    roots = ({n for n in map(_requirement_name, direct.read_text(encoding="utf-8").splitlines()) if n}
             if direct.exists() else set(lock))
    roots -= BOOK_ONLY
    if framework is not None:
        roots -= {FRAMEWORK_PACKAGE[f] for f in FRAMEWORKS if f != framework}
    keep = sorted(n for n in _dependency_closure(roots) if n in lock)
    head = (f"# Generated by `python -m autograder gradescope` from requirements.txt: the pins that "
            f"grading ({framework or 'both frameworks'}) needs.\n")
    return head + "".join(f"{lock[n]}\n" for n in keep)


def _masters(chapter: str, framework: str | None, repo: Path) -> list[Path]:
    """The chapter's masters, found through its record, inside `repo` (the real root or a copy)."""
    try:
        record = chapters.chapter(chapter)
    except LookupError as error:
        raise ValueError(str(error)) from None
    if not record.has_exercises:
        with_exercises = ", ".join(c.slug for c in chapters.chapters_with_exercises())
        raise ValueError(f"chapter {chapter} has no exercises to grade; chapters with exercises: {with_exercises}")
    masters = [repo / record.master_path(f).relative_to(chapters.REPO_ROOT)
               for f in ([framework] if framework else chapters.FRAMEWORKS)]
    missing = [p.relative_to(repo).as_posix() for p in masters if not p.is_file()]
    if missing:
        raise ValueError(f"the masters are missing: {', '.join(missing)}")
    return sorted(masters)


def _package_files(repo: Path) -> list[Path]:
    files = []
    for path in sorted((repo / "autograder").rglob("*")):
        parts = path.relative_to(repo).parts
        if path.is_file() and path.suffix != ".pyc" and not any(
                p == "__pycache__" or p.startswith(".") for p in parts):
            files.append(path)
    return files


def _add(archive: zipfile.ZipFile, name: str, data: bytes | str, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3                       # Unix, so unzip applies the mode bits below
    info.external_attr = (0o100000 | mode) << 16   # regular file | permissions
    archive.writestr(info, data)


def gradescope_zip(chapter: str, framework: str | None, out: Path, *,
                   repo: Path | None = None) -> Path:
    """Write the Gradescope autograder zip for `chapter` (one framework, or both if None).

    `repo` is the project root to take everything from; tests point it at a scratch copy."""
    if framework is not None and framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)} or None, not {framework!r}")
    repo = Path(repo or REPO)
    masters = _masters(chapter, framework, repo)
    config = json.dumps({"chapter": chapter, "framework": framework}, indent=2) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, "setup.sh", SETUP_SH, 0o755)
        _add(archive, "run_autograder", RUN_AUTOGRADER, 0o755)
        _add(archive, CONFIG_NAME, config)
        _add(archive, secret.ZIP_NAME, secret.derived(secret.course_secret(), f"gradescope {chapter}") + "\n", 0o600)
        _add(archive, "requirements.txt", pinned_requirements(framework, repo))
        _add(archive, "pyproject.toml", (repo / "pyproject.toml").read_bytes())
        for path in _package_files(repo) + masters:
            _add(archive, path.relative_to(repo).as_posix(), path.read_bytes())
    from autograder.report.atomic import write_atomic   # a half-written zip must never be uploaded
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(out, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder gradescope",
        description="Write a Gradescope autograder zip for one chapter's exercises.")
    parser.add_argument("chapter", help="chapter slug, e.g. 02_principles")
    parser.add_argument("--framework", choices=FRAMEWORKS, default=None,
                        help="grade only this framework's notebook (default: either)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.zip")
    args = parser.parse_args(argv)
    try:
        path = gradescope_zip(args.chapter, args.framework, args.out)
    except (ValueError, OSError) as error:
        print(f"gradescope: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}: upload it as the assignment's autograder on Gradescope")
    return 0


if __name__ == "__main__":
    sys.exit(main())
