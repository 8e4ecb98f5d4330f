"""`grade --out DIR --regrade NAME`: grade a few students again, keep everyone else's result, and
rebuild grades.csv, summary.md and histogram.png from every result in DIR."""
from __future__ import annotations

import csv
import time
from pathlib import Path

import nbformat
import pytest

from autograder import cli, notebooks

CHAPTER = "02_principles"
BROKEN = b"{not a notebook"   # graded without a sandbox: a one-line error, fast


def rows(out: Path) -> dict[str, dict]:
    return {r["submission"]: r for r in csv.DictReader((out / "grades.csv").open(newline="", encoding="utf-8"))}


@pytest.fixture
def graded(tmp_path):
    """A class of three broken notebooks, graded once."""
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for name in ("alice", "bob", "carol"):
        (folder / f"{name}.ipynb").write_bytes(BROKEN)
    assert cli.main(["grade", str(folder), "--out", str(out)]) == 0
    return folder, out


def grade(out: Path, *extra: str) -> int:
    return cli.main(["grade", "--out", str(out), *extra])


@pytest.mark.parametrize("name", ["nobody", "class/alice.ipynb", "ALICE.ipynb"])
def test_an_unknown_name_is_misuse_and_changes_nothing(graded, capsys, name):
    folder, out = graded
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert grade(out, "--regrade", name) == 2
    message = " ".join(capsys.readouterr().err.split())   # rich wraps long lines
    assert f"--regrade {name}:" in message and "no submission" in message
    assert "alice" in message   # the names it does know, to pick from
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*")}


def test_regrade_needs_an_output_folder_with_results(tmp_path, capsys):
    assert grade(tmp_path / "empty", "--regrade", "alice") == 2
    assert "no graded submissions" in " ".join(capsys.readouterr().err.split())


def test_grade_needs_submissions_or_regrade(tmp_path, capsys):
    assert grade(tmp_path / "out") == 2
    assert "SUBMISSION" in " ".join(capsys.readouterr().err.split())


def test_a_missing_file_is_misuse_not_a_zero(graded, capsys):
    folder, out = graded
    (folder / "bob.ipynb").unlink()
    assert grade(out, "--regrade", "bob") == 2
    assert "no longer exists" in " ".join(capsys.readouterr().err.split())
    assert rows(out)["bob"]["error"]   # the old result stands


def test_only_the_named_are_regraded_by_folder_name_or_path(graded):
    folder, out = graded
    time.sleep(0.01)
    for name in ("alice", "bob", "carol"):
        (folder / f"{name}.ipynb").write_bytes(b"[]")   # all three changed: only two are named
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    assert grade(out, "--regrade", "alice", "--regrade", str(folder / "carol.ipynb")) == 0
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    assert {n for n in after if after[n] != before[n]} == {"alice", "carol"}
    table = rows(out)
    assert set(table) == {"alice", "bob", "carol"}   # everyone, from DIR's results
    assert "not an object" in table["alice"]["error"] and "not an object" in table["carol"]["error"]
    assert "not valid JSON" in table["bob"]["error"]
    assert table["carol"]["file"] == str(folder / "carol.ipynb")


@pytest.mark.slow
def test_a_real_regrade_rewrites_the_result_and_every_batch_report(graded):
    folder, out = graded
    nbformat.write(nbformat.read(notebooks.master_path(CHAPTER, "torch"), as_version=4), folder / "bob.ipynb")
    reports = {name: (out / name).read_bytes() for name in ("grades.csv", "summary.md", "histogram.png")}
    alice = (out / "alice" / "result.json").stat().st_mtime_ns
    assert grade(out, "--regrade", "bob", "--timeout", "120") == 0
    bob = rows(out)["bob"]
    assert not bob["error"] and bob["chapter"] == CHAPTER and float(bob["total"]) == float(bob["max_total"]) > 0
    assert "✗" not in (out / "bob" / "feedback.md").read_text(encoding="utf-8")
    for name, old in reports.items():
        assert (out / name).read_bytes() != old, name
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "3 submissions: 1 graded, 2 could not be graded" in summary
    assert "| `masked_softmax` |" in summary and "1 of 1 (100%)" in summary
    assert (out / "alice" / "result.json").stat().st_mtime_ns == alice


def test_a_bare_file_name_names_its_submission(tmp_path):
    """"José García.ipynb" as the student handed it in: its folder is Jose_Garcia; the file name
    alone finds it (when one submission has it), as the folder name and the path do."""
    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for name in ("José García", "bob"):
        (folder / f"{name}.ipynb").write_bytes(BROKEN)
    assert cli.main(["grade", str(folder), "--out", str(out)]) == 0
    assert (out / "Jose_Garcia" / "result.json").is_file()
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    time.sleep(0.01)
    assert grade(out, "--regrade", "José García.ipynb") == 0
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    assert {n for n in after if after[n] != before[n]} == {"Jose_Garcia"}
