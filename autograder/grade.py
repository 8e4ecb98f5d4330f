"""Grade one submission: parse -> execute -> check -> score. Trusted side.

The score stage lives here too, because it is small: a forbidden built-in zeroes its exercise, and
the notebook's run from top to bottom becomes its own line.
"""
from __future__ import annotations

import atexit
import multiprocessing.util
import time
from dataclasses import dataclass
from pathlib import Path

from autograder import chapters, isolation, parse, scan, secret, untrusted
from autograder.checks.api import MB
from autograder.checks.runner import run_checks
from autograder.session import Runner
from autograder.workers import Limits, Sandbox, SandboxError
from autograder.results import RUNS_TOP_TO_BOTTOM, CheckResult, SubmissionResult


@dataclass
class Options:
    timeout: float | None = None      # seconds for one submission, all cells and checks together
                                      # (None: its chapter's submission_seconds)
    seed: int = 0                     # the batch seed; each check derives its own from it, the
                                      # course secret and the student (autograder/secret.py)
    public_only: bool = False         # `autograder check`: what students may run themselves
    require_sandbox: bool = False     # bubblewrap or nothing
    unsafe_no_sandbox: bool = False   # allow isolation "none" when no other level works
    isolation: str | None = None      # the level, once chosen (the CLI chooses before the batch)
    protected: tuple[Path, ...] = ()  # folders closed to submissions under uid-drop: inputs, output
    expect: str | None = None         # "CHAPTER/FRAMEWORK" to reject other assignments
    exercise: str | None = None

    def level(self) -> str:
        """The isolation level; isolation.Unavailable when the options allow none that works."""
        if self.isolation is None:
            self.isolation = isolation.choose(self.unsafe_no_sandbox, self.require_sandbox)
        return self.isolation


class Sandboxes:
    """This process's resident workers, one per framework, started on first use."""

    def __init__(self, options: Options):
        self.options = options
        self.by_framework: dict[str, Sandbox] = {}
        atexit.register(self.close)
        # A --jobs process ends through multiprocessing, which skips atexit but runs finalizers:
        # without this its workers' cgroups and dropped uids were left behind.
        multiprocessing.util.Finalize(self, self.close, exitpriority=10)

    def get(self, framework: str) -> Sandbox:
        """The framework's worker; its limits are the machine's (cgroup), each submission brings
        its own (`submission_limits`)."""
        if framework not in self.by_framework:
            try:
                level = self.options.level()
            except isolation.Unavailable as exc:
                raise SandboxError(str(exc)) from None
            self.by_framework[framework] = Sandbox(framework, Limits(), level, list(self.options.protected))
        return self.by_framework[framework]

    def close(self) -> None:
        for sandbox in self.by_framework.values():
            sandbox.close()
        self.by_framework.clear()


def submission_limits(chapter: str, timeout: float | None = None) -> Limits:
    """One submission's limits: its chapter record's. `timeout` (--timeout), when given, replaces
    the submission's time, and then one cell or call may use a fair share of it, not all."""
    whole = chapters.chapter(chapter)
    record = whole.limits
    cell, call, total = record.cell_seconds, record.call_seconds, record.submission_seconds
    if timeout is not None:
        cell, call, total = min(cell, timeout / 4), min(call, timeout / 6), timeout
    # forbidden built-ins are taken out of the process (tracer.remove) unless an exercise may use them
    removed = () if whole.builtins_allowed else (*whole.forbidden.torch, *whole.forbidden.tf)
    return Limits(call_seconds=call, cell_seconds=cell, submission_seconds=total,
                  submission_memory_bytes=int(record.memory_mb * MB), removed_builtins=removed)


def _run_line(outcomes, gave_up: str) -> CheckResult:
    failed = [o for o in outcomes if not o.ok]
    lines = []
    for o in failed[:10]:
        last = (o.error.strip().splitlines() or ["failed"])[-1]   # the exception, as the student raised it
        lines.append(f"code cell {o.index}: {untrusted.name(last, 200)}")
    if gave_up:
        lines.append(f"stopped: {untrusted.name(gave_up, 200)}")
    ok = not failed and not gave_up
    return CheckResult("notebook", RUNS_TOP_TO_BOTTOM, 0.0, 0.0, "passed" if ok else "failed", "visible",
                       "" if ok else "The notebook does not run from top to bottom; what could run was "
                       "still graded.\n" + "\n".join(lines))


