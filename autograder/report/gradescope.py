"""SubmissionResult -> Gradescope's results.json, and a validator for that format.

The schema (gradescope_results.schema.json, beside this file) is written from Gradescope's public
autograder specification. Visibility follows disclosure.py: public checks are "visible", hidden
ones "after_published". The summary in the top-level `output` is visible at once, so it counts
only public checks and says how many points the hidden ones are worth, never how they went.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema

from autograder.report.disclosure import GRADESCOPE_VISIBILITY, student_output
from autograder.report.numbers import fmt_points
from autograder.report.sections import FORBIDDEN, NOT_GRADED, framework_label, one_line
from autograder.results import CheckResult, SubmissionResult, points

SCHEMA_PATH = Path(__file__).with_name("gradescope_results.schema.json")


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)   # a broken schema must fail loudly, not accept everything
    return cls(schema)


def validate_gradescope(d: dict) -> None:
    """Raise jsonschema.ValidationError (the most relevant error) unless `d` fits the format."""
    error = jsonschema.exceptions.best_match(_validator().iter_errors(d))
    if error is not None:
        raise error


def to_gradescope(result: SubmissionResult) -> dict:
    """The results.json for one submission. Valid for errored submissions too (score 0)."""
    return {
        "score": result.score,
        "execution_time": round(max(result.seconds, 0.0), 1),
        "output": summary(result),
        "output_format": "text",   # student text must never be rendered as HTML or Markdown
        "visibility": "visible",
        # run_autograder prints the instructor's feedback, hidden messages included, to stdout
        "stdout_visibility": "hidden",
        "tests": [_test(c) for c in result.checks],
        "extra_data": {
            "submission": result.submission,
            "chapter": result.chapter,
            "framework": result.framework,
            "seed": _common_seed(result.checks),
            "max_score": result.max_score,
            "sandbox": result.sandbox,
            "filesystem_wall": result.filesystem_wall,
            "warnings": list(result.warnings),
            "builtins": {k: list(v) for k, v in result.builtins.items()},
            "error": result.error,
        },
    }


def _test(check: CheckResult) -> dict:
    return {
        "name": check.name,
        "score": round(check.score, 6),
        "max_score": round(check.max_score, 6),
        "status": check.status,
        "output": student_output(check),
        "output_format": "text",
        "visibility": GRADESCOPE_VISIBILITY[check.visibility],
        "extra_data": {"exercise": check.exercise, "seed": check.seed},
    }


def _common_seed(checks: list[CheckResult]) -> int | None:
    """The batch seed when every check reports the same one; per-check seeds are on each test."""
    seeds = {c.seed for c in checks if c.seed is not None}
    return seeds.pop() if len(seeds) == 1 else None


def summary(result: SubmissionResult) -> str:
    """The text above the tests on Gradescope: what a student needs first, in a few lines."""
    lines: list[str] = []
    where = f"{result.chapter or 'assignment unknown'} ({framework_label(result.framework)})"
    if result.error:
        lines.append(f"{NOT_GRADED}: {one_line(result.error)}")
        lines.append(f"Score: {fmt_points(result.score)}." + (f" Assignment: {where}." if result.chapter else ""))
    else:
        public = [c for c in result.checks if c.visibility == "visible"]
        hidden = [c for c in result.checks if c.visibility != "visible"]
        score, max_score = points(public)
        lines.append(
            f"{where}: public checks {fmt_points(score)} / {fmt_points(max_score)} points"
            f" ({sum(c.passed for c in public)} of {len(public)} passed)."
        )
        if hidden:
            lines.append(
                f"Hidden checks: {len(hidden)}, worth {fmt_points(points(hidden)[1])}"
                " points; their results appear when grades are published."
            )
    for exercise, calls in result.builtins.items():
        lines.append(
            f"{FORBIDDEN} in {exercise}: {', '.join(calls)}."
            " This exercise asks you to implement it yourself."
        )
    for warning in result.warnings:
        lines.append(f"Warning: {one_line(warning)}")
    return "\n".join(lines)
