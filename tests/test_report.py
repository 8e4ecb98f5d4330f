"""The report stage (autograder/report/) on hand-built SubmissionResults.

Golden files for a fixed small batch live in tests/golden/report/; regenerate them with
`UPDATE_GOLDEN=1 pytest tests/test_report.py` and review the diff before committing."""
from __future__ import annotations

import copy
import csv
import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from autograder import report
from autograder.report import atomic, table
from autograder.report.disclosure import WITHHELD
from autograder.report.feedback import feedback_html, feedback_markdown
from autograder.report.gradescope import to_gradescope, validate_gradescope
from autograder.report.histogram import _title, percentages, render_histogram
from autograder.report.numbers import fmt_points
from autograder.report.summary import exercise_summary, summary_markdown
from autograder.results import RUNS_TOP_TO_BOTTOM, CheckResult, SubmissionResult

GOLDEN = Path(__file__).parent / "golden" / "report"
SEED = 20240917
SCRIPT = "<script>alert('x')</script>"
HIDDEN_DETAIL = "inputs: scores[1] = [1e4, -1e4, 3.0]"


def check(exercise, what, score, max_score, visibility="visible", output=""):
    return CheckResult(exercise=exercise, name=f"{exercise}: {what}", score=score,
                       max_score=max_score, status="passed" if score == max_score else "failed",
                       visibility=visibility, output=output, seed=SEED)


def notebook_ran():
    return CheckResult("notebook", RUNS_TOP_TO_BOTTOM, 0, 0, "passed", "visible", seed=SEED)


CH02 = ["dot_product_scores", "masked_softmax"]
CH03 = ["logsumexp", "softmax_jacobian"]


def full_marks() -> SubmissionResult:
    return SubmissionResult(
        submission="alice", path="alice/exercises_torch.ipynb", chapter="02_principles",
        framework="torch", sandbox="bubblewrap", seconds=12.5, exercises=CH02,
        checks=[notebook_ran(),
                check("dot_product_scores", "matches the oracle on batched inputs", 1, 1),
                check("masked_softmax", "rows sum to one", 1, 1),
                check("masked_softmax", "fully masked rows are zero, not NaN", 1.5, 1.5, "hidden")])


def partial() -> SubmissionResult:
    """A hidden failing check, a forbidden built-in, and student text that must be escaped."""
    return SubmissionResult(
        submission="bob", path="bob.ipynb", chapter="02_principles", framework="torch",
        sandbox="bubblewrap", seconds=9.0, exercises=CH02,
        builtins={"masked_softmax": ["torch.nn.functional.scaled_dot_product_attention"]},
        checks=[notebook_ran(),
                check("dot_product_scores", "matches the oracle on batched inputs", 0.5, 1,
                      output=f"printed by your code: {SCRIPT}\n``` a fence of your own\nend"),
                check("masked_softmax", "rows sum to one", 1, 1),
                check("masked_softmax", "fully masked rows are zero, not NaN", 0, 1.5, "hidden",
                      output=f"row 1 is NaN, expected zeros\n{HIDDEN_DETAIL}")])


def errored() -> SubmissionResult:
    return SubmissionResult(submission="carol", path="carol.ipynb",
                            error="notebook metadata has no course.chapter:\ncannot tell the assignment")


def reduced_isolation() -> SubmissionResult:
    return SubmissionResult(
        submission="dave", path="dave.ipynb", chapter="03_math", framework="tf",
        sandbox="rlimits only", seconds=20.25, exercises=CH03,
        warnings=["isolation reduced: bubblewrap not available"],
        checks=[notebook_ran(),
                check("logsumexp", "all -inf slice gives -inf", 2, 2),
                check("softmax_jacobian", "matches diag(p) - p p^T", 0.5, 1,
                      output="max abs error 0.25 at [0, 1, 2]")])


def batch() -> list[SubmissionResult]:
    # deliberately not in name order: the reports must sort
    return [reduced_isolation(), partial(), errored(), full_marks()]


