"""`python -m autograder release --out DIR`: the exercises as students take them home.

For every chapter with exercises it writes `DIR/<chapter>/`:

    exercises_torch.ipynb, exercises_tf.ipynb   the student notebooks, `check` bound to the package below
    course_checks/                              the public checks, self-contained

`course_checks` needs NumPy, pytest and the notebook's framework, not this repository. Its
expected values are stored: each public check ran at release time against both reference
solutions with a recording oracle (`template/replay.py`), and the released check replays what the
oracle answered. It carries the public checks and the student-side code they call, copied
definition by definition (`bundle.py`), and never the oracle, a hidden check or a solution.
`tests/test_release.py` scans a release for them and runs it without the repository.
"""
from __future__ import annotations

import argparse
import ast
import logging
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import nbformat
import numpy as np

from autograder import assign, chapters, notebooks
from autograder.chapters import FRAMEWORKS, Chapter
from autograder.release.bundle import SOURCE_PACKAGE, Bundle, BundleError, is_module as bundle_module
from autograder.release.template.replay import RecordingOracle, ReplayOracle, Store, run_check

PACKAGE = "course_checks"
# What `make` exports, set by `python -m autograder release` itself (cli.release_environment), so that
# run as the README says it computes what it computes under make. TF's oneDNN kernels beside
# PyTorch's give wrong numbers in one process (tests/test_frameworks_together.py); the hash seed and
# one thread make the run repeatable (two spinning OpenMP threads per framework on 2 cores made it
# three times slower); level 3 silences TF's C++ log. Each manifest records what was in effect.
RELEASE_ENV = {"PYTHONHASHSEED": "0", "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3",
               "OMP_NUM_THREADS": "1"}
TEMPLATE = Path(__file__).parent / "template"
MARKER = "RELEASED"   # a file in each chapter folder: only such folders are ever replaced
# The setup cell's binding of `check` to the grader, rewritten to the released package.
_BINDING = re.compile(r"import autograder|check = autograder\.checker\(.*\)")
_NOTE = ("> Chapter {number} exercises, {framework}. Fill in each `# YOUR CODE HERE`, run the cell, then "
         "run the `check(...)` cell after it. The checks here are the public ones; the grader runs "
         "more on the notebook you hand in.")


class ReleaseError(Exception):
    """A release that would be wrong (a reference failing a public check, a leak); nothing is written."""


