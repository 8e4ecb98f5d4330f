"""`python -m autograder ...`: the command line fixed in the course contract.

    grade SUBMISSION [SUBMISSION ...] --out DIR [--jobs N] [--timeout SECONDS]
          [--require-sandbox | --unsafe-no-sandbox]
    grade [SUBMISSION ...] --out DIR --regrade NAME [--regrade NAME ...]
    check NOTEBOOK [EXERCISE]
    assign [--check]
    gradescope CHAPTER [--framework torch|tf] --out FILE.zip
    release --out DIR [--seed N]
    grade SUBMISSION ... --out DIR --shard K/N      part K of N of a class (one per node)
    merge OUT [OUT ...] --out DIR                   one class from the shards' outputs
    similarity DIR [--threshold T] [--known FILE ...]
    lms canvas|moodle --gradebook FILE --assignment NAME --match COLUMN DIR --out FILE

Exit status: 0 when the batch ran, whatever the students scored; 2 for misuse, and when no
isolation level that the options allow works here (see autograder/isolation.py).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from autograder import isolation
from autograder.batch import Misuse, grade_batch, regrade, regrade_targets
from autograder.grade import Options
from autograder.report import batch_files, completed_results

err = Console(stderr=True)


class _Bar:
    """A rich progress bar on stderr; quiet when stderr is not a terminal except for a last line."""

    def __init__(self):
        self.progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[last]}"), TimeRemainingColumn(), console=err)

    def start(self, total: int, already: int) -> None:
        if already:
            err.print(f"resuming: {already} of {total} already graded in the output folder")
        self.progress.start()
        self.task = self.progress.add_task("grading", total=total, completed=already, last="")

    def advance(self, result) -> None:
        last = f"{result.submission}: " + ("error" if result.error else f"{result.score:g}/{result.max_score:g}")
        self.progress.update(self.task, advance=1, last=last)

    def stop(self) -> None:
        self.progress.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    grade = sub.add_parser("grade", help="grade a class: notebooks or folders of notebooks")
    grade.add_argument("submissions", nargs="*", type=Path, metavar="SUBMISSION")
    grade.add_argument("--out", required=True, type=Path, metavar="DIR")
    grade.add_argument("--jobs", type=int, default=1, metavar="N", help="parallel graders (default 1)")
    grade.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="wall time for one submission (default: its chapter's, 300 s today)")
    grade.add_argument("--seed", type=int, default=0,
                       help="batch seed: with the course secret and each student, the checks' random inputs")
    safety = grade.add_mutually_exclusive_group()
    safety.add_argument("--require-sandbox", action="store_true",
                        help="grade only under bubblewrap; never fall back to the uid-drop layer")
    safety.add_argument("--unsafe-no-sandbox", action="store_true",
                        help="when neither bubblewrap nor (as root) the uid-drop layer works, run student "
                             "code with no isolation at all; every report says so")
    grade.add_argument("--assignment", metavar="CHAPTER/FRAMEWORK",
                       help="reject notebooks of any other assignment, e.g. 02_principles/torch")
    grade.add_argument("--regrade", action="append", default=[], metavar="NAME",
                       help="grade again only this submission (its folder name in DIR, or its file; "
                            "repeatable), keep every other result in DIR, and rebuild grades.csv, "
                            "summary.md and histogram.png from them all")

    grade.add_argument("--shard", metavar="K/N",
                       help="grade only part K of N (by submission name; run N copies, one per node, "
                            "each with its own --out, then `merge`)")
    grade.add_argument("--similarity", action="store_true",
                       help="after grading, write similarity.html and similarity.csv (see `similarity`)")

    merge = sub.add_parser("merge", help="one class's reports from the outputs of `grade --shard`")
    merge.add_argument("outs", nargs="+", type=Path, metavar="OUT")
    merge.add_argument("--out", required=True, type=Path, metavar="DIR")
    merge.add_argument("--similarity", action="store_true", help="also write the similarity report")

    similar = sub.add_parser("similarity", help="pairs of submissions with similar code, exercise by exercise")
    similar.add_argument("graded", type=Path, metavar="DIR")
    similar.add_argument("--threshold", type=float, default=None, metavar="T",
                         help="report pairs at least this similar, 0-1 (default 0.6)")
    similar.add_argument("--known", type=Path, action="append", default=None, metavar="FILE",
                         help="code students may copy (default: the chapter's own pages); repeatable")
    similar.add_argument("--top", type=int, default=10, metavar="N", help="pairs printed (default 10)")

    lms = sub.add_parser("lms", help="fill one assignment column of a gradebook exported from Canvas or Moodle")
    lms.add_argument("system", choices=["canvas", "moodle"])
    lms.add_argument("graded", type=Path, metavar="DIR")
    lms.add_argument("--gradebook", required=True, type=Path, metavar="FILE")
    lms.add_argument("--assignment", required=True, metavar="NAME")
    lms.add_argument("--match", required=True, metavar="COLUMN",
                     help="the gradebook column that holds the submission names, e.g. 'SIS Login ID'")
    lms.add_argument("--out", required=True, type=Path, metavar="FILE")

    check = sub.add_parser("check", help="run the public checks on your notebook")
    check.add_argument("notebook", type=Path)
    check.add_argument("exercise", nargs="?")

    assign = sub.add_parser("assign", help="regenerate the student notebooks from their masters")
    assign.add_argument("--check", action="store_true", help="only report notebooks that are out of date")

    zipped = sub.add_parser("gradescope", help="write the Gradescope autograder zip for a chapter")
    zipped.add_argument("chapter")
    zipped.add_argument("--framework", choices=["torch", "tf"])
    zipped.add_argument("--out", required=True, type=Path, metavar="FILE.zip")

    release = sub.add_parser("release", help="write the student notebooks and their public checks, to hand out")
    release.add_argument("--out", required=True, type=Path, metavar="DIR")
    release.add_argument("--seed", type=int, help="seed of the public checks' inputs (default: each chapter's)")
    return parser


def _grade(args) -> int:
    if args.jobs < 1 or (args.timeout is not None and args.timeout <= 0):
        raise Misuse("--jobs must be at least 1 and --timeout positive")
    if not args.submissions and not args.regrade:
        raise Misuse("give the SUBMISSION files or folders to grade, or --regrade NAME")
    files = list(args.submissions)
    if args.regrade:   # resolved before anything runs: a mistyped name changes nothing
        targets = regrade_targets(args.regrade, args.submissions, args.out)
        files += [Path(r.path) for r in completed_results(args.out).values()] + [p for p, _ in targets]
    inputs = {p if p.is_dir() else p.parent for p in files}   # every student's folder stays closed
    options = Options(timeout=args.timeout, seed=args.seed, require_sandbox=args.require_sandbox,
                      unsafe_no_sandbox=args.unsafe_no_sandbox, expect=args.assignment,
                      protected=(*sorted(inputs), args.out))
    shard = None
    if args.shard is not None:
        from autograder.shard import Shard, ShardError

        if args.regrade:
            raise Misuse("--shard and --regrade: regrade in the shard's own --out, without --shard")
        try:
            shard = Shard.parse(args.shard)
        except ShardError as exc:
            raise Misuse(str(exc)) from None
    level = _isolation(options, args.out)
    if args.regrade:
        results = regrade(targets, args.out, options, jobs=args.jobs, progress=_Bar())
    else:
        results = grade_batch(args.submissions, args.out, options, jobs=args.jobs, progress=_Bar(),
                              shard=shard)
        if shard is not None:
            err.print(f"part {shard} of the class: {len(results)} submissions here; "
                      f"merge the {shard.count} outputs with `python -m autograder merge OUT... --out DIR`")
    from autograder.report.table import print_summary

    print_summary(results, Console())
    what = f"regraded {len(targets)}; rewrote" if args.regrade else "wrote"
    names = batch_files(results)
    print(f"{what} {args.out / names[0]}, {', '.join(names[1:])}; per submission, its feedback "
          "(feedback.md, .html; feedback_instructor.md), results.json for Gradescope and result.json, "
          "the grader's full record")
    if names[0] != "grades.csv":
        print("note: this batch mixes assignments: each has its own section in summary.md, its own "
              "grades and histogram file (--assignment CHAPTER/FRAMEWORK refuses the others)")
    if args.similarity:
        _similarity(args.out)
    if level == isolation.NONE:
        err.print(f"[bold red]warning:[/bold red] {isolation.OFF_WARNING}")
    return 0


def _merge(args) -> int:
    from autograder.report.table import print_summary
    from autograder.shard import ShardError, merge

    try:
        merged = merge(args.outs, args.out)
    except ShardError as exc:
        raise Misuse(str(exc)) from None
    print_summary(merged.results, Console())
    parts = f" (parts {', '.join(merged.shards)})" if merged.shards else ""
    print(f"merged {len(merged.results)} submissions from {len(args.outs)} outputs{parts} into "
          f"{args.out}: {', '.join(batch_files(merged.results))} and each submission's reports")
    if merged.missing:
        err.print(f"[yellow]{len(merged.missing)} submissions of the class are in no output yet[/yellow]: "
                  + ", ".join(merged.missing[:20]) + (" …" if len(merged.missing) > 20 else ""))
    if args.similarity:
        _similarity(args.out)
    return 0


def _similarity(graded: Path, threshold: float | None = None, known=None, top: int = 10) -> int:
    from rich.table import Table

    from autograder import similarity

    threshold = similarity.DEFAULT_THRESHOLD if threshold is None else threshold
    if not 0 <= threshold <= 1:
        raise Misuse("--threshold is a share between 0 and 1, e.g. 0.6")
    if not graded.is_dir():
        raise Misuse(f"no such folder: {graded}")
    for path in known or []:
        if not path.is_file():
            raise Misuse(f"--known {path}: no such file")
    pairs = similarity.run(graded, threshold, known)
    flagged = [p for p in pairs if p.similarity >= threshold]
    table = Table(title=f"similarity: {len(flagged)} of {len(pairs)} pairs at least {threshold:.0%}")
    for column in ("exercise", "a", "b", "similarity", ""):
        table.add_column(column)
    for p in flagged[:top]:
        table.add_row(p.exercise, p.a, p.b, f"{p.similarity:.0%}", "from the book" if p.from_book else "")
    Console().print(table)
    print(f"wrote {graded / 'similarity.html'} and similarity.csv")
    return 0


def _lms(args) -> int:
    from autograder import lms

    try:
        filled = lms.fill(args.system, args.gradebook, args.assignment, args.match, args.graded)
    except lms.LmsError as exc:
        raise Misuse(str(exc)) from None
    if args.out.resolve() == args.gradebook.resolve():
        raise Misuse("--out must not overwrite the exported gradebook; write a new file")
    lms.write(filled, args.gradebook, args.out)
    print(f"{args.out}: {len(filled.matched) - len(filled.ungraded)} scores in column {filled.column!r}")
    if (warning := lms.scale_warning(filled)):
        err.print(f"[yellow]warning:[/yellow] {warning}")
    for title, items in (("gradebook rows matching no submission (left empty)", filled.unmatched_rows),
                         ("gradebook rows matching several submissions (left empty)", filled.ambiguous_rows),
                         ("matched, but could not be graded (left empty)", filled.ungraded),
                         ("submissions matching no gradebook row", filled.unmatched_submissions)):
        if items:
            err.print(f"[yellow]{len(items)} {title}:[/yellow]")
            for item in items:
                err.print(f"  {item}")
    return 0


def _isolation(options: Options, out: Path) -> str:
    """Choose the level before any student code runs, and say it; refuse (exit 2) when none fits."""
    try:
        level = options.level()
    except isolation.Unavailable as exc:
        raise Misuse(str(exc)) from None
    if level == isolation.UID_DROP:
        try:   # created now so that it is closed (0700) before any submission runs
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            pass   # grade_batch says why it cannot write there
    style = {isolation.NONE: "bold red", isolation.UID_DROP: "yellow"}.get(level, "green")
    err.print(f"[{style}]{isolation.describe(level)}[/{style}]")
    return level


CHECK_UNISOLATED = ("note: bubblewrap is not available here, so your notebook ran as you, with no "
                    "sandbox; that is fine for your own code (install bubblewrap to check it isolated)")


def _check(args) -> int:
    from autograder import chapters, parse
    from autograder.student import verdict

    try:   # reads metadata only, runs nothing: a mistyped exercise is refused before any code runs
        chapter = parse.load(args.notebook).chapter
    except parse.BadSubmission:
        chapter = None   # the grader says why below
    if chapter and args.exercise is not None:
        exercises = chapters.chapter(chapter).exercises
        if args.exercise not in exercises:
            raise Misuse(f"'{args.exercise}' is not an exercise of {chapter} (its exercises: "
                         f"{', '.join(exercises)})")
    # A student checks their own code on their own machine: the best isolation available, and no
    # refusal when there is none (it is their code), but they are told, in their terms.
    options = Options(public_only=True, exercise=args.exercise, unsafe_no_sandbox=True,
                      protected=(args.notebook.parent,))
    with _scratch() as scratch:   # the reports are not for the student: nothing stays behind
        result = grade_batch([args.notebook], scratch, options)[0]
    if result.error:
        print(f"cannot check {args.notebook}: {result.error}")
        return 1
    for warning in result.warnings:
        print(CHECK_UNISOLATED if warning == isolation.OFF_WARNING else f"note: {warning}")
    by_exercise: dict[str, list] = {}
    for c in result.checks:
        by_exercise.setdefault(c.exercise, []).append(c)
    for exercise, checks in by_exercise.items():
        print(verdict(exercise, checks) if exercise != "notebook" else
              ("✓ runs top to bottom" if checks[0].passed else "✗ " + checks[0].output))
    return 0


@contextlib.contextmanager
def _scratch():
    """A private output folder for one `check`, removed however it ends (error, Ctrl-C)."""
    with tempfile.TemporaryDirectory(prefix="autograder-check-", ignore_cleanup_errors=True) as folder:
        yield Path(folder)


def release_environment(reexec: bool) -> None:
    """Put RELEASE_ENV in place before TensorFlow or PyTorch is imported. PYTHONHASHSEED only acts
    at start-up, so a program started without it (`reexec`: the command line) starts again with it."""
    from autograder.release import RELEASE_ENV   # imports no framework

    missing = {k: v for k, v in RELEASE_ENV.items() if os.environ.get(k) != v}
    os.environ.update(RELEASE_ENV)
    if reexec and "PYTHONHASHSEED" in missing:
        os.execv(sys.executable, [sys.executable, "-m", "autograder", *sys.argv[1:]])
    loaded = [m for m in ("tensorflow", "torch") if m in sys.modules]
    if loaded and missing.keys() & {"TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS"}:
        raise Misuse(f"release must set {', '.join(sorted(missing))} before {' and '.join(loaded)} is "
                     "imported: run it as `python -m autograder release`")


def _error(exc: Exception) -> None:
    """A usage error: one line, however long (it may list names), and its text never markup (it
    can hold a file name or what was typed)."""
    err.print("[red]error:[/red]", escape(str(exc)), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "release":
        try:
            release_environment(reexec=argv is None)   # no argv: the command line itself
        except Misuse as exc:
            _error(exc)
            return 2
    try:
        if args.command == "grade":
            return _grade(args)
        if args.command == "check":
            return _check(args)
        if args.command == "merge":
            return _merge(args)
        if args.command == "similarity":
            return _similarity(args.graded, args.threshold, args.known, args.top)
        if args.command == "lms":
            return _lms(args)
        if args.command == "assign":
            from autograder import assign

            return assign.main(["--check"] if args.check else [])
        if args.command == "release":
            from autograder import release

            return release.main(["--out", str(args.out)] + (["--seed", str(args.seed)] if args.seed is not None else []))
        from autograder import export

        return export.main([args.chapter, "--out", str(args.out)]
                           + (["--framework", args.framework] if args.framework else []))
    except Misuse as exc:
        _error(exc)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: what was graded is saved; run the same command again to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
