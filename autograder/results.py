"""Typed records that pass between the grading stages.

parse -> execute -> check -> score -> report. Every stage after `check` reads these records only,
and they round-trip through JSON (`to_dict` / `from_dict`) so that a resumed batch can reload what
an earlier run wrote.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["passed", "failed"]
Visibility = Literal["visible", "hidden"]

RUNS_TOP_TO_BOTTOM = "notebook: runs top to bottom"


@dataclass
class CheckResult:
    """One graded check: a line in results.json and in the feedback."""

    exercise: str          # exercise name from the contract, or "notebook" for whole-notebook lines
    name: str              # "<exercise>: <what it checks>"
    score: float
    max_score: float
    status: Status
    visibility: Visibility  # public checks are "visible", hidden ones "hidden"
    output: str = ""       # what went wrong and a hint; empty when passed
    seed: int | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def points(checks: list[CheckResult]) -> tuple[float, float]:
    """(score, max_score) of some checks, without float noise: the one place that sums them (a
    submission, an exercise's section, the public or hidden checks of the Gradescope summary)."""
    return round(sum(c.score for c in checks), 6), round(sum(c.max_score for c in checks), 6)


@dataclass
class SubmissionResult:
    """Everything the trusted side concluded about one submission."""

    submission: str                    # the name used for DIR/<submission>/ and the CSV row
    path: str                          # the file as given on the command line
    chapter: str | None = None
    framework: str | None = None
    error: str | None = None           # one line, for a submission that could not be graded at all
    grader_problem: bool = False       # the error is the grader's fault: a rerun grades it again
    checks: list[CheckResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # e.g. reduced isolation
    builtins: dict[str, list[str]] = field(default_factory=dict)  # exercise -> forbidden calls seen
    notes: list[str] = field(default_factory=list)   # instructor only: what the built-in scan could not settle
    sandbox: str = ""                  # the isolation level: "bubblewrap", "uid-drop" or "none"
    filesystem_wall: str = ""          # uid-drop only: "Landlock on (ABI n)" or "Landlock off (why)"
    seconds: float = 0.0
    exercises: list[str] = field(default_factory=list)  # the assignment's exercises, in order
    digest: str = ""                   # sha256 of the file graded, so a resumed batch spots changes
    secret: str = ""                   # fingerprint of the course secret its inputs came from (secret.py)

    @property
    def score(self) -> float:
        return points(self.checks)[0]

    @property
    def max_score(self) -> float:
        return points(self.checks)[1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SubmissionResult":
        data = dict(data)
        data["checks"] = [CheckResult(**c) for c in data.get("checks", [])]
        return cls(**data)
