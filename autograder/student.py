"""`check("masked_softmax")` in a student's notebook: the public checks, in the student's kernel.

The notebook's setup cell binds `check` to its assignment once:

    import autograder
    check = autograder.checker("02_principles", "torch")

Nothing is guessed after that: the chapter and the framework are the binding's, whatever the
notebook imports or holds (a Keras layer in a PyTorch notebook, `from torch import nn` alone).
`from autograder import check` still works for notebooks written before, by guessing as it always
did, and says how to bind.

It runs the same pytest checks as the grader, restricted to the public ones, against the functions
defined in the notebook, and prints a short verdict. A function that still raises
NotImplementedError is "not implemented yet", which is not an error: an untouched notebook runs
top to bottom.
"""
from __future__ import annotations

import inspect
import sys

from autograder import chapters


class Checker:
    """`check(name)` for one assignment, run against the calling notebook's functions.

    The released package (`autograder/release/`) subclasses it: same calling and printing, other
    `results` (stored expected values instead of the oracle)."""

    package = "autograder"

    def __init__(self, chapter: str, framework: str, exercises: tuple[str, ...]):
        self.chapter, self.framework, self.exercises = chapter, framework, exercises

    def __call__(self, exercise: str) -> None:
        namespace = inspect.currentframe().f_back.f_globals
        self.run(namespace, exercise)

    def run(self, namespace: dict, exercise: str) -> None:
        if exercise not in self.exercises:
            print(f"check: '{exercise}' is not an exercise of {self.chapter} "
                  f"(its exercises: {', '.join(self.exercises)})")
            return
        print(verdict(exercise, self.results(namespace, exercise)))

    def results(self, namespace: dict, exercise: str) -> list:
        """The public checks of `exercise` run on `namespace`'s functions: CheckResults."""
        from autograder.checks.runner import LocalBackend, run_checks

        results, _ = run_checks(self.chapter, LocalBackend(namespace, self.framework), self.framework,
                                exercise=exercise, public_only=True)
        return results

    def __repr__(self) -> str:
        return f"{self.package}.checker({self.chapter!r}, {self.framework!r})"


def bind(chapter: str, framework: str) -> Checker:
    """`autograder.checker(chapter, framework)`: a Checker for an assignment the records know."""
    record = chapters.chapter(chapter)
    record.master_path(framework)          # a ValueError naming the frameworks, for a typo
    if not record.exercises:
        raise LookupError(f"chapter {chapter} has no exercises to check")
    return Checker(chapter, framework, record.exercises)


def _guess_framework(namespace: dict) -> str | None:
    """The old, unbound path only: the framework whose module the notebook imported, if just one."""
    roots = {getattr(v, "__name__", "").split(".")[0] for v in namespace.values() if inspect.ismodule(v)}
    found = [fw for fw, module in (("torch", "torch"), ("tf", "tensorflow")) if module in roots and module in sys.modules]
    return found[0] if len(found) == 1 else None


def check_in(namespace: dict, exercise: str, framework: str | None = None,
             chapter: str | None = None) -> None:
    """`from autograder import check` (not bound): guess the assignment, check, say how to bind."""
    if chapter is None:
        found = [c.slug for c in chapters.chapters_of(exercise)]
        if len(found) != 1:
            known = ", ".join(e for c in chapters.chapters_with_exercises() for e in c.exercises)
            reason = "is in several chapters; bind check to one" if found else f"is not an exercise (known: {known})"
            print(f"check: '{exercise}' {reason}")
            return
        chapter = found[0]
    framework = framework or _guess_framework(namespace)
    binding = chapters.chapter(chapter).binding(framework or "torch")
    if framework is None:
        print("check: cannot tell the framework of this notebook. Bind check to its assignment in the "
              f"setup cell:\n{binding}\n(or \"tf\" for the TensorFlow notebook)")
        return
    bind(chapter, framework).run(namespace, exercise)
    print(f"note: this check is not bound to its assignment; put these lines in the setup cell:\n{binding}")


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
