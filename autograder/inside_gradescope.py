"""What runs inside Gradescope, for every submission: `run_autograder` calls `python -m
autograder.inside_gradescope`.

It picks the submitted notebook whose metadata names this zip's assignment (gradescope.json, written
by `autograder/export.py`, which builds the zip on the instructor's machine), grades it with `python -m
autograder grade`, and puts the single results.json where Gradescope reads it
(/autograder/results/results.json). Every failure on the way still ends in a valid results.json that
tells the student what happened; the full feedback, hidden checks included, goes to stdout, which
Gradescope shows to staff only.

For tests, AUTOGRADER_ROOT replaces /autograder and AUTOGRADER_GRADE_CMD the grade command (its
arguments NOTEBOOK --out DIR are appended).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder import secret

CONFIG_NAME = "gradescope.json"   # in the zip's root: {"chapter": ..., "framework": ...}
SUBMISSION_NAME = "submission"      # the results' name for Gradescope's single submission

def _notebook_course(path: Path) -> dict:
    """metadata.course of a notebook, or {} if it is unreadable, a link, or has none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            course = json.loads(f.read().decode("utf-8")).get("metadata", {}).get("course", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return course if isinstance(course, dict) else {}


def _submitted(submission: Path) -> tuple[list[Path], list[Path]]:
    """The submitted notebooks, and the links among what was submitted (notebooks or folders):
    a link is never followed (it could name the master, or another student's notebook)."""
    notebooks, links = [], []
    for where, dirs, names in os.walk(submission, followlinks=False):
        here = Path(where)
        dirs[:] = sorted(d for d in dirs if d not in (".ipynb_checkpoints", "__MACOSX"))
        links += [here / d for d in dirs if (here / d).is_symlink()]
        for name in names:
            if name.endswith(".ipynb"):
                (links if (here / name).is_symlink() else notebooks).append(here / name)
    return sorted(notebooks), sorted(links)


def _describe(course: dict) -> str:
    if not course.get("chapter"):
        return "no assignment in its metadata"
    return f"{course.get('chapter')} ({course.get('framework', 'framework unknown')})"


def select_notebook(submission: Path, chapter: str, framework: str | None) -> tuple[Path | None, str]:
    """The one submitted notebook for this assignment, or None and a message for the student."""
    wanted = f"{chapter}" + (f" ({framework})" if framework else "")
    notebooks, links = _submitted(submission)
    courses = {p: _notebook_course(p) for p in notebooks}
    matches = [p for p, c in courses.items() if c.get("chapter") == chapter
               and (framework is None or c.get("framework") == framework)]
    if len(matches) == 1:
        return matches[0], ""
    if links and not matches:
        return None, (f"{links[0].relative_to(submission)} is a symbolic link; hand in the notebook itself "
                      f"(a link is never followed). This assignment grades {wanted}.")
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
        # The zip's key (export.py) and the student's Gradescope ids: each student's own inputs,
        # the same on a resubmission or a regrade, and never the release's.
        env = dict(os.environ)
        if (root / "source" / secret.ZIP_NAME).is_file():
            env[secret.FILE_ENV] = str(root / "source" / secret.ZIP_NAME)
            env.pop(secret.ENV, None)
        student = secret.gradescope_student(root / "submission_metadata.json")
        if student:
            env[secret.STUDENT_ENV] = student
        done = subprocess.run([*command, str(notebook), "--out", str(out)], cwd=root / "source", env=env)
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
    sys.exit(run_main(sys.argv[1:]))