# --- results.json ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [full_marks, partial, errored, reduced_isolation])
def test_results_json_validates_and_totals(make):
    result = make()
    data = to_gradescope(result)
    validate_gradescope(data)
    assert data["score"] == pytest.approx(sum(c.score for c in result.checks))
    assert data["extra_data"]["max_score"] == pytest.approx(sum(c.max_score for c in result.checks))
    assert [t["name"] for t in data["tests"]] == [c.name for c in result.checks]
    assert data["extra_data"]["chapter"] == result.chapter
    assert data["extra_data"]["framework"] == result.framework
    json.dumps(data, allow_nan=False)   # plain JSON, nothing Gradescope cannot parse


def test_totals_of_the_partial_submission():
    data = to_gradescope(partial())
    assert data["score"] == 1.5
    assert data["extra_data"]["max_score"] == 3.5
    assert data["extra_data"]["seed"] == SEED


def test_errored_submission_gives_score_zero_and_the_error():
    data = to_gradescope(errored())
    assert data["score"] == 0
    assert data["tests"] == []
    assert "could not be graded: notebook metadata has no course.chapter: cannot tell" in data["output"]


def test_reduced_isolation_is_stated_in_the_summary():
    data = to_gradescope(reduced_isolation())
    assert "Warning: isolation reduced: bubblewrap not available" in data["output"]
    assert data["extra_data"]["sandbox"] == "rlimits only"


def test_hidden_checks_show_after_publication_with_their_first_line_only():
    tests = {t["name"]: t for t in to_gradescope(partial())["tests"]}
    hidden = tests["masked_softmax: fully masked rows are zero, not NaN"]
    assert hidden["visibility"] == "after_published"
    assert hidden["output"].startswith("row 1 is NaN, expected zeros")
    assert HIDDEN_DETAIL not in hidden["output"] and WITHHELD in hidden["output"]
    public = tests["dot_product_scores: matches the oracle on batched inputs"]
    assert public["visibility"] == "visible" and SCRIPT in public["output"]
    assert public["output_format"] == "text"   # so Gradescope shows the script, never runs it


def test_summary_never_reveals_how_hidden_checks_went():
    summary = to_gradescope(partial())["output"]
    assert "public checks 1.5 / 2 points" in summary
    assert "Hidden checks: 1, worth 1.5 points" in summary
    assert "torch.nn.functional.scaled_dot_product_attention" in summary


def _valid():
    return to_gradescope(partial())


@pytest.mark.parametrize("break_it, where", [
    (lambda d: d["tests"][0].pop("name"), "name"),
    (lambda d: d["tests"][0].update(status="ok"), "status"),
    (lambda d: d["tests"][0].update(visibility="secret"), "visibility"),
    (lambda d: d["tests"][0].update(visiblity="hidden"), "visiblity"),   # a typo must not pass
    (lambda d: d["tests"][0].update(score="1"), "score"),
    (lambda d: d.pop("score"), "score"),
    (lambda d: d.update(stdout_visibility="never"), "stdout_visibility"),
])
def test_schema_rejects_broken_results(break_it, where):
    data = _valid()
    validate_gradescope(copy.deepcopy(data))   # the unbroken one passes
    break_it(data)
    with pytest.raises(jsonschema.ValidationError) as error:
        validate_gradescope(data)
    assert where in str(error.value)


# --- numbers and CSV ------------------------------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    (3, "3"), (3.0, "3"), (2.5, "2.5"), (0.1 + 0.2, "0.3"), (1 / 3, "0.333333"),
    (-0.0, "0"), (1e-9, "0"), (10, "10"), (0.125, "0.125"),
])
def test_points_have_no_float_noise(value, text):
    assert fmt_points(value) == text


def test_csv_header_rows_and_numbers_exactly(tmp_path):
    path = table.write_grades_csv(batch(), tmp_path / "grades.csv")
    raw = path.read_bytes()
    assert raw.decode("utf-8").splitlines() == [
        "submission,file,chapter,framework,dot_product_scores,masked_softmax,logsumexp,"
        "softmax_jacobian,total,max_total,error",
        "alice,alice/exercises_torch.ipynb,02_principles,torch,1,2.5,,,3.5,3.5,",
        "bob,bob.ipynb,02_principles,torch,0.5,1,,,1.5,3.5,",
        "carol,carol.ipynb,,,,,,,0,,notebook metadata has no course.chapter: cannot tell the assignment",
        "dave,dave.ipynb,03_math,tf,,,2,0.5,2.5,3,",
    ]
    assert raw.endswith(b"\r\n") and not raw.startswith(b"\xef\xbb\xbf")