def _bundle(record: Chapter, public: list) -> Bundle:
    """What the template imports from the grader (`from course_checks.X import y` -> autograder.X),
    plus the chapter's public checks."""
    bundle = Bundle(PACKAGE)
    shipped = {p.stem for p in TEMPLATE.glob("*.py")}
    for path in sorted(TEMPLATE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or (node.module or "").split(".")[0] != PACKAGE:
                continue
            inside = node.module.split(".")[1:]
            if inside and inside[0] in shipped:
                continue
            source = ".".join([SOURCE_PACKAGE, *inside])
            for alias in node.names:
                if not inside and alias.name in shipped:
                    continue
                whole = ".".join([source, alias.name])
                bundle.need(whole) if bundle_module(whole) else bundle.need(source, [alias.name])
    bundle.need(record.checks_module, [d.function for d in public])
    hidden = {d.function for d in record.declared_checks() if not d.public}
    pulled = hidden & bundle.modules[record.checks_module].needed
    if pulled:
        raise ReleaseError(f"a public check of {record.slug} uses the hidden check(s) {sorted(pulled)}")
    return bundle


def _fixtures(namespace: dict, framework: str, oracle, seed: int) -> dict:
    from autograder.checks.runner import CallLimits, LocalBackend, StudentProxy

    # seeded calls, as the grader's: a check that trains (chapter 05) must not depend on whatever
    # the process drew before it
    student = StudentProxy(LocalBackend(namespace, framework), framework, lambda names: None, CallLimits(seed=seed))
    return {"student": student, "oracle": oracle, "rng": np.random.default_rng(seed), "framework": framework}


def _expected(record: Chapter, public: list, seed: int) -> tuple[Store, list[dict]]:
    """Run the public checks on both references with a recording oracle; replay them to be sure."""
    from autograder.checks.runner import _message, stable_seed

    checks, store = record.load_checks(), Store()
    entries = []
    for declared in public:
        doc = (getattr(checks, declared.function).__doc__ or "").strip().splitlines()
        entries.append({"function": declared.function, "exercise": declared.exercise, "points": declared.points,
                        "seed": stable_seed(seed, declared.function),
                        "what": doc[0].strip() if doc else declared.function.removeprefix("test_").replace("_", " ")})
    references = {fw: notebooks.load_namespace(record.master_path(fw)) for fw in FRAMEWORKS}
    recording = RecordingOracle(record.load_oracle(), store)
    oracles = {"record": recording, "replay": ReplayOracle(store, np.__version__)}
    asks_oracle: set[tuple[str, str]] = set()   # (framework, check) whose run called the oracle
    for stage, oracle in oracles.items():
        for framework, namespace in references.items():
            for entry in entries:
                if stage == "replay" and (framework, entry["function"]) not in asks_oracle:
                    continue   # no oracle call to replay: the same run again would prove nothing new
                before = recording.calls
                failure = run_check(getattr(checks, entry["function"]),
                                    _fixtures(namespace, framework, oracle, entry["seed"]))
                if recording.calls > before:
                    asks_oracle.add((framework, entry["function"]))
                if failure is not None:
                    raise ReleaseError(f"{record.slug}: the {framework} reference fails the public check "
                                       f"{entry['function']} ({stage}): {_message(failure)}")
    return store, entries


def _notebook(record: Chapter, framework: str) -> str:
    """The student notebook, with `check` bound to the released package instead of the grader."""
    nb = nbformat.reads(assign.generate(record.slug, framework), as_version=4)
    bound = f'{PACKAGE}.checker("{record.slug}", "{framework}")'
    for cell in nb.cells:
        if cell.get("id") == assign.NOTE_ID:
            shown = "PyTorch" if framework == "torch" else "TensorFlow"
            cell.source = _NOTE.format(number=record.number, framework=shown)
        if cell.cell_type != "code":
            continue
        lines = []
        for line in cell.source.split("\n"):
            code = line.split("#", 1)[0].strip()
            if code == "from autograder import check":          # the unbound form of older masters
                lines += [f"import {PACKAGE}", f"check = {bound}"]
            elif _BINDING.fullmatch(code):
                lines.append(re.sub(rf"\b{SOURCE_PACKAGE}\b", PACKAGE, line))
            else:
                lines.append(line)
        cell.source = "\n".join(lines)
        if re.search(rf"\b{SOURCE_PACKAGE}\b", cell.source):
            raise ReleaseError(f"{record.slug}/{framework}: a code cell still uses {SOURCE_PACKAGE}:\n{cell.source}")
    if not any(cell.cell_type == "code" and f"check = {bound}" in cell.source for cell in nb.cells):
        raise ReleaseError(f"{record.slug}/{framework}: no setup cell binds check to its assignment "
                           f'(import autograder / check = autograder.checker("{record.slug}", "{framework}"))')
    return assign.render(nb)


def release_chapter(record: Chapter, out: Path, seed: int | None = None) -> Path:
    """Write `out/<slug>/`: the notebooks and the `course_checks` package. Returns the folder."""
    seed = record.seed if seed is None else seed
    public = [d for d in record.declared_checks() if d.public]
    store, entries = _expected(record, public, seed)
    try:
        sources = _bundle(record, public).sources()
    except BundleError as exc:
        raise ReleaseError(f"{record.slug}: {exc}") from None
    if "__init__.py" in sources:
        raise ReleaseError(f"{record.slug}: the release would copy {SOURCE_PACKAGE}/__init__.py over the package's own")
    staging = out / f".{record.slug}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write(record, staging, sources, store, manifest={
            "chapter": record.slug, "exercises": list(record.exercises), "seed": seed, "numpy": np.__version__,
            "checks_module": record.checks_module.rsplit(".", 1)[1], "checks": entries,
            "computed_under": _computed_under()})
        final = out / record.slug
        if final.exists():
            if not (final / MARKER).is_file():
                raise ReleaseError(f"{final} exists and is not a release: not overwriting it")
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _computed_under() -> dict:
    """The settings the expected values were computed with: RELEASE_ENV as the process saw it,
    Python's hash randomisation, and the thread count PyTorch actually used."""
    torch = sys.modules.get("torch")
    return {**{k: os.environ.get(k) for k in sorted(RELEASE_ENV)},
            "hash_randomization": sys.flags.hash_randomization,
            "torch_threads": torch.get_num_threads() if torch else None}


def _write(record: Chapter, staging: Path, sources: dict[str, str], store: Store, manifest: dict) -> None:
    package = staging / PACKAGE
    for relative, text in sources.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text, encoding="utf-8")
    for path in TEMPLATE.glob("*.py"):
        shutil.copyfile(path, package / path.name)
    store.save(package / "data", record.slug, manifest)
    for framework in FRAMEWORKS:
        (staging / f"exercises_{framework}.ipynb").write_text(_notebook(record, framework), encoding="utf-8")
    (staging / MARKER).write_text(f"{record.slug}: released by `python -m autograder release` (seed "
                                  f"{manifest['seed']}); the next release replaces this folder\n", encoding="utf-8")


def _quiet_references() -> None:
    """The reference solutions are known good: TensorFlow's Python-side log (AutoGraph's "could not
    transform") and Keras' UserWarnings about them are noise for the instructor. Real failures
    still stop the release with a ReleaseError."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"tensorflow(\.|$)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder release",
                                     description="Write the student notebooks and their public checks, to hand out.")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--seed", type=int, help="seed of the public checks' random inputs (default: each chapter's)")
    args = parser.parse_args(argv)
    _quiet_references()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        records = chapters.chapters_with_exercises()
        for number, record in enumerate(records, start=1):
            print(f"[{number}/{len(records)}] {record.slug}: running its public checks on both references ...",
                  end="", flush=True)
            start = time.monotonic()
            folder = release_chapter(record, args.out, args.seed)
            print(f" {time.monotonic() - start:.0f} s; wrote {folder}: exercises_torch.ipynb, "
                  f"exercises_tf.ipynb, {PACKAGE}/", flush=True)
    except (ReleaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