def _charge_builtins(checks: list[CheckResult], used: dict[str, list[str]]) -> None:
    for c in checks:
        if c.exercise in used:
            c.score, c.status = 0.0, "failed"
            c.output = (f"uses {', '.join(used[c.exercise])}, the built-in this exercise asks you to write "
                        "yourself; the exercise scores zero.\n" + c.output).strip()


GRADER_PROBLEM = "grader problem, not the student's"


def grader_problem(result: SubmissionResult, exc: BaseException | str) -> SubmissionResult:
    """Record a failure that is the grader's, not the student's, in one line; a rerun regrades it."""
    what = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    result.error = f"{GRADER_PROBLEM}: {untrusted.name(what, 300)}"
    result.grader_problem = True
    return result


def grade_one(path: Path, name: str, sandboxes: Sandboxes) -> SubmissionResult:
    """One submission's result. Never raises (but for KeyboardInterrupt): whatever goes wrong
    stays in this submission, as a one-line error."""
    start = time.monotonic()
    result = SubmissionResult(submission=name, path=str(path))
    try:
        result.digest = parse.digest_of(path)   # even for an error: a changed file is regraded
    except OSError:
        pass
    try:
        _grade(path, sandboxes, result, start)
    except Exception as exc:   # MemoryError and RecursionError included: never the batch's end
        grader_problem(result, exc)
        result.checks = []
        sandboxes.close()      # in doubt about the workers' state: start afresh for the next one
    result.seconds = round(time.monotonic() - start, 3)
    return result


def _grade(path: Path, sandboxes: Sandboxes, result: SubmissionResult, start: float) -> None:
    options = sandboxes.options
    try:
        sub = parse.load(path, options.expect)
    except parse.BadSubmission as bad:
        result.error = str(bad)
        return
    result.chapter, result.framework, result.exercises = sub.chapter, sub.framework, sub.exercises
    result.digest = sub.digest
    result.warnings += sub.warnings
    try:
        sandbox = sandboxes.get(sub.framework)
    except SandboxError as exc:
        grader_problem(result, str(exc))
        return
    result.sandbox = sandbox.isolation
    if sandbox.isolation == isolation.NONE:
        result.warnings.append(isolation.OFF_WARNING)
    if sandbox.isolation == isolation.UID_DROP:   # the layer's filesystem wall, named in every report
        result.filesystem_wall = f"Landlock {sandbox.landlock}"
        if not sandbox.landlock.startswith("on"):
            result.warnings.append(f"isolation uid-drop without a filesystem wall: {isolation.wall_line(sandbox.landlock)}")
    limits = submission_limits(sub.chapter, options.timeout)
    runner = Runner(sandbox, sub.cells, deadline=start + limits.submission_seconds, limits=limits)
    try:
        outcomes = runner.run_cells()
        # Graded inputs come from the course secret, never from the public seed the release drew
        # its stored ones from; `autograder check` (public checks only) draws the release's.
        key = None if options.public_only else secret.course_secret()
        result.secret = secret.fingerprint(key) if key is not None else ""
        checks, traced = run_checks(sub.chapter, runner, sub.framework, exercise=options.exercise,
                                    public_only=options.public_only, seed=options.seed,
                                    secret_key=key, student=secret.student_of(result.submission))
    finally:
        runner.close()
    record = chapters.chapter(sub.chapter)
    findings = scan.scan(sub.cells, sub.exercises, record.no_autograd, record.own_job)
    result.notes = findings.notes + sandbox.cleanup_notes   # leftovers the clean-up could not remove
    sandbox.cleanup_notes.clear()
    used = {k: set(v) for k, v in findings.charged.items()}
    for exercise, names in traced.items():
        used.setdefault(exercise, set()).update(names)
    charged = {exercise: record.charged(exercise, names) for exercise, names in used.items()}
    result.builtins = {exercise: names for exercise, names in charged.items() if names}
    _charge_builtins(checks, result.builtins)
    result.checks = [_run_line(outcomes, runner.gave_up), *checks]