def test_csv_quotes_and_defuses_formulas(tmp_path):
    nasty = errored()
    nasty.submission = "eve, the second"
    nasty.path = "=cmd|' /C calc'!A0.ipynb"      # the submitted file's name is the student's too
    nasty.error = '=HYPERLINK("http://x") said "hi"'
    rows = (tmp_path / "g.csv")
    table.write_grades_csv([nasty], rows)
    line = rows.read_text(encoding="utf-8").splitlines()[1]
    assert line == ('"eve, the second",\'=cmd|\' /C calc\'!A0.ipynb,,,0,,'
                    '"\'=HYPERLINK(""http://x"") said ""hi"""')


def test_exercise_columns_follow_the_assignment_then_first_seen():
    late = full_marks()
    late.submission = "zed"
    late.checks.append(check("tree_mask", "ancestors only", 1, 1))   # not in `exercises`
    assert table.exercise_columns([late, reduced_isolation()]) == [
        "logsumexp", "softmax_jacobian", "dot_product_scores", "masked_softmax", "tree_mask"]


# --- feedback -------------------------------------------------------------------------------------

def test_html_escapes_student_text():
    page = feedback_html(partial())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "http://" not in page and "https://" not in page   # no external assets


def test_html_escapes_the_submission_name_and_error():
    result = errored()
    result.submission = "<img src=x onerror=alert(1)>"
    result.error = "</pre><script>boom</script>"
    page = feedback_html(result)
    assert "<img" not in page and "<script>" not in page and "</pre><" not in page


def test_html_opens_with_an_overview_row_per_section_linked_to_it():
    result = partial()
    result.checks.append(check("masked_softmax", "rows sum to one", 0, 1))   # not NotImplementedError
    page = feedback_html(result)
    overview, _, body = page.partition("</table>")
    assert 'class="overview"' in overview and "<section" not in overview   # before every section
    rows = re.findall(r'<tr><td><a href="#([^"]+)">(.*?)</a></td><td class="num">(.*?)</td><td>(.*?)</td></tr>', overview)
    assert [(name, points, status) for _, name, points, status in rows] == [
        ("Notebook", "", "runs top to bottom"),
        ("<code>dot_product_scores</code>", "0.5 / 1", "1 of 1 checks failed"),
        ("<code>masked_softmax</code>", "1 / 3.5", "forbidden built-in")]
    assert all(f'<section id="{anchor}">' in body for anchor, *_ in rows)
    assert "<details>" not in page   # only an untouched exercise is folded


def test_html_folds_an_untouched_exercise_into_one_line():
    result = full_marks()
    result.checks = [notebook_ran(), check("dot_product_scores", "batched", 1, 1),
                     *(check("masked_softmax", what, 0, 1, output="masked_softmax: not implemented yet")
                       for what in ("rows sum to one", "fully masked rows are zero"))]
    page = feedback_html(result)
    assert page.count("<details>") == 1
    folded = page.split("<details>")[1].split("</details>")[0]
    assert "still raises NotImplementedError (2 checks)" in folded and folded.count("<li") == 2
    assert "not implemented yet</td>" in page   # and the overview says so


def test_histogram_title_counts_the_graded_of_the_class():
    assert _title(batch(), percentages(batch())).startswith("Total scores: 3 graded of 4, mean ")
    one = [full_marks(), partial()]
    assert _title(one, percentages(one)).startswith("02_principles: 2 graded, mean ")
    assert _title([errored()], []) == "Total scores: none of 1 graded"


def test_markdown_keeps_student_text_inert_when_rendered():
    md = feedback_markdown(partial())
    rendered = MarkdownIt("commonmark").render(md)   # raw HTML is allowed in this preset
    assert "<script>" not in rendered
    assert "&lt;script&gt;" in rendered
    assert "a fence of your own" in rendered   # the student's ``` did not close our block


