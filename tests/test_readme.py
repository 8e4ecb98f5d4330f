"""README's table of chapters says what the grader's records say: each chapter with exercises, how
many, and their points (the checks' declared points, the same in both frameworks)."""
import re
from pathlib import Path

import pytest

from autograder.chapters import chapters_with_exercises

README = Path(__file__).resolve().parents[1] / "README.md"


def table_rows(text: str) -> dict[str, str]:
    """slug -> the exercises column, for each `| `NN_slug` | ... | ... |` row."""
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\| `(\d\d_\w+)` \|[^|\n]*\|([^|\n]*)\|$", text, re.MULTILINE)}


@pytest.mark.parametrize("record", chapters_with_exercises(), ids=lambda r: r.slug)
def test_readme_lists_each_chapter_with_its_exercises_and_points(record):
    rows = table_rows(README.read_text())
    assert record.slug in rows, f"README's chapter table has no row for {record.slug}"
    points = sum(d.points for d in record.declared_checks())
    count = len(record.exercises)
    expected = f"{count} exercise{'s' if count != 1 else ''}, {points:g} points"
    assert rows[record.slug] == expected


def test_the_row_reader_reads_a_row():
    assert table_rows("| `09_x` | learn | 2 exercises, 7 points |\n") == {"09_x": "2 exercises, 7 points"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()   # PEP 503: tensorflow_cpu is tensorflow-cpu


def test_the_students_pins_are_the_locks():
    """What README tells a take-home student to install is what the course is tested with."""
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (README.parent / "requirements.txt").read_text(), re.MULTILINE))
    lock = {_canonical(k): v for k, v in lock.items()}
    pins = [(_canonical(name), version) for line in README.read_text().splitlines() if line.startswith("pip install")
            for name, version in re.findall(r"([A-Za-z0-9_.-]+)==(\S+)", line)]
    assert {name for name, _ in pins} >= {"jupyterlab", "ipykernel", "numpy", "pytest", "torch", "tensorflow-cpu"}
    assert [(name, lock.get(name)) for name, _ in pins] == pins
