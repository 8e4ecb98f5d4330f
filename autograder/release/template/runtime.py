"""`check("name")` in a released notebook: the stored public checks, run on the notebook's functions.

The checks, the student-side calls and the verdict are the grader's own code, copied at release
time (the other modules of this package); the oracle is replaced by the values it gave then.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from course_checks import untrusted
from course_checks.checks.runner import MAX_OUTPUT, MAX_OUTPUT_LINES, CallLimits, LocalBackend, StudentProxy, _message
from course_checks.replay import ReplayOracle, Store, run_check
from course_checks.results import CheckResult
from course_checks.student import Checker as _Checker

DATA = Path(__file__).parent / "data"
FRAMEWORKS = ("torch", "tf")


class Checker(_Checker):
    package = "course_checks"

    def __init__(self, chapter: str, framework: str):
        shipped = sorted(p.stem for p in DATA.glob("*.json"))
        if chapter not in shipped:
            raise LookupError(f"no checks for chapter {chapter!r} in this package; it has: {', '.join(shipped)}")
        if framework not in FRAMEWORKS:
            raise ValueError(f"unknown framework {framework!r} (expected one of {', '.join(FRAMEWORKS)})")
        self.store, self.manifest = Store.load(DATA, chapter)
        super().__init__(chapter, framework, tuple(self.manifest["exercises"]))
        self.checks = importlib.import_module(f"course_checks.checks.{self.manifest['checks_module']}")

    def results(self, namespace: dict, exercise: str) -> list[CheckResult]:
        oracle = ReplayOracle(self.store, self.manifest["numpy"])
        results = []
        for entry in self.manifest["checks"]:
            if entry["exercise"] != exercise:
                continue
            student = StudentProxy(LocalBackend(namespace, self.framework), self.framework, lambda names: None,
                                   CallLimits(seed=entry["seed"]))   # seeded calls, as in the release's own run
            fixtures = {"student": student, "oracle": oracle, "rng": np.random.default_rng(entry["seed"]),
                        "framework": self.framework}
            failure = run_check(getattr(self.checks, entry["function"]), fixtures)
            results.append(CheckResult(
                exercise=exercise, name=f"{exercise}: {entry['what']}",
                score=entry["points"] if failure is None else 0.0, max_score=entry["points"],
                status="passed" if failure is None else "failed", visibility="visible",
                output="" if failure is None else untrusted.neutral(_message(failure), MAX_OUTPUT, MAX_OUTPUT_LINES),
                seed=entry["seed"]))
        return results
