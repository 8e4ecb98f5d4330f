"""Grading a class on several machines: `grade --shard K/N` and `merge`.

No scheduler of our own: N copies of one command (a SLURM array task, a Kubernetes Indexed Job's
pod, N terminals) each grade part K of N into their own `--out`, and `merge` rebuilds one class
from them. The partition is a function of the submission's *name* alone (the name `discover`
gives, from the whole list of files), so every copy, given the same SUBMISSION arguments, agrees
on who grades whom without talking to the others, and a late file changes no one else's part.

Each shard's output folder also records the whole class's names in discovery order
(`shard.json`), so that `merge` writes grades.csv in exactly the order one unsharded run would, and
can say which submissions no shard graded.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from autograder import report
from autograder.report.atomic import write_atomic
from autograder.results import SubmissionResult

MANIFEST = "shard.json"


class ShardError(Exception):
    """A --shard value or a set of shard outputs that cannot be used (exit status 2)."""


@dataclass(frozen=True)
class Shard:
    index: int   # K, 1-based as on the command line
    count: int   # N

    @classmethod
    def parse(cls, text: str) -> "Shard":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if not match:
            raise ShardError(f"--shard {text!r}: give K/N, e.g. --shard 2/8 for part 2 of 8")
        k, n = int(match[1]), int(match[2])
        if not 1 <= k <= n:
            raise ShardError(f"--shard {text}: K must be between 1 and N (1 <= K <= N)")
        return cls(k, n)

    def owns(self, name: str) -> bool:
        return part_of(name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def part_of(name: str, count: int) -> int:
    """The part (1..count) that grades the submission called `name`: a hash of the name, so the
    same on every machine and every Python (no PYTHONHASHSEED), and spread evenly."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def write_manifest(out: Path, shard: Shard, names: list[str]) -> None:
    """What `merge` needs to rebuild the class: this part, and every name in discovery order."""
    Path(out).mkdir(parents=True, exist_ok=True)
    body = {"shard": str(shard), "count": shard.count, "index": shard.index, "names": names}
    write_atomic(Path(out) / MANIFEST, json.dumps(body, indent=1) + "\n")


def _manifest(out: Path) -> dict | None:
    try:
        data = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ShardError(f"{out}/{MANIFEST} cannot be read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("names"), list):
        raise ShardError(f"{out}/{MANIFEST} is not a shard manifest")
    return data


@dataclass
class Merged:
    results: list[SubmissionResult]   # in the unsharded run's order
    missing: list[str]                # names no shard has a complete result for
    shards: list[str]                 # "K/N" of each output, as read


def merge(outs: list[Path], dest: Path) -> Merged:
    """Every complete result of `outs`, written again into `dest` with the class's reports.

    Refuses (ShardError) outputs of different classes or partitions, one part given twice, and a
    submission graded by two parts with different results; a part that is missing is not an
    error (its names are reported as missing), so a class can be merged while a node still runs."""
    if not outs:
        raise ShardError("merge: give the shards' output folders")
    order: list[str] | None = None
    count = None
    seen_parts: dict[int, Path] = {}
    results: dict[str, tuple[SubmissionResult, Path]] = {}
    for out in outs:
        out = Path(out)
        if not out.is_dir():
            raise ShardError(f"merge: no such folder: {out}")
        if out.resolve() == Path(dest).resolve():
            raise ShardError(f"merge: --out {dest} is also one of the inputs; merge into a new folder")
        manifest = _manifest(out)
        if manifest is not None:
            if order is None:
                order, count = list(manifest["names"]), manifest.get("count")
            elif manifest["names"] != order or manifest.get("count") != count:
                raise ShardError(f"merge: {out} was graded from another class or split "
                                 f"(--shard .../{manifest.get('count')}); give the parts of one run")
            part = manifest.get("index")
            if part in seen_parts:
                raise ShardError(f"merge: part {part}/{count} given twice ({seen_parts[part]} and {out})")
            seen_parts[part] = out
        for name, result in report.completed_results(out).items():
            if name in results and results[name][0].to_dict() != result.to_dict():
                raise ShardError(f"merge: {name} was graded in {results[name][1]} and in {out} "
                                 "with different results; regrade it in one of them")
            results.setdefault(name, (result, out))
    if order is None:   # plain grade outputs, no manifest: by name, as --regrade orders them
        order = sorted(results, key=lambda n: (n.casefold(), n))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    merged = []
    for name in order:
        if name in results:
            result = results[name][0]
            report.write_submission_report(result, dest)
            merged.append(result)
    extra = sorted(set(results) - set(order))
    for name in extra:   # graded in an output but not in the class's list (an older run's folder)
        report.write_submission_report(results[name][0], dest)
        merged.append(results[name][0])
    report.write_batch_report(merged, dest)
    missing = [n for n in order if n not in results]
    return Merged(merged, missing, [f"{k}/{count}" for k in sorted(seen_parts)])
