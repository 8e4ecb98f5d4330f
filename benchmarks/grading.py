"""How fast does a class get graded? Ours against nbgrader-style serial execution, in one run.

    .venv/bin/python benchmarks/grading.py [--n 100] [--jobs 2] [--baseline-n 10]

Generates N submissions (mixed frameworks: reference solutions, untouched notebooks, and
half-done ones), grades them with `grade_batch` and --jobs, then executes a sample of the same
notebooks one after another with nbclient, a fresh kernel each (what nbgrader does), and prints
seconds per submission for both and their ratio. The baseline runs on a sample because it is
slow; its per-submission figure is a median over the sample.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder import chapters, notebooks  # noqa: E402
from autograder.batch import grade_batch  # noqa: E402
from autograder.grade import Options  # noqa: E402


def make_class(n: int, folder: Path, seed: int = 0, only: str = "") -> list[Path]:
    """n notebooks: a third solved, a third untouched, a third with every other solution removed."""
    rng = random.Random(seed)
    assignments = [a for a in chapters.assignments() if a[0] == only or not only]
    paths = []
    for i in range(n):
        chapter, framework = assignments[i % len(assignments)]
        kind = ("solved", "untouched", "half")[i % 3]
        source = notebooks.student_path(chapter, framework) if kind == "untouched" else \
            notebooks.master_path(chapter, framework)
        nb = nbformat.read(source, as_version=4)
        if kind == "half":
            for cell in nb.cells:
                if cell.cell_type == "code" and cell.metadata.get("course", {}).get("exercise") and rng.random() < .5:
                    cell.source = cell.source.split("\n")[0] + "\n    raise NotImplementedError\n"
        path = folder / f"student{i:03d}_{framework}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def run_ours(paths: list[Path], jobs: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="bench-grades-"))
    start = time.perf_counter()
    results = grade_batch(paths, out, Options(), jobs=jobs)
    elapsed = time.perf_counter() - start
    errors = [r for r in results if r.error]
    if errors:
        raise SystemExit(f"{len(errors)} submissions failed to grade: {errors[0].error}")
    return elapsed


def run_baseline(paths: list[Path]) -> list[float]:
    times = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--baseline-n", type=int, default=10)
    parser.add_argument("--chapter", default="02_principles",
                        help="the chapter whose notebooks make up the class ('' for every chapter); "
                             "02_principles keeps the figure comparable across sessions")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-class-"))
    paths = make_class(args.n, folder, only=args.chapter)
    ours = run_ours(paths, args.jobs)
    sample = paths[: args.baseline_n]
    baseline = run_baseline(sample)
    ours_each = ours / len(paths)
    base_each = statistics.median(baseline)
    print(json.dumps({
        "submissions": len(paths), "jobs": args.jobs,
        "ours_total_s": round(ours, 1), "ours_s_per_submission": round(ours_each, 3),
        "baseline_sample": len(sample), "baseline_median_s_per_submission": round(base_each, 2),
        "baseline_extrapolated_total_s": round(base_each * len(paths), 1),
        "speedup": round(base_each / ours_each, 1),
    }, indent=2))
    print(f"ours: {ours:.1f} s for {len(paths)} submissions ({ours_each:.2f} s each, --jobs {args.jobs}); "
          f"nbclient serial baseline: median {base_each:.2f} s each over {len(sample)}; "
          f"speed-up {base_each / ours_each:.1f}x")


if __name__ == "__main__":
    main()
