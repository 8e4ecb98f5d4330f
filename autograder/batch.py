"""Grade many submissions: discover, resume, fan out over --jobs processes, report as we go.

Each job process keeps its own resident sandbox workers, so TensorFlow and PyTorch are imported
once per job, not once per student. Every finished submission is written at once (atomically), so
a batch killed midway and run again grades only what is missing, what changed since, and what
failed for the grader's own reasons (`SubmissionResult.grader_problem`).

Nothing one submission does ends the batch: `grade_one` turns any exception into that
submission's one-line error, and a job process that dies (the OOM killer, a crash in a native
library) costs only the submissions it held: they are graded again, one at a time, in a fresh
process, and one that kills that process too is recorded as a grader problem (regraded next run).

Output folders are named from the file name, reduced to ASCII letters, digits, `_` and `-`: no
name can be `..`, hidden, a grader file (`grades.csv`), or differ from another only by case or
Unicode normalisation (which some file systems ignore); the `file` column of grades.csv keeps
the real path.
"""
from __future__ import annotations

import difflib
import hashlib
import multiprocessing
import os
import re
import sys
import tempfile
import unicodedata
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from autograder import report
from autograder.grade import Options, Sandboxes, grade_one, grader_problem
from autograder.parse import digest_of
from autograder.report.atomic import remove_all, why_not_written
from autograder.results import SubmissionResult

MAX_NAME = 80
# Device names Windows will not create as folders (an instructor may unzip the output there).
WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
JOB_DIED = "the grading process died while grading this submission, twice"


class Misuse(Exception):
    """The command was used wrongly (exit status 2), as opposed to a student's bad file."""


def discover(paths: list[Path]) -> list[tuple[Path, str]]:
    """Files to grade, each with a unique, filesystem-safe name for DIR/<name>/, the same on
    every run over the same files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += _notebooks_in(path)
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            raise Misuse(f"no such file or folder: {path}")
    if not files:
        raise Misuse("no submissions found (a submission is a notebook, or a folder of notebooks)")
    named, used = [], set()
    for path in files:
        base = safe_name(path.stem)
        # On a clash, the parent folder's name, then a hash of the path: both stable across runs.
        candidates = [base, f"{safe_name(path.parent.name)}-{base}",
                      f"{base}-{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"]
        name = next((c for c in candidates if c.casefold() not in used), None)
        counter = 2
        while name is None or name.casefold() in used:
            name, counter = f"{candidates[-1]}-{counter}", counter + 1
        used.add(name.casefold())
        named.append((path, name))
    return named


def _notebooks_in(folder: Path) -> list[Path]:
    """Every *.ipynb below `folder`, without following a link: a linked notebook or a linked
    folder is listed as it is (parse refuses it: "... is a symbolic link"), never read through."""
    found = []
    for where, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d != ".ipynb_checkpoints")
        here = Path(where)
        for d in dirs:
            if (here / d).is_symlink():   # os.walk lists a linked folder in dirs, never enters it
                found.append(here / d)
        found += [here / n for n in names if n.endswith(".ipynb")
                  and ((here / n).is_symlink() or (here / n).is_file())]
    return sorted(found)


def safe_name(stem: str) -> str:
    """ASCII letters, digits, `_` and `-` only, starting with a letter or digit; accents are
    dropped (José -> Jose), everything else becomes `_`."""
    ascii_only = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_only).strip("_-")[:MAX_NAME].rstrip("_-")
    if base.casefold() in WINDOWS_DEVICES:
        base = f"{base}_"
    return base or "submission"


_sandboxes: Sandboxes | None = None


def _job_init(options: Options) -> None:
    global _sandboxes
    _sandboxes = Sandboxes(options)


def _job(path: str, name: str) -> dict:
    return grade_one(Path(path), name, _sandboxes).to_dict()


def _is_done(out: Path, path: Path, name: str) -> SubmissionResult | None:
    """The previous result of this very file, unless it must be graded again: a missing or
    unreadable result, another file, changed content, or a grader problem."""
    previous = report.read_submission_result(out, name)
    if previous is None or previous.path != str(path) or previous.grader_problem or not previous.digest:
        return None
    try:
        same = previous.digest == digest_of(path)
    except OSError:
        return None
    return previous if same else None


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A fresh name each time: a submission's folder can never stand in the probe's way.
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test-")
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        raise Misuse(f"cannot write to {out}: {exc.strerror or exc}") from None


def grade_batch(paths: list[Path], out: Path, options: Options, jobs: int = 1,
                progress=None, shard=None) -> list[SubmissionResult]:
    """Grade, write every report, and return all results (resumed ones included), by name.

    With `shard` (autograder.shard.Shard), only the submissions of that part are graded; the
    whole class's names are recorded for `merge`."""
    submissions = discover(paths)
    _check_writable(out)
    if shard is not None:
        from autograder.shard import write_manifest

        write_manifest(out, shard, [name for _, name in submissions])
        submissions = [(path, name) for path, name in submissions if shard.owns(name)]

    results: dict[str, SubmissionResult] = {}
    todo = []
    for path, name in submissions:
        done = _is_done(out, path, name)
        if done is not None:
            results[name] = done
        else:
            todo.append((path, name))
    if progress:
        progress.start(total=len(submissions), already=len(results))
    _grade_all(todo, out, options, jobs, results, progress)
    ordered = [results[name] for _, name in submissions]
    _write_batch_report(ordered, out)
    if progress:
        progress.stop()
    return ordered


