"""Calling a chapter's check functions directly, with the grader's fixtures: what the tests of
mutants and correct alternatives share (test_ch01_exercises.py, test_ch02_new_exercises.py,
test_ch03_exercises.py).

One pytest run of the grader per mutant would cost most of a second each; here `student` is a
`StudentProxy` over a `LocalBackend`, `oracle` the chapter's oracle, `rng` seeded per check.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np

from autograder.chapters import chapter
from autograder.checks.api import CheckFailure, meta_of
from autograder.checks.runner import LocalBackend, StudentProxy
from autograder.notebooks import load_namespace, master_path


class _Item:
    """Just enough of a pytest item for `meta_of` to read a check function's marks."""

    def __init__(self, func):
        self.marks = {mark.name: mark for mark in getattr(func, "pytestmark", [])}

    def get_closest_marker(self, name):
        return self.marks.get(name)


def meta(func):
    return meta_of(_Item(func))


def checks_of(slug: str, exercise: str) -> list:
    """The `@check` functions of `exercise` in the chapter's checks module, in file order."""
    module = chapter(slug).load_checks()
    found = [func for name, func in vars(module).items() if name.startswith("test_") and callable(func)
             and (m := meta(func)) is not None and m.exercise == exercise]
    assert found, f"no checks for {exercise}"
    return found


@functools.lru_cache(maxsize=None)
def master_namespace(slug: str, framework: str) -> dict:
    return load_namespace(master_path(slug, framework))


def namespace_with(slug: str, framework: str, source: str) -> dict:
    """A copy of the master's namespace in which `source` redefines one function."""
    namespace = dict(master_namespace(slug, framework))
    exec(source, namespace)
    return namespace


def failed_checks(slug: str, namespace: dict, framework: str, exercise: str, seed: int = 0) -> list[str]:
    """'check name: message' for every check of `exercise` that the namespace fails."""
    student = StudentProxy(LocalBackend(namespace, framework), framework, lambda names: None)
    oracle = chapter(slug).load_oracle()
    failed = []
    with warnings.catch_warnings():   # Keras: a layer called with mask= "does not support masking" (04)
        warnings.filterwarnings("ignore", message=".*does not support masking")
        for index, func in enumerate(checks_of(slug, exercise)):
            try:
                func(student=student, oracle=oracle, rng=np.random.default_rng([seed, index]))
            except CheckFailure as exc:
                failed.append(f"{func.__name__}: {exc}")
    return failed


def passes_every_seed(slug: str, framework: str, exercise: str, source: str, seeds=(0, 7)) -> list[str]:
    """The failures of a (correct) alternative definition over several seeds: [] when it passes."""
    return [failure for seed in seeds
            for failure in failed_checks(slug, namespace_with(slug, framework, source), framework, exercise, seed)]


def graded_with_mutants(slug: str, mutants, framework: str = "torch", seed: int = 5) -> tuple[set, dict]:
    """The first mutant of `framework` for each exercise, all put into one namespace and graded by
    the real check runner: (the mutated exercises, exercise -> [points earned, points possible])."""
    from autograder.checks.runner import run_checks
    from autograder.results import points

    chosen = {}
    for exercise, fw, _, source in mutants:
        if fw == framework:
            chosen.setdefault(exercise, source)
    namespace = dict(master_namespace(slug, framework))
    for source in chosen.values():
        exec(source, namespace)
    with np.errstate(all="ignore"):
        results, _ = run_checks(slug, LocalBackend(namespace, framework), framework, seed=seed)
    scores = {exercise: list(points([r for r in results if r.exercise == exercise]))
              for exercise in dict.fromkeys(r.exercise for r in results)}
    return set(chosen), scores


def graded_master_with(slug: str, framework: str, exercise: str, source: str, folder):
    """A real grade (sandbox and all) of the chapter's master with `exercise`'s cell replaced by
    `source`: the SubmissionResult."""
    import copy

    import nbformat

    from autograder.grade import Options, Sandboxes, grade_one

    nb = copy.deepcopy(nbformat.read(master_path(slug, framework), as_version=4))
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("course", {}).get("exercise") == exercise)
    cell.source = source
    path = folder / f"{exercise}_{framework}.ipynb"
    nbformat.write(nb, path)
    boxes = Sandboxes(Options(timeout=180))
    try:
        return grade_one(path, path.stem, boxes)
    finally:
        boxes.close()


def bound(slug: str):
    """(checks_of, master_namespace, namespace_with, failed_checks), each bound to one chapter."""
    return tuple(functools.partial(f, slug) for f in (checks_of, master_namespace, namespace_with, failed_checks))


def per_exercise(results) -> dict[str, tuple[float, float]]:
    """(score, max_score) summed per exercise over some CheckResults."""
    scores: dict[str, list[float]] = {}
    for r in results:
        got = scores.setdefault(r.exercise, [0.0, 0.0])
        got[0] += r.score
        got[1] += r.max_score
    return {e: tuple(s) for e, s in scores.items()}


def exercise_scores(slug: str, namespace: dict, framework: str, seed: int = 0) -> dict[str, tuple[float, float]]:
    """A chapter's checks run in this process on `namespace`'s functions: (score, max) per exercise.
    Keras' warning that a layer called with mask= does not support masking (chapter 04) is muted."""
    from autograder.checks.runner import LocalBackend, run_checks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results, _ = run_checks(slug, LocalBackend(dict(namespace), framework), framework, seed=seed)
    return per_exercise(results)
