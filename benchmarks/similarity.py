"""How long the similarity report takes for a class: `python benchmarks/similarity.py [--size 100]`.

The class is chapter 02 (13 exercises, the most of any chapter): a quarter solved like the
master, a quarter with the test gallery's correct alternatives, a quarter disguised copies of the
master (names, comments, blank lines changed), a quarter untouched. Pairs per exercise grow as
n²/2, so this is the report's worst chapter at that size. Prints the median and range of
`--repeat` runs (issue: 100 submissions under 30 s).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def build(folder: Path, size: int) -> Path:
    import copy

    import nbformat

    from autograder import notebooks
    from tests.test_instructor_scale import (CHAPTER, _alternatives_notebook, _disguise, _exercise_index,
                                             _graded_class)

    master = nbformat.read(notebooks.master_path(CHAPTER, "torch"), as_version=4)
    untouched = nbformat.read(notebooks.student_path(CHAPTER, "torch"), as_version=4)
    alternatives = _alternatives_notebook()
    def disguised(i):
        nb = copy.deepcopy(master)
        for cell in nb.cells:
            if cell.get("metadata", {}).get("course", {}).get("exercise"):
                cell.source = _disguise(cell.source) + f"\n# student {i}\n"
        return nb
    kinds = [lambda i: master, lambda i: alternatives, disguised, lambda i: untouched]
    return _graded_class(folder, {f"s{i:03d}": kinds[i % 4](i) for i in range(size)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from autograder import similarity

    with tempfile.TemporaryDirectory() as tmp:
        graded = build(Path(tmp), args.size)
        times, pairs = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            pairs = similarity.run(graded)
            times.append(time.perf_counter() - start)
    flagged = sum(p.similarity >= similarity.DEFAULT_THRESHOLD for p in pairs)
    print(f"similarity, {args.size} submissions of chapter 02: {len(pairs)} pairs compared, {flagged} flagged")
    print(f"median {statistics.median(times):.1f} s over {args.repeat} runs "
          f"(range {min(times):.1f}-{max(times):.1f} s); goal: under 30 s")


if __name__ == "__main__":
    main()
