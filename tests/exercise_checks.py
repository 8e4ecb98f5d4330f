"""Calling a chapter's check functions directly, for the tests of mutants and correct alternatives.

One pytest run of the grader per mutant would cost most of a second each; here the check functions
are called with the grader's own fixtures (`student` over a `LocalBackend`, `oracle`, a seeded `rng`).
"""
from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

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


class ChapterChecks:
    """A chapter's checks module and oracle, and its masters' namespaces."""

    def __init__(self, chapter: str, checks: ModuleType, oracle: ModuleType):
        self.chapter, self.checks, self.oracle = chapter, checks, oracle

    def checks_of(self, exercise: str) -> list:
        found = [func for name, func in vars(self.checks).items() if name.startswith("test_") and callable(func)
                 and (m := meta(func)) is not None and m.exercise == exercise]
        assert found, f"no checks for {exercise}"
        return found

    @functools.lru_cache(maxsize=None)
    def master(self, framework: str) -> dict:
        return load_namespace(master_path(self.chapter, framework))

    def namespace_with(self, framework: str, source: str) -> dict:
        """A copy of the master's namespace in which `source` redefines one function."""
        namespace = dict(self.master(framework))
        exec(source, namespace)
        return namespace

    def failed_checks(self, namespace: dict, framework: str, exercise: str, seed: int = 0) -> list[str]:
        """'check name: message' for every check of `exercise` that the namespace fails."""
        student = StudentProxy(LocalBackend(namespace, framework), framework, lambda names: None)
        failed = []
        for index, func in enumerate(self.checks_of(exercise)):
            try:
                func(student=student, oracle=self.oracle, rng=np.random.default_rng([seed, index]))
            except CheckFailure as exc:
                failed.append(f"{func.__name__}: {exc}")
        return failed

    def passes_every_seed(self, framework: str, exercise: str, source: str, seeds=(0, 7)) -> list[str]:
        """The failures of a (correct) alternative definition over several seeds: [] when it passes."""
        return [failure for seed in seeds
                for failure in self.failed_checks(self.namespace_with(framework, source), framework, exercise, seed)]

    def graded_with_mutants(self, mutants, framework: str = "torch", seed: int = 5) -> tuple[set, dict]:
        """The first mutant of `framework` for each exercise, all put into one namespace and graded by
        the real check runner: (the mutated exercises, exercise -> [points earned, points possible])."""
        from autograder.checks.runner import run_checks

        chosen = {}
        for exercise, fw, _, source in mutants:
            if fw == framework:
                chosen.setdefault(exercise, source)
        namespace = dict(self.master(framework))
        for source in chosen.values():
            exec(source, namespace)
        with np.errstate(all="ignore"):
            results, _ = run_checks(self.chapter, LocalBackend(namespace, framework), framework, seed=seed)
        scores: dict[str, list[float]] = {}
        for r in results:
            scores.setdefault(r.exercise, [0.0, 0.0])
            scores[r.exercise][0] += r.score
            scores[r.exercise][1] += r.max_score
        return set(chosen), scores