def regrade_targets(names: list[str], paths: list[Path], out: Path) -> list[tuple[Path, str]]:
    """The (file, name) of each submission named by --regrade: its folder name in `out` (any case),
    its file's path, or its bare file name when one submission has it ("José García.ipynb").

    The files come from the results in `out` (the path each was graded from) and, when given, from
    `paths` discovered as a batch would (a new file for a known name wins). Misuse for a name that
    matches nothing or several, or whose file is gone: a regrade must never turn a grade into an
    error because the instructor mistyped or moved something."""
    known = {name: Path(r.path) for name, r in report.completed_results(out).items()}
    if paths:
        known.update({name: path for path, name in discover(paths)})
    if not known:
        raise Misuse(f"--regrade: no graded submissions in {out}; grade the class first")
    targets: dict[str, Path] = {}
    for wanted in names:
        matches = [n for n in known if n == wanted] or [n for n in known if n.casefold() == wanted.casefold()]
        matches = matches or [n for n, path in known.items() if _same_file(path, Path(wanted))]
        if not matches and "/" not in wanted and "\\" not in wanted:   # a bare file name: "José García.ipynb"
            matches = [n for n, path in known.items() if path.name == wanted]
        if len(matches) != 1:
            what = "no submission of that name or file" if not matches else f"several submissions: {', '.join(matches)}"
            raise Misuse(f"--regrade {wanted}: {what} in {out}. Give the submission's folder name in {out}, "
                         f"its file name, or its path (names there: {_some_names(wanted, known)})")
        name = matches[0]
        if not known[name].is_file():
            raise Misuse(f"--regrade {wanted}: its file {known[name]} no longer exists; "
                         "give the new location as SUBMISSION")
        targets[name] = known[name]
    return [(path, name) for name, path in targets.items()]


def _some_names(wanted: str, known: dict[str, Path], most: int = 8) -> str:
    """Up to `most` names, the likeliest typo targets first, to pick from."""
    close = difflib.get_close_matches(wanted, list(known), n=most, cutoff=0.5)
    names = close + [n for n in sorted(known, key=str.casefold) if n not in close]
    return ", ".join(names[:most]) + (f", … ({len(names)} in all)" if len(names) > most else "")


def _same_file(recorded: Path, given: Path) -> bool:
    if str(recorded) == str(given):
        return True
    try:
        return given.exists() and recorded.exists() and given.samefile(recorded)
    except OSError:
        return False


def regrade(targets: list[tuple[Path, str]], out: Path, options: Options, jobs: int = 1,
            progress=None) -> list[SubmissionResult]:
    """Grade `targets` again (regrade_targets), rewrite their reports, and rebuild grades.csv,
    summary.md and histogram.png from every result in `out`; return those results, by name."""
    _check_writable(out)
    results = report.completed_results(out)
    if progress:
        progress.start(total=len(targets), already=0)
    _grade_all(targets, out, options, jobs, results, progress)
    ordered = [results[name] for name in sorted(results, key=lambda n: (n.casefold(), n))]
    _write_batch_report(ordered, out)
    if progress:
        progress.stop()
    return ordered