def test_feedback_states_scores_marks_and_builtins():
    md = feedback_markdown(partial())
    assert "- Score: **1.5 / 3.5 (42.9%)**" in md
    assert "- ✓ masked_softmax: rows sum to one — 1 / 1" in md
    assert "- ✗ masked_softmax: fully masked rows are zero, not NaN — 0 / 1.5 *(hidden check)*" in md
    assert "**✗ Forbidden built-in:** `torch.nn.functional.scaled_dot_product_attention`" in md


def test_hidden_messages_are_cut_for_students_and_whole_for_instructors():
    student, staff = feedback_markdown(partial()), feedback_markdown(partial(), instructor=True)
    assert "row 1 is NaN, expected zeros" in student and HIDDEN_DETAIL not in student
    assert HIDDEN_DETAIL in staff and WITHHELD not in staff
    assert HIDDEN_DETAIL not in feedback_html(partial())
    assert HIDDEN_DETAIL in feedback_html(partial(), instructor=True)


def test_warnings_and_errors_come_before_any_exercise():
    md = feedback_markdown(reduced_isolation())
    assert md.index("isolation reduced") < md.index("## ")
    md = feedback_markdown(errored())
    assert "## ✗ This submission could not be graded" in md
    assert "cannot tell the assignment" in md and "## `" not in md
    assert 'class="banner warning"' in feedback_html(reduced_isolation())


# --- files on disk --------------------------------------------------------------------------------

def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(atomic.TEMP_PREFIX)]


def test_submission_report_files_and_round_trip(tmp_path):
    for result in batch():
        folder = report.write_submission_report(result, tmp_path)
        assert sorted(p.name for p in folder.iterdir()) == [
            "feedback.html", "feedback.md", "feedback_instructor.md", "result.json", "results.json"]
        validate_gradescope(json.loads((folder / "results.json").read_text()))
        assert report.read_submission_result(tmp_path, result.submission) == result
    assert leftovers(tmp_path) == []


def test_read_back_is_none_unless_complete_and_understood(tmp_path):
    assert report.read_submission_result(tmp_path, "nobody") is None
    folder = report.write_submission_report(partial(), tmp_path)
    (folder / "result.json").write_text('{"submission": "bob", "path": "b", "colour": "red"}')
    assert report.read_submission_result(tmp_path, "bob") is None   # fields this code cannot read
    (folder / "result.json").write_text('{"submission": "bob", "pa')
    assert report.read_submission_result(tmp_path, "bob") is None   # truncated by hand


def test_a_crash_midway_leaves_no_partial_file_and_no_completion_marker(tmp_path, monkeypatch):
    report.write_submission_report(partial(), tmp_path)         # an earlier, complete run
    before = (tmp_path / "bob" / "feedback.html").read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        report.write_submission_report(partial(), tmp_path)
    assert leftovers(tmp_path) == []
    assert report.read_submission_result(tmp_path, "bob") is None   # re-graded on resume
    assert (tmp_path / "bob" / "feedback.html").read_bytes() == before


def test_invalid_results_are_never_written(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "to_gradescope", lambda r: {"tests": []})   # no score
    with pytest.raises(jsonschema.ValidationError):
        report.write_submission_report(full_marks(), tmp_path)
    assert not (tmp_path / "alice" / "results.json").exists()


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b"])
def test_submission_names_cannot_escape_the_output_folder(tmp_path, name):
    with pytest.raises(ValueError):
        report.submission_dir(tmp_path, name)


