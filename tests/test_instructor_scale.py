"""For instructors at scale: `grade --shard K/N` + `merge`, `similarity`, and `lms canvas|moodle`."""
from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import cli, notebooks, report, shard, similarity
from autograder.results import CheckResult, SubmissionResult

ROOT = Path(__file__).resolve().parents[1]


# --- sharding -------------------------------------------------------------------------------------

def test_shard_parts_are_disjoint_cover_the_class_and_depend_on_the_name_alone():
    names = [f"student_{i:03d}" for i in range(300)]
    for n in (1, 2, 3, 7):
        parts = [[x for x in names if shard.Shard(k, n).owns(x)] for k in range(1, n + 1)]
        assert sorted(sum(parts, [])) == sorted(names)                 # every student once
        assert all(len(p) > 300 / n / 2 for p in parts)                 # and spread out
    # another class listing (a late file, another order) moves no one
    assert [shard.part_of(x, 5) for x in names] == [shard.part_of(x, 5) for x in reversed(names)][::-1]


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", ""])
def test_a_bad_shard_is_misuse(tmp_path, capsys, text):
    (tmp_path / "a.ipynb").write_bytes(b"{broken")
    assert cli.main(["grade", str(tmp_path / "a.ipynb"), "--out", str(tmp_path / "out"),
                     "--shard", text]) == 2
    assert "--shard" in " ".join(capsys.readouterr().err.split())


def _class(folder: Path) -> Path:
    """Eight chapter-01 notebooks: solved, untouched, half done, and two broken files."""
    folder.mkdir()
    solved = nbformat.read(notebooks.master_path("01_background", "torch"), as_version=4)
    blank = nbformat.read(notebooks.student_path("01_background", "torch"), as_version=4)
    half = copy.deepcopy(blank)
    half.cells[_exercise_index(half, "softmax")] = copy.deepcopy(solved.cells[_exercise_index(solved, "softmax")])
    for name, nb in (("amara", solved), ("bruno", blank), ("chen", half), ("dana", solved),
                     ("elif", half), ("farah", blank)):
        nbformat.write(nb, folder / f"{name}.ipynb")
    (folder / "gus.ipynb").write_bytes(b"{not json")
    (folder / "hana.ipynb").write_text("print('a renamed .py')\n")
    return folder


@pytest.mark.slow
def test_three_shards_merged_equal_one_unsharded_run_row_for_row(tmp_path):
    folder = _class(tmp_path / "class")
    whole = tmp_path / "whole"
    assert cli.main(["grade", str(folder), "--out", str(whole), "--jobs", "2"]) == 0
    outs = [tmp_path / f"part{k}" for k in (1, 2, 3)]
    for k, out in enumerate(outs, 1):
        assert cli.main(["grade", str(folder), "--out", str(out), "--shard", f"{k}/3"]) == 0
    graded = [set(report.completed_results(o)) for o in outs]
    assert sum(len(g) for g in graded) == 8 and not set.intersection(*graded)   # disjoint, whole
    merged = tmp_path / "merged"
    assert cli.main(["merge", *map(str, outs), "--out", str(merged)]) == 0
    assert (merged / "grades.csv").read_text() == (whole / "grades.csv").read_text()
    assert (merged / "summary.md").read_text() == (whole / "summary.md").read_text()
    assert (merged / "histogram.png").is_file()
    for name in report.completed_results(whole):
        a = report.read_submission_result(whole, name).to_dict()
        b = report.read_submission_result(merged, name).to_dict()
        a.pop("seconds"), b.pop("seconds")
        assert a == b, name


