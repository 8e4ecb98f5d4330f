"""Export one chapter's grader as a Gradescope autograder zip, and run it inside Gradescope.

    python -m autograder gradescope 02_principles [--framework torch] --out ch02.zip

Gradescope unpacks the zip into /autograder/source, runs `setup.sh` once as root to build its
image, and then, for every submission, runs `run_autograder` with the student's files in
/autograder/submission; it reads /autograder/results/results.json. The zip holds:

    setup.sh, run_autograder   the two scripts Gradescope requires at the root
    gradescope.json            the assignment this zip grades: {"chapter": ..., "framework": ...}
    requirements.txt           the project's lock, cut down to what grading needs
    pyproject.toml, autograder/    the grader, installed editable so it finds solutions/ beside it
    solutions/<chapter>/       the chapter's masters (the trusted side compares against them)

`run_autograder` calls `python -m autograder.export run` (run_main below), which picks the
submitted notebook whose metadata names this chapter, grades it with `python -m autograder grade`,
and copies the single results.json into place. Every failure on the way still ends in a valid
results.json that tells the student what happened.

Isolation inside Gradescope: the grader uses bubblewrap if the container lets it create namespaces;
Gradescope's Docker containers usually do not (Docker's default seccomp profile refuses them), and
run_autograder runs as root, so the grader then uses its second layer ("uid-drop", see
autograder/isolation.py): the submission runs as an unprivileged uid with no network, and
/autograder/source (grader, checks, masters), the submission folder and the output are closed to it.
It never grades without isolation there: without either layer the student gets an explanation.

For tests, AUTOGRADER_ROOT replaces /autograder, AUTOGRADER_PYTHON the venv's python, and
AUTOGRADER_GRADE_CMD the grade command (its arguments NOTEBOOK --out DIR are appended);
AUTOGRADER_NO_BWRAP=1 makes bubblewrap unavailable, as in most Gradescope containers.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG_NAME = "gradescope.json"
FRAMEWORKS = ("torch", "tf")
FRAMEWORK_PACKAGE = {"torch": "torch", "tf": "tensorflow-cpu"}
# Needed to build and test the book, never to grade: leaving them out saves Gradescope's image
# build several minutes and a browser download.
BOOK_ONLY = {"jupyter-book", "jupyterlab", "playwright", "jupytext"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)   # a fixed date makes the same sources give the same zip
SUBMISSION_NAME = "submission"      # the results' name for Gradescope's single submission

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
PYTHONPATH="$SOURCE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m autograder.export run
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
    folder = repo / "solutions" / chapter
    if not re.fullmatch(r"\d\d_[a-z0-9_]+", chapter) or not folder.is_dir():
        known = sorted(p.name for p in (repo / "solutions").glob("[0-9][0-9]_*") if p.is_dir())
        raise ValueError(f"no chapter {chapter!r} in solutions/; known: {', '.join(known) or 'none'}")
    pattern = f"exercises_{framework}.ipynb" if framework else "exercises_*.ipynb"
    masters = sorted(folder.glob(pattern))
    if not masters:
        raise ValueError(f"solutions/{chapter}/ has no {pattern}")
    return masters


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
    parser.add_argument("chapter", help="chapter folder, e.g. 02_principles")
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


# --- inside Gradescope --------------------------------------------------------------------------

def _notebook_course(path: Path) -> dict:
    """metadata.course of a notebook, or {} if it is unreadable or has none."""
    try:
        course = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("course", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return course if isinstance(course, dict) else {}


def _describe(course: dict) -> str:
    if not course.get("chapter"):
        return "no assignment in its metadata"
    return f"{course.get('chapter')} ({course.get('framework', 'framework unknown')})"


def select_notebook(submission: Path, chapter: str, framework: str | None) -> tuple[Path | None, str]:
    """The one submitted notebook for this assignment, or None and a message for the student."""
    wanted = f"{chapter}" + (f" ({framework})" if framework else "")
    notebooks = sorted(p for p in submission.rglob("*.ipynb")
                       if not any(part in (".ipynb_checkpoints", "__MACOSX") for part in p.parts))
    courses = {p: _notebook_course(p) for p in notebooks}
    matches = [p for p, c in courses.items() if c.get("chapter") == chapter
               and (framework is None or c.get("framework") == framework)]
    if len(matches) == 1:
        return matches[0], ""
    if not notebooks:
        return None, f"No notebook (.ipynb) was submitted. This assignment grades {wanted}."
    found = "; ".join(f"{p.relative_to(submission)}: {_describe(courses[p])}" for p in notebooks)
    if not matches:
        return None, (f"None of the submitted notebooks is the assignment {wanted}. Found: {found}. "
                      f"Submit the exercises notebook of chapter {chapter}.")
    return None, (f"Several submitted notebooks are the assignment {wanted}: {found}. "
                  "Submit only the one you want graded.")


def run_main(argv: list[str] | None = None) -> int:
    """What run_autograder runs: select, grade, and put results.json where Gradescope reads it.

    Takes no arguments (`argv` is accepted for symmetry with main); the assignment comes from
    gradescope.json, the paths from AUTOGRADER_ROOT."""
    import jsonschema

    from autograder.report import read_submission_result, to_gradescope, validate_gradescope
    from autograder.report.atomic import write_atomic
    from autograder.report.feedback import feedback_markdown
    from autograder.report.sections import one_line
    from autograder.results import SubmissionResult

    root = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    config = json.loads((root / "source" / CONFIG_NAME).read_text(encoding="utf-8"))
    chapter, framework = config["chapter"], config.get("framework")
    results = root / "results" / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)

    def give_up(message: str) -> int:
        print(f"run_autograder: {message}")
        failed = SubmissionResult(submission=SUBMISSION_NAME, path=str(root / "submission"),
                                  chapter=chapter, framework=framework, error=message)
        write_atomic(results, json.dumps(to_gradescope(failed), indent=2) + "\n")
        return 0

    notebook, problem = select_notebook(root / "submission", chapter, framework)
    if notebook is None:
        return give_up(problem)
    print(f"run_autograder: grading {notebook} as {chapter} ({framework or 'either framework'})",
          flush=True)   # before the grader's own output, not after it

    command = shlex.split(os.environ.get("AUTOGRADER_GRADE_CMD", "")) or [
        sys.executable, "-m", "autograder", "grade"]
    with tempfile.TemporaryDirectory(prefix="grades-") as scratch:
        out = Path(scratch)
        done = subprocess.run([*command, str(notebook), "--out", str(out)], cwd=root / "source")
        written = sorted(out.glob("*/results.json"))
        if len(written) != 1:
            return give_up(f"the grader stopped without a result (exit status {done.returncode}); "
                           "this is not your fault, please tell your instructor")
        try:
            data = json.loads(written[0].read_text(encoding="utf-8"))
            validate_gradescope(data)
        except (ValueError, jsonschema.ValidationError) as error:
            return give_up(f"the grader wrote an unusable results.json ({one_line(str(error))[:200]}); "
                           "this is not your fault, please tell your instructor")
        write_atomic(results, json.dumps(data, indent=2) + "\n")
        # stdout is staff-only ("stdout_visibility": "hidden"): the full messages of hidden checks.
        full = read_submission_result(out, written[0].parent.name)
    if full is not None:
        print(feedback_markdown(full, instructor=True))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(sys.argv[2:]) if sys.argv[1:2] == ["run"] else main())
