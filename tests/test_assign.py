"""The generator of student notebooks (`make exercises`) and the committed student views."""
import ast
import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from autograder import assign, chapters, examples, notebooks
from autograder.notebooks import master_path, student_path

ASSIGNMENTS = chapters.assignments()   # from the chapter records, never a folder listing
IDS = [f"{c}/{f}" for c, f in ASSIGNMENTS]


@pytest.mark.parametrize("chapter, framework", ASSIGNMENTS, ids=IDS)
def test_every_assignment_has_its_master(chapter, framework):
    assert master_path(chapter, framework).is_file()


# --- the committed student views -------------------------------------------------------------------

@pytest.mark.parametrize("chapter, framework", ASSIGNMENTS, ids=IDS)
def test_committed_student_view_is_generated(chapter, framework):
    committed = student_path(chapter, framework)
    assert committed.is_file(), f"{committed} is missing: run make exercises"
    assert committed.read_text(encoding="utf-8") == assign.generate(chapter, framework), (
        f"{committed.relative_to(notebooks.REPO_ROOT)} differs from its master: run make exercises")
    assert assign.is_current(chapter, framework)


def test_check_flag_reports_nothing_when_current():
    proc = subprocess.run([sys.executable, "-m", "autograder.assign", "--check"], capture_output=True, text=True,
                          cwd=notebooks.REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


@pytest.fixture
def scratch_repo(tmp_path, monkeypatch):
    """A copy of the masters and student views, with the package looking there."""
    for chapter, framework in ASSIGNMENTS:
        for path in (master_path(chapter, framework), student_path(chapter, framework)):
            target = tmp_path / path.relative_to(notebooks.REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    monkeypatch.setattr(chapters, "REPO_ROOT", tmp_path)    # the records' paths
    monkeypatch.setattr(notebooks, "REPO_ROOT", tmp_path)   # the paths shown in messages
    return tmp_path


def test_a_changed_master_is_reported_until_regenerated(scratch_repo, capsys):
    chapter, framework = "02_principles", "torch"
    master = master_path(chapter, framework)
    nb = nbformat.read(master, as_version=4)
    cell = next(c for c in nb.cells if notebooks.exercise_of(c) == "masked_softmax")
    cell.source = cell.source.replace("Softmax over the last axis", "Softmax over the keys")
    nbformat.write(nb, master)

    assert assign.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert f"chapters/{chapter}/exercises_{framework}.ipynb" in out
    assert "exercises_tf.ipynb" not in out           # the twin is still current

    assert assign.main([]) == 0
    capsys.readouterr()
    assert assign.main(["--check"]) == 0
    regenerated = nbformat.read(student_path(chapter, framework), as_version=4)
    assert any("Softmax over the keys" in c.source for c in regenerated.cells)


def test_a_hand_edited_student_view_is_reported(scratch_repo, capsys):
    path = student_path("02_principles", "tf")
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source += "\nAn edit by hand."
    nbformat.write(nb, path)
    assert assign.main(["--check"]) == 1
    assert "exercises_tf.ipynb" in capsys.readouterr().out


def test_reformatting_alone_is_not_a_difference(scratch_repo):
    path = student_path("02_principles", "torch")
    path.write_text(json.dumps(json.loads(path.read_text()), indent=2), encoding="utf-8")
    assert assign.is_current("02_principles", "torch")


def test_generation_is_deterministic():
    for chapter, framework in ASSIGNMENTS:
        assert assign.generate(chapter, framework) == assign.generate(chapter, framework)


# --- what a student view contains ------------------------------------------------------------------

def _solution_lines(source: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() == assign.BEGIN:
            inside = True
        elif line.strip() == assign.END:
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


@pytest.mark.parametrize("chapter, framework", ASSIGNMENTS, ids=IDS)
def test_student_view_structure(chapter, framework):
    master = nbformat.read(master_path(chapter, framework), as_version=4)
    student = nbformat.read(student_path(chapter, framework), as_version=4)

    assert student.metadata.course == {"chapter": chapter, "framework": framework}
    assert student.metadata.kernelspec.name == "python3"
    note = student.cells[0]
    assert note.id == assign.NOTE_ID and note.cell_type == "markdown"
    assert f"solutions/{chapter}/exercises_{framework}.ipynb" in note.source and "make exercises" in note.source

    kept = [c for c in master.cells if notebooks.SOLUTION_ONLY_TAG not in notebooks.tags(c)]
    assert [c.id for c in student.cells[1:]] == [c.id for c in kept]
    assert notebooks.exercises(student) == notebooks.exercises(master)
    assert len(notebooks.exercises(student)) >= 1

    for m, s in zip(kept, student.cells[1:]):
        assert s.cell_type == m.cell_type and s.metadata == {k: v for k, v in m.metadata.items() if k != "execution"}
        if s.cell_type == "markdown":   # text kept, worked examples filled in (test_worked_examples.py)
            assert s.source == examples.fill(m.source, chapter)
            continue
        assert s.outputs == [] and s.execution_count is None
        solution = _solution_lines(m.source)
        if not solution:
            assert s.source == m.source
            continue
        student_lines = {line.strip() for line in s.source.splitlines()}
        leaked = [line for line in solution if line in student_lines]
        assert not leaked, f"cell {s.id}: solution lines in the student view: {leaked}"
        assert "# YOUR CODE HERE" in s.source and "raise NotImplementedError" in s.source
        # signatures and docstrings are kept: the same functions, arguments and docstrings
        m_defs = {d.name: d for d in ast.walk(ast.parse(m.source)) if isinstance(d, ast.FunctionDef)}
        s_defs = {d.name: d for d in ast.walk(ast.parse(s.source)) if isinstance(d, ast.FunctionDef)}
        assert s_defs.keys() == m_defs.keys()
        for name, d in s_defs.items():
            assert ast.dump(d.args) == ast.dump(m_defs[name].args), name
            assert ast.get_docstring(d) == ast.get_docstring(m_defs[name]), name


@pytest.mark.parametrize("chapter, framework", ASSIGNMENTS, ids=IDS)
def test_every_exercise_is_followed_by_its_check_cell(chapter, framework):
    for path in (master_path(chapter, framework), student_path(chapter, framework)):
        cells = nbformat.read(path, as_version=4).cells
        for index, cell in enumerate(cells):
            name = notebooks.exercise_of(cell)
            if name:
                after = cells[index + 1]
                assert after.source == f'check("{name}")' and notebooks.CHECK_TAG in notebooks.tags(after), (
                    path.name, name)


# --- the generator on small notebooks --------------------------------------------------------------

SMALL = ASSIGNMENTS[0][0]   # a real chapter: the generated note names its master through the record


def _notebook(*cells, chapter=SMALL, framework="torch"):
    nb = nbformat.v4.new_notebook(metadata={"course": {"chapter": chapter, "framework": framework}})
    for index, cell in enumerate(cells):
        cell.id = f"cell-{index}"
        nb.cells.append(cell)
    return nb


def test_solution_replaced_at_marker_indentation():
    source = "\n".join([
        "def f(x):",
        '    """Docstring."""',
        "    if x:",
        "        # BEGIN SOLUTION",
        "        return 1",
        "        # END SOLUTION",
        "    # BEGIN SOLUTION",
        "    y = x + 1",
        "",
        "    return y",
        "    # END SOLUTION",
        "    # a comment after",
    ])
    assert assign.strip_solutions(source, 0) == "\n".join([
        "def f(x):",
        '    """Docstring."""',
        "    if x:",
        "        # YOUR CODE HERE",
        "        raise NotImplementedError",
        "    # YOUR CODE HERE",
        "    raise NotImplementedError",
        "    # a comment after",
    ])
    assert assign.strip_solutions("x = 1\ny = 2", 0) == "x = 1\ny = 2"


def test_solution_only_cells_and_outputs_are_dropped():
    code = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")])
    code.metadata["execution"] = {"iopub.execute_input": "2024-01-01T00:00:00"}
    hidden = nbformat.v4.new_code_cell("answer = 42", metadata={"tags": ["solution-only"]})
    text = nbformat.v4.new_markdown_cell("Some *text*.")
    view = assign.student_view(_notebook(text, code, hidden), SMALL, "torch")
    assert [c.id for c in view.cells] == [assign.NOTE_ID, "cell-0", "cell-1"]
    assert view.cells[2].outputs == [] and view.cells[2].execution_count is None
    assert "execution" not in view.cells[2].metadata
    assert view.cells[1].source == "Some *text*."


def test_master_is_not_modified():
    nb = _notebook(nbformat.v4.new_code_cell("# BEGIN SOLUTION\nx = 1\n# END SOLUTION"))
    before = nbformat.writes(nb)
    assign.student_view(nb, SMALL, "torch")
    assert nbformat.writes(nb) == before


@pytest.mark.parametrize("source, message", [
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION", r"cell 4, line 2: nested BEGIN SOLUTION"),
    ("x = 1\n# END SOLUTION", r"cell 4, line 2: END SOLUTION without BEGIN"),
    ("def f():\n    # BEGIN SOLUTION\n    return 1", r"cell 4, line 2: BEGIN SOLUTION without END"),
    ("x = 1  # BEGIN SOLUTION\n# END SOLUTION", r"cell 4, line 1: a solution marker must be alone on its line"),
])
def test_marker_errors_name_the_cell(source, message):
    with pytest.raises(assign.AssignError, match=message):
        assign.strip_solutions(source, 4)


def test_markers_in_a_markdown_cell_are_an_error():
    nb = _notebook(nbformat.v4.new_code_cell("x = 1"),
                   nbformat.v4.new_markdown_cell("Text\n# BEGIN SOLUTION\nsecret\n# END SOLUTION"))
    with pytest.raises(assign.AssignError, match=r"cell 1: solution markers in a markdown cell"):
        assign.student_view(nb, SMALL, "torch")


def test_wrong_course_metadata_is_an_error():
    nb = _notebook(nbformat.v4.new_code_cell("x = 1"), framework="tf")
    with pytest.raises(assign.AssignError, match="metadata.course"):
        assign.student_view(nb, SMALL, "torch")


def test_errors_reach_the_command_line(scratch_repo, capsys):
    master = master_path("02_principles", "tf")
    nb = nbformat.read(master, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if notebooks.exercise_of(c) == "causal_mask")
    nb.cells[index].source = nb.cells[index].source.replace("    # END SOLUTION\n", "").replace("    # END SOLUTION", "")
    nbformat.write(nb, master)
    assert assign.main([]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"solutions/02_principles/exercises_tf.ipynb: cell {index}, line \d+: BEGIN SOLUTION without END",
                     err), err
