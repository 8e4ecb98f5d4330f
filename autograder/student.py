"""`check("masked_softmax")` in a student's notebook: the public checks, in the student's kernel.

It runs the same pytest checks as the grader, restricted to the public ones, against the functions
defined in the notebook, and prints a short verdict. A function that still raises
NotImplementedError is "not implemented yet", which is not an error: an untouched notebook runs
top to bottom.
"""
from __future__ import annotations

import re
import sys
from functools import lru_cache

from autograder.checks.runner import CHECKS_DIR, LocalBackend, run_checks

_DECL = re.compile(r"""@check\(\s*["'](\w+)["']""")


@lru_cache(maxsize=1)
def _chapters_by_exercise() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(CHECKS_DIR.glob("ch[0-9][0-9]_*.py")):
        chapter = path.stem[2:]
        for name in dict.fromkeys(_DECL.findall(path.read_text())):
            found.setdefault(name, []).append(chapter)
    return found


def _framework(namespace: dict) -> str:
    has_torch = "torch" in sys.modules and any(getattr(v, "__name__", "") == "torch" for v in namespace.values())
    has_tf = "tensorflow" in sys.modules and any(
        getattr(v, "__name__", "") == "tensorflow" for v in namespace.values())
    if has_torch != has_tf:
        return "torch" if has_torch else "tf"
    raise RuntimeError('cannot tell the framework: import torch or tensorflow in the notebook, '
                       'or call check(name, framework="torch" | "tf")')


def check_in(namespace: dict, exercise: str, framework: str | None = None,
             chapter: str | None = None) -> None:
    """Run the public checks of one exercise against `namespace`'s functions, and print a verdict."""
    chapters = [chapter] if chapter else _chapters_by_exercise().get(exercise, [])
    if len(chapters) != 1:
        known = ", ".join(sorted(_chapters_by_exercise()))
        reason = "is in several chapters; pass chapter=" if chapters else f"is not an exercise (known: {known})"
        print(f"check: '{exercise}' {reason}")
        return
    framework = framework or _framework(namespace)
    results, _ = run_checks(chapters[0], LocalBackend(namespace, framework), framework,
                            exercise=exercise, public_only=True)
    print(verdict(exercise, results))


def verdict(exercise: str, results) -> str:
    if not results:
        return f"{exercise}: no public checks"
    failed = [r for r in results if not r.passed]
    if any(r.output.endswith("not implemented yet") for r in failed):
        return f"… {exercise}: not implemented yet"
    if not failed:
        if len(results) == 1:
            return f"✓ {exercise}: the public check passed"
        return f"✓ {exercise}: all {len(results)} public checks passed"
    lines = [f"✗ {exercise}: {len(failed)} of {len(results)} public checks failed"]
    for r in failed:
        detail = r.output.replace("\n", "\n      ")
        lines.append(f"  - {r.name.split(': ', 1)[1]}\n      {detail}")
    return "\n".join(lines)
