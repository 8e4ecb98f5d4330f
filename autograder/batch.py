"""Grade many submissions: discover, resume, fan out over --jobs processes, report as we go.

Each job process keeps its own resident sandbox workers, so TensorFlow and PyTorch are imported
once per job, not once per student. Every finished submission is written at once (atomically), so
a batch killed midway and run again grades only what is missing, or what changed since.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from autograder import report
from autograder.grade import Options, Sandboxes, grade_one
from autograder.parse import digest_of
from autograder.results import SubmissionResult


class Misuse(Exception):
    """The command was used wrongly (exit status 2), as opposed to a student's bad file."""


def discover(paths: list[Path]) -> list[tuple[Path, str]]:
    """Files to grade with unique, filesystem-safe names for DIR/<name>/."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.ipynb")
                            if ".ipynb_checkpoints" not in p.parts and p.is_file())
        elif path.exists():
            files.append(path)
        else:
            raise Misuse(f"no such file or folder: {path}")
    if not files:
        raise Misuse("no submissions found (a submission is a notebook, or a folder of notebooks)")
    named, used = [], set()
    for path in files:
        base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in path.stem) or "submission"
        name = base if base not in used else f"{path.parent.name}-{base}"
        counter = 2
        while name in used:
            name, counter = f"{base}-{counter}", counter + 1
        used.add(name)
        named.append((path, name))
    return named


_sandboxes: Sandboxes | None = None


def _job_init(options: Options) -> None:
    global _sandboxes
    _sandboxes = Sandboxes(options)


def _job(path: str, name: str) -> dict:
    return grade_one(Path(path), name, _sandboxes).to_dict()


def _is_done(out: Path, path: Path, name: str) -> SubmissionResult | None:
    previous = report.read_submission_result(out, name)
    if previous is None or previous.path != str(path):
        return None
    try:
        same = previous.digest == digest_of(path) or (previous.error and not previous.digest)
    except OSError:
        return None
    return previous if same else None


def grade_batch(paths: list[Path], out: Path, options: Options, jobs: int = 1,
                progress=None) -> list[SubmissionResult]:
    """Grade, write every report, and return all results (resumed ones included), by name."""
    submissions = discover(paths)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise Misuse(f"cannot write to {out}: {exc.strerror or exc}") from None

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

    def finished(result: SubmissionResult) -> None:
        report.write_submission_report(result, out)
        results[result.submission] = result
        if progress:
            progress.advance(result)

    if jobs <= 1 or len(todo) <= 1:
        _job_init(options)
        try:
            for path, name in todo:
                finished(grade_one(path, name, _sandboxes))
        finally:
            _sandboxes.close()
    else:
        context = multiprocessing.get_context("spawn")   # no threads or sandboxes inherited
        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=context,
                                 initializer=_job_init, initargs=(options,)) as pool:
            futures = {pool.submit(_job, str(path), name): (path, name) for path, name in todo}
            for future in as_completed(futures):
                path, name = futures[future]
                try:
                    result = SubmissionResult.from_dict(future.result())
                except Exception as exc:   # a grader crash costs one submission, never the batch
                    result = SubmissionResult(name, str(path), error=f"grader problem, not the student's: {exc}")
                finished(result)
    ordered = [results[name] for _, name in submissions]
    report.write_batch_report(ordered, out)
    if progress:
        progress.stop()
    return ordered