def _grade_all(todo: list[tuple[Path, str]], out: Path, options: Options, jobs: int,
               results: dict[str, SubmissionResult], progress) -> None:
    """Grade `todo`, writing each report as it finishes and putting its result in `results`."""
    def finished(result: SubmissionResult) -> None:
        _write_reports(result, out)
        results[result.submission] = result
        if progress:
            progress.advance(result)

    if jobs <= 1 or len(todo) <= 1:
        _job_init(options)
        try:
            for path, name in todo:
                try:
                    result = grade_one(path, name, _sandboxes)
                except Exception as exc:   # grade_one does not raise; if it ever does, one submission pays
                    result = grader_problem(SubmissionResult(name, str(path)), exc)
                finished(result)
        finally:
            _sandboxes.close()
    else:
        _grade_in_jobs(todo, options, jobs, finished)


REPORT_FILES = ("results.json", "feedback.md", "feedback.html", "feedback_instructor.md")


def _write_reports(result: SubmissionResult, out: Path) -> None:
    """Write one submission's reports, or none of them: on a full disk (or any OSError) the
    student is recorded as not written (a grader problem, so the next run grades them again),
    the terminal says so, and the batch goes on."""
    try:
        report.write_submission_report(result, out)
    except OSError as exc:
        folder = report.submission_dir(out, result.submission)
        remove_all([folder / name for name in (*REPORT_FILES, report.COMPLETE_MARKER)])
        why = why_not_written(exc)
        grader_problem(result, f"reports not written: {why}")
        print(f"grader: {result.submission}: reports not written ({why}); the batch goes on",
              file=sys.stderr, flush=True)


def _write_batch_report(ordered: list[SubmissionResult], out: Path) -> None:
    """grades.csv first (write_batch_report's order), then the rest: a full disk costs what it must."""
    try:
        report.write_batch_report(ordered, out)
    except OSError as exc:
        done = [name for name in report.batch_files(ordered) if (out / name).exists()]
        print(f"grader: the batch's reports could not all be written ({why_not_written(exc)}); "
              f"written: {', '.join(done) or 'none'}", file=sys.stderr, flush=True)


def _grade_in_jobs(todo: list[tuple[Path, str]], options: Options, jobs: int, finished) -> None:
    """Grade in `jobs` processes, at most one submission held by each at a time, so that a job's
    death is charged to what it held. Held submissions are graded again one by one in a fresh pool;
    one that kills a job a second time is a grader problem."""
    queue, suspects = deque(todo), deque()
    deaths: dict[str, int] = {}
    context = multiprocessing.get_context("spawn")   # no threads or sandboxes inherited
    while queue or suspects:
        lost: list[tuple[Path, str]] = []
        with ProcessPoolExecutor(min(jobs, len(queue) + len(suspects)), mp_context=context,
                                 initializer=_job_init, initargs=(options,)) as pool:
            held: dict = {}
            broken = False
            while (queue or suspects or held) and not broken:
                limit = 1 if suspects else jobs
                while len(held) < limit and (queue or suspects) and not broken:
                    source = suspects if suspects else queue
                    path, name = source.popleft()
                    try:
                        held[pool.submit(_job, str(path), name)] = (path, name)
                    except BrokenProcessPool:   # broke since the last wait: this one was never sent
                        source.appendleft((path, name))
                        broken = True
                done, _ = wait(held, return_when=FIRST_COMPLETED)
                for future in done:
                    path, name = held.pop(future)
                    try:
                        result = SubmissionResult.from_dict(future.result())
                    except BrokenProcessPool:
                        lost.append((path, name))
                        broken = True
                        continue
                    except Exception as exc:   # a grader crash costs one submission, never the batch
                        result = grader_problem(SubmissionResult(name, str(path)), exc)
                    finished(result)
            for future, (path, name) in held.items():   # the pool broke: what else came through?
                try:
                    finished(SubmissionResult.from_dict(future.result()))
                except Exception:
                    lost.append((path, name))
        for path, name in lost:
            deaths[name] = deaths.get(name, 0) + 1
            if deaths[name] >= 2:
                finished(grader_problem(SubmissionResult(name, str(path)), JOB_DIED))
            else:
                suspects.append((path, name))