def test_batch_report(tmp_path):
    """One assignment (its unreadable files included): grades.csv, summary.md, histogram.png."""
    one = [r for r in batch() if r.chapter != "03_math"]
    paths = report.write_batch_report(one, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grades.csv", "histogram.png", "summary.md"]
    assert paths["histogram.png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert paths["grades.csv"].read_text(encoding="utf-8").startswith("submission,")
    assert leftovers(tmp_path) == []


def test_a_mixed_batch_gets_a_summary_section_table_and_histogram_per_assignment(tmp_path):
    """The batch mixes 02_principles and 03_math (and a file that is no assignment): nothing is
    averaged across them, each table has only its own exercise columns, and the stale single-layout
    files of an earlier run are removed."""
    (tmp_path / "grades.csv").write_text("stale")
    (tmp_path / "grades_final.csv").write_text("the instructor's own")   # no layout's name: kept
    paths = report.write_batch_report(batch(), tmp_path)
    assert list(paths) == report.batch_files(batch())   # what the terminal names, in the order written
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "grades_02_principles.csv", "grades_03_math.csv", "grades_final.csv", "grades_unrecognised.csv",
        "histogram_02_principles.png", "histogram_03_math.png", "summary.md"]
    for chapter in ("02_principles", "03_math"):
        rows = list(csv.reader(paths[f"grades_{chapter}.csv"].open(encoding="utf-8")))
        assert {row[2] for row in rows[1:]} == {chapter}
        assert all(cell != "" for row in rows[1:] for cell in row[4:-1])   # no other chapter's empty columns
    summary = paths["summary.md"].read_text(encoding="utf-8")
    assert "mixes 2 assignments" in summary and "--assignment" in summary
    assert summary.count("\n## 02_principles\n") == 1 and summary.count("\n## 03_math\n") == 1
    assert "`carol`" in summary.split("## Not any assignment")[1]
    # one assignment back: the per-assignment files go, the single layout returns
    report.write_batch_report([r for r in batch() if r.chapter == "02_principles"], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grades.csv", "grades_final.csv", "histogram.png", "summary.md"]


def test_histogram_leaves_errored_submissions_out_of_the_bars():
    assert percentages(batch()) == pytest.approx([250 / 3, 100 * 1.5 / 3.5, 100.0])
    assert render_histogram([errored()]).startswith(b"\x89PNG")   # nothing graded still draws


def test_terminal_summary_prints_names_literally():
    odd = errored()
    odd.submission = "[bold]mallory"
    console = Console(record=True, width=160)
    report.print_summary(batch() + [odd], console)
    text = console.export_text()
    assert "[bold]mallory" in text
    assert "1.5 / 3.5" in text and "43%" not in text and "42.9%" in text
    assert "masked_softmax" in text and "2 of 5 submissions could not be graded" in text


# --- class summary: what to reteach ---------------------------------------------------------------

def test_summary_rows_give_mean_full_marks_and_the_most_failed_check():
    rows = {row.exercise: row for row in exercise_summary(batch())}
    assert list(rows) == ["dot_product_scores", "masked_softmax", "logsumexp", "softmax_jacobian"]
    dot, soft, lse, jac = rows.values()
    assert (dot.graded, dot.mean, dot.max_score, dot.full_marks) == (2, 0.75, 1, 1)
    assert (dot.most_failed, dot.failed_by, dot.tied) == ("matches the oracle on batched inputs", 1, 0)
    assert (soft.graded, soft.mean, soft.max_score, soft.full_marks) == (2, 1.75, 2.5, 1)
    assert soft.most_failed == "fully masked rows are zero, not NaN"   # hidden checks count too
    assert (lse.full_marks, lse.most_failed, lse.failed_by) == (1, "", 0)
    assert (jac.graded, jac.full_marks, jac.full_share, jac.failed_by) == (1, 0, 0.0, 1)


def test_summary_counts_failures_per_submission_and_reports_ties():
    results = []
    for i, (first, second) in enumerate([(0, 0), (0, 1), (1, 0), (0, 1)]):
        r = full_marks()
        r.submission = f"s{i}"
        r.checks = [check("dot_product_scores", "worked example", first, 1),
                    check("dot_product_scores", "batched shape", second, 1)]
        results.append(r)
    row = next(r for r in exercise_summary(results) if r.exercise == "dot_product_scores")
    assert (row.most_failed, row.failed_by, row.tied) == ("worked example", 3, 0)
    assert (row.full_marks, row.graded, row.mean) == (0, 4, 0.75)
    results[1].checks[1].status, results[1].checks[1].score = "failed", 0   # now 3 and 3
    row = next(r for r in exercise_summary(results) if r.exercise == "dot_product_scores")
    assert (row.most_failed, row.failed_by, row.tied) == ("worked example", 3, 1)


def test_an_untouched_exercise_counts_in_the_mean_but_not_in_what_was_failed():
    """NotImplementedError fails every check alike: it would bury the check the class gets wrong."""
    untouched = full_marks()
    untouched.submission = "zoe"
    untouched.checks = [check("masked_softmax", "rows sum to one", 0, 1,
                              output="masked_softmax: not implemented yet"),
                        check("masked_softmax", "fully masked rows are zero, not NaN", 0, 1.5, "hidden",
                              output="masked_softmax: not implemented yet")]
    rows = {r.exercise: r for r in exercise_summary([full_marks(), partial(), untouched])}
    soft = rows["masked_softmax"]
    assert (soft.graded, soft.tried, soft.full_marks, soft.mean) == (3, 2, 1, round(3.5 / 3, 6))
    assert (soft.most_failed, soft.failed_by, soft.tied) == ("fully masked rows are zero, not NaN", 1, 0)
    assert soft.failed_by_cell() == "1 of 2"


def test_full_marks_are_the_exercises_full_marks_not_what_ran():
    """A submission whose grading stopped before an exercise's last check did not earn full marks."""
    cut = full_marks()
    cut.submission = "cut"
    cut.checks = [c for c in cut.checks if c.visibility != "hidden"]   # the hidden 1.5 never ran
    row = next(r for r in exercise_summary([full_marks(), cut]) if r.exercise == "masked_softmax")
    assert (row.max_score, row.full_marks, row.mean) == (2.5, 1, 1.75)


def test_summary_md_is_written_beside_grades_csv_and_renders_the_same_rows(tmp_path):
    paths = report.write_batch_report(batch(), tmp_path)
    assert paths["summary.md"] == tmp_path / "summary.md"
    md = paths["summary.md"].read_text(encoding="utf-8")
    assert "| `masked_softmax` | 1.75 / 2.5 | 70% | 1 of 2 (50%) | fully masked rows are zero, not NaN | 1 of 2 |" in md
    assert "| `logsumexp` | 2 / 2 | 100% | 1 of 1 (100%) | none failed |  |" in md
    # a batch of two chapters: each assignment's own overview (carol names no chapter: listed apart)
    assert "2 submissions: 2 graded, 0 could not be graded" in md and "1 submission: 1 graded" in md
    assert "`carol` (`carol.ipynb`): notebook metadata has no course.chapter" in md
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert rendered.count("<tr>") == 2 + 4   # two assignments: a header and its rows each


def test_summary_md_keeps_names_and_errors_inert(tmp_path):
    odd = errored()
    odd.submission, odd.path, odd.error = "a|b", "x|`y`.ipynb", f"{SCRIPT} | broke"
    md = summary_markdown(batch() + [odd])
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    assert rendered.count("<tr>") == 2 + 4   # two assignments' headers, four exercise rows: a pipe adds none


def test_terminal_summary_shows_the_same_rows():
    console = Console(record=True, width=200)
    report.print_summary(batch(), console)
    text = console.export_text()
    assert "1 of 2 (50%)" in text and "fully masked rows are zero, not NaN" in text
    assert "1.75 / 2.5" in text and "none failed" in text


def test_a_narrow_terminal_cuts_only_the_check_text():
    """80 columns (a pipe, CI): every exercise keeps its name and numbers; the check text is cut.
    scaled_dot_product_attention is the course's longest exercise name."""
    long = partial()
    long.checks[1].name = "dot_product_scores: " + "a very long description of what it checks " * 3
    long.checks[1].exercise = "scaled_dot_product_attention"
    console = Console(record=True, width=80)
    console.print(table.exercise_summary_table([full_marks(), long], console.width))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    row = next(line for line in lines if line.startswith("scaled_dot_product_attention"))
    assert "0.5 / 1" in row and "0 of 1 (0%)" in row and "1 of 1" in row and row.rstrip().endswith("…")


# --- golden files ---------------------------------------------------------------------------------

def golden(name: str, actual: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert actual == path.read_bytes(), f"{name} differs from its golden file"


def test_golden_grades_csv(tmp_path):
    golden("grades.csv", table.write_grades_csv(batch(), tmp_path / "grades.csv").read_bytes())


def test_golden_summary_md():
    golden("summary.md", summary_markdown(batch()).encode("utf-8"))


@pytest.mark.parametrize("make", [full_marks, partial, errored, reduced_isolation])
def test_golden_feedback_markdown(make):
    result = make()
    golden(f"{result.submission}.feedback.md", feedback_markdown(result).encode("utf-8"))