def test_merge_refuses_a_part_twice_and_reports_a_missing_part(tmp_path, capsys):
    folder = tmp_path / "class"
    folder.mkdir()
    for name in ("a", "b", "c", "d", "e", "f"):
        (folder / f"{name}.ipynb").write_bytes(b"{broken")   # one-line errors: no sandbox needed
    outs = [tmp_path / f"p{k}" for k in (1, 2)]
    for k, out in enumerate(outs, 1):
        assert cli.main(["grade", str(folder), "--out", str(out), "--shard", f"{k}/2"]) == 0
    assert cli.main(["merge", str(outs[0]), str(outs[0]), "--out", str(tmp_path / "m")]) == 2
    assert "given twice" in " ".join(capsys.readouterr().err.split())
    assert cli.main(["merge", str(outs[0]), "--out", str(tmp_path / "m")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    missing = len(report.completed_results(outs[1]))
    assert f"{missing} submissions of the class are in no output yet" in err
    with (tmp_path / "m" / "grades.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 6 - missing


# --- similarity ------------------------------------------------------------------------------------

CHAPTER = "02_principles"


def _exercise_index(nb, name):
    return next(i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("course", {}).get("exercise") == name)


def _disguise(source: str) -> str:
    """What a copier does: rename every local name, reword the comments, add blank lines."""
    names = {"scores": "s_mat", "mask": "allowed", "weights": "probs", "queries": "q", "keys": "k",
             "values": "v", "output": "result", "row_max": "peak", "exp": "expd"}
    out = re.sub(r"#.*", "# my own comment", source)
    for old, new in names.items():
        out = re.sub(rf"\b{old}\b", new, out)
    return out.replace("\n", "\n\n", 2)


def _graded_class(tmp_path: Path, notebooks_by_name: dict) -> Path:
    """A graded folder without grading: results that name the notebooks (similarity reads those)."""
    out = tmp_path / "graded"
    for name, nb in notebooks_by_name.items():
        path = tmp_path / f"{name}.ipynb"
        nbformat.write(nb, path)
        report.write_submission_report(SubmissionResult(
            name, str(path), CHAPTER, "torch", sandbox="none",
            checks=[CheckResult("notebook", "notebook: runs top to bottom", 0, 0, "passed", "visible")]), out)
    return out


def _alternatives_notebook():
    from tests.test_ch02_checks import ALTERNATIVES as A1
    from tests.test_ch02_new_exercises import ALTERNATIVES as A2

    nb = nbformat.read(notebooks.student_path(CHAPTER, "torch"), as_version=4)
    for exercise, framework, source in A1 + A2:
        if framework == "torch":
            nb.cells[_exercise_index(nb, exercise)].source = source.strip()
    return nb


@pytest.fixture
def planted(tmp_path):
    master = nbformat.read(notebooks.master_path(CHAPTER, "torch"), as_version=4)
    copier = copy.deepcopy(master)
    for exercise in ("masked_softmax", "bahdanau_step", "tree_mask"):
        cell = copier.cells[_exercise_index(copier, exercise)]
        cell.source = _disguise(cell.source)
    # reordered: the two masks' cells swap places
    i, j = _exercise_index(copier, "padding_mask"), _exercise_index(copier, "tree_mask")
    copier.cells[i], copier.cells[j] = copier.cells[j], copier.cells[i]
    untouched = nbformat.read(notebooks.student_path(CHAPTER, "torch"), as_version=4)
    return _graded_class(tmp_path, {"alice": master, "bob": copier, "carol": _alternatives_notebook(),
                                    "dan": untouched, "erin": copy.deepcopy(untouched)})


def _pairs(out: Path) -> dict[tuple[str, str, str], float]:
    with (out / "similarity.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["similarity"]) for r in rows] == sorted((float(r["similarity"]) for r in rows), reverse=True)
    return {(r["exercise"], r["submission_a"], r["submission_b"]): float(r["similarity"]) for r in rows}


def test_renamed_reordered_recommented_copies_are_found(planted, capsys):
    assert cli.main(["similarity", str(planted)]) == 0
    pairs = _pairs(planted)
    for exercise in ("masked_softmax", "bahdanau_step", "tree_mask"):
        assert pairs[(exercise, "alice", "bob")] >= similarity.DEFAULT_THRESHOLD, exercise
    printed = " ".join(capsys.readouterr().out.split())
    assert "alice" in printed and "bob" in printed
    page = (planted / "similarity.html").read_text()
    assert "<mark>" in page and "<script" not in page and "http" not in page.replace("http-equiv", "")


def test_independent_correct_answers_and_untouched_starters_are_not_flagged(planted):
    similarity.run(planted)
    pairs = _pairs(planted)
    flagged = {k for k, v in pairs.items() if v >= similarity.DEFAULT_THRESHOLD}
    assert not {k for k in flagged if "carol" in k[1:]}, flagged        # the gallery's alternatives
    assert not {k for k in flagged if {"dan", "erin"} & set(k[1:])}, flagged   # starter code only


def test_code_from_a_known_source_is_labelled_not_flagged_as_collusion(planted, tmp_path):
    master = nbformat.read(notebooks.master_path(CHAPTER, "torch"), as_version=4)
    known = tmp_path / "page_code.py"
    known.write_text(master.cells[_exercise_index(master, "masked_softmax")].source)
    pairs = similarity.run(planted, known_files=[known])
    pair = next(p for p in pairs if (p.exercise, p.a, p.b) == ("masked_softmax", "alice", "bob"))
    assert pair.from_book
    other = next(p for p in pairs if (p.exercise, p.a, p.b) == ("tree_mask", "alice", "bob"))
    assert not other.from_book
    assert "from the book" in (planted / "similarity.html").read_text()


def test_similarity_never_follows_a_link_out_of_a_submission(planted, tmp_path):
    result = report.read_submission_result(planted, "bob")
    Path(result.path).unlink()
    Path(result.path).symlink_to(notebooks.master_path(CHAPTER, "torch"))
    similarity.run(planted)
    assert not any("bob" in k[1:] for k in _pairs(planted))


# --- LMS -----------------------------------------------------------------------------------------

# A Canvas gradebook export as Canvas writes it: a BOM, the fixed columns, assignment columns
# named "NAME (id)", a "Points Possible" row, a muted-assignment row, sections, a test student.
CANVAS = (
    "\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Attention ch02 (48213),Quiz 1 (48190),"
    "Current Score,Final Score\n"
    "    Points Possible,,,,,66.00,10.00,(read only),(read only)\n"
    ",,,,,Muted,,,\n"
    '"Okafor, Amara",1001,S1001,amara,Section A,,8.00,80.00,80.00\n'
    '"Silva, Bruno",1002,S1002,bruno,"Section A, Section B",,7.00,70.00,70.00\n'
    '"García, José",1003,S1003,José García,Section B,,9.00,90.00,90.00\n'
    '"Li, Chen",1004,S1004,chen.li,Section B,,6.00,60.00,60.00\n'
    "Test Student,1099,,,Section A,,,,\n"
)
MOODLE = (
    "First name,Last name,ID number,Institution,Department,Email address,"
    "Assignment: Attention ch02 (Real),Last downloaded from this course\n"
    "Amara,Okafor,S1001,,,amara@uni.example,-,1733500000\n"
    "Bruno,Silva,S1002,,,bruno@uni.example,-,1733500000\n"
    "Zoe,Ng,S1005,,,zoe@uni.example,-,1733500000\n"
)


@pytest.fixture
def graded_for_lms(tmp_path):
    out = tmp_path / "graded"
    def result(name, score, error=None):
        checks = [] if error else [CheckResult("softmax", "softmax: x", score, 66, "passed", "visible")]
        return SubmissionResult(name, f"{name}.ipynb", CHAPTER, "torch", error=error, checks=checks)
    for r in (result("amara", 60), result("bruno", 41.5), result("Jose_Garcia", 66),
              result("ghost", 12), result("farah", 0, error="not a notebook: the file is not valid JSON")):
        report.write_submission_report(r, out)
    return out


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))


def _canvas(graded: Path, tmp_path: Path, export: str) -> tuple[Path, Path]:
    """The Canvas export written out, and `lms canvas` run on it; (export, import) paths."""
    book, out = tmp_path / "export.csv", tmp_path / "import.csv"
    book.write_text(export, encoding="utf-8")
    assert cli.main(["lms", "canvas", str(graded), "--gradebook", str(book), "--assignment",
                     "Attention ch02", "--match", "SIS Login ID", "--out", str(out)]) == 0
    return book, out


def test_canvas_fills_one_column_matches_exactly_and_lists_the_rest(graded_for_lms, tmp_path, capsys):
    book, out = _canvas(graded_for_lms, tmp_path, CANVAS)
    before, after = _rows(book), _rows(out)
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(before) == len(after) and before[0] == after[0]
    column = before[0].index("Attention ch02 (48213)")
    got = {r[3]: r[column] for r in after[3:]}
    assert got == {"amara": "60", "bruno": "41.5", "José García": "66", "chen.li": "", "": ""}
    for b, a in zip(before, after):   # nothing else changed: other assignments, the meta rows
        assert [x for i, x in enumerate(b) if i != column] == [x for i, x in enumerate(a) if i != column]
    assert after[1][column] == "66.00" and after[2][column] == "Muted"
    err = " ".join(capsys.readouterr().err.split())
    assert "gradebook rows matching no submission" in err and "chen.li" in err
    assert "submissions matching no gradebook row" in err and "ghost" in err
    assert "worth 66 points in Canvas" not in err   # the export's 66.00 is the grader's 66


def test_canvas_warns_when_points_possible_is_not_the_graders_maximum(graded_for_lms, tmp_path, capsys):
    _canvas(graded_for_lms, tmp_path, CANVAS.replace("66.00", "100.00"))
    assert "worth 100 points in Canvas" in " ".join(capsys.readouterr().err.split())


def test_moodle_fills_its_column_by_email(graded_for_lms, tmp_path, capsys):
    book = tmp_path / "moodle.csv"
    book.write_text(MOODLE, encoding="utf-8")
    out = tmp_path / "import.csv"
    assert cli.main(["lms", "moodle", str(graded_for_lms), "--gradebook", str(book), "--assignment",
                     "Attention ch02", "--match", "Email address", "--out", str(out)]) == 0
    rows = _rows(out)
    column = rows[0].index("Assignment: Attention ch02 (Real)")
    assert [r[column] for r in rows[1:]] == ["60", "41.5", "-"]
    assert "zoe@uni.example" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("args, says", [
    (["--assignment", "Nope", "--match", "SIS Login ID"], "no assignment column"),
    (["--assignment", "Attention ch02", "--match", "Login"], "no --match column"),
])
def test_lms_misuse_is_one_line_and_writes_nothing(graded_for_lms, tmp_path, capsys, args, says):
    book = tmp_path / "export.csv"
    book.write_text(CANVAS, encoding="utf-8")
    out = tmp_path / "import.csv"
    assert cli.main(["lms", "canvas", str(graded_for_lms), "--gradebook", str(book), *args,
                     "--out", str(out)]) == 2
    assert says in " ".join(capsys.readouterr().err.split()) and not out.exists()


def test_cluster_job_files_run_the_contract_commands():
    slurm = (ROOT / "cluster" / "slurm.sbatch").read_text()
    assert "--array=" in slurm and "--shard" in slurm and "SLURM_ARRAY_TASK_ID" in slurm
    k8s = (ROOT / "cluster" / "kubernetes-indexed-job.yaml").read_text()
    assert "completionMode: Indexed" in k8s and "JOB_COMPLETION_INDEX" in k8s and "--shard" in k8s
