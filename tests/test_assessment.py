"""The exercises assess; the pages teach: copying the pages' code must not pass the exercises.

For every chapter that has exercises, the code cells of the chapter's pages (in `_toc.yml` order:
the cells without a framework tag plus one framework's tagged cells) are put into a copy of the
student notebook, and the project's grader grades that, once per framework, exactly as an
instructor would (`python -m autograder grade`). The test fails when the pages earn more than
MAX_SHARE of the chapter's points in either framework, and its message names the exercises that
earned points, so that the page author knows which page gives which answer away.
(Issue 8, "Assessment".)
"""
from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from autograder.chapters import REPO_ROOT, assignments, chapters_with_exercises
from autograder.notebooks import student_path

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("assessment")]

MAX_SHARE = 0.25
FRAMEWORK_TAGS = {"torch": "pytorch", "tf": "tensorflow"}   # framework -> the pages' cell tag
TIMEOUT_SECONDS = "600"   # generous: a slow page must not pass this test by running out of time


def toc_files(toc_path: Path = REPO_ROOT / "_toc.yml") -> list[str]:
    """Every page of the book, in reading order ('chapters/02_principles/index', ...)."""
    found: list[str] = []

    def walk(entry) -> None:
        if isinstance(entry, dict):
            if "file" in entry:
                found.append(str(entry["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))
        elif isinstance(entry, list):
            for item in entry:
                walk(item)

    walk(yaml.safe_load(toc_path.read_text()))
    return found


def pages_by_chapter() -> dict[str, list[Path]]:
    """chapter slug -> its pages in toc order, for every chapter whose record lists exercises."""
    return {record.slug: [REPO_ROOT / f"{f}.md" for f in toc_files() if f.startswith(f"chapters/{record.slug}/")]
            for record in chapters_with_exercises()}


CHAPTERS = pages_by_chapter()
CASES = assignments()


def page_code(page: Path, framework: str) -> list[str]:
    """The page's code cells a reader of `framework` runs: untagged by framework, or tagged with it."""
    other = {tag for fw, tag in FRAMEWORK_TAGS.items() if fw != framework}
    cells = jupytext.read(page).cells
    return [cell.source for cell in cells
            if cell.cell_type == "code" and not other & set(cell.metadata.get("tags", []))]


def book_modules(sources: list[str]) -> dict[str, str]:
    """The repository's own modules the pages import (`from book.pages import *`), transitively:
    module name -> source. The sandbox cannot see the repository, so they travel with the code."""
    found: dict[str, str] = {}
    todo = list(sources)
    while todo:
        try:
            tree = ast.parse(todo.pop())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):   # a module and the packages above it
                    module = ".".join(parts[:depth])
                    path = REPO_ROOT.joinpath(*parts[:depth])
                    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
                    if module not in found and parts[0] != "autograder" and path.is_file() \
                            and path.resolve().is_relative_to(REPO_ROOT / parts[0]):
                        found[module] = path.read_text()
                        todo.append(found[module])
    return found


MODULE_LOADER = """# The book's own modules the pages import, served from their sources: the grader's sandbox
# cannot see the repository, and a student copying the pages would copy these too.
import importlib.abc, importlib.util, sys
_PAGE_MODULES = {modules!r}
class _PageModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in _PAGE_MODULES:
            return importlib.util.spec_from_loader(name, self, is_package="." not in name)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        exec(compile(_PAGE_MODULES[module.__name__], module.__name__, "exec"), module.__dict__)
sys.meta_path.insert(0, _PageModules())
"""


def pages_submission(chapter: str, framework: str):
    """The student notebook with the pages' code cells appended, one notebook cell per page cell.

    Why this variant gives the pages their best chance:
    - Everything of the student notebook is kept, its metadata and cell ids included, so the grader
      takes it for that assignment; its unsolved exercise cells define each function as a stub that
      scores 0, so every point earned is the pages' doing.
    - The pages' cells come after the stubs, so whatever the pages define under an exercise's name
      replaces the stub (put in the exercise cells' place instead, a later stub would undo them).
    - Each page cell stays a cell of its own: one that fails in the sandbox (a plot, kernel plumbing)
      stops only itself, and each gets the grader's per-cell time limit.
    - The book's own modules the pages import (`book/pages.py`, the shared set-up) come first, in a
      cell that serves them from their sources: the sandbox cannot see the repository.
    """
    nb = copy.deepcopy(nbformat.read(student_path(chapter, framework), as_version=4))
    code = [(f"page-{page.stem}-{index}"[:64], source)
            for page in CHAPTERS[chapter] for index, source in enumerate(page_code(page, framework))]
    modules = book_modules([source for _, source in code])
    if modules:
        code.insert(0, ("page-modules", MODULE_LOADER.format(modules=modules)))
    for cell_id, source in code:
        cell = nbformat.v4.new_code_cell(source)
        cell.id = cell_id
        nb.cells.append(cell)
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[tuple[str, str], dict]:
    """One grader run for every (chapter, framework): its result.json."""
    folder, out = tmp_path_factory.mktemp("pages_as_submissions"), tmp_path_factory.mktemp("grades")
    names = {}
    for chapter, framework in CASES:
        names[chapter, framework] = f"pages_{chapter}_{framework}"
        nbformat.write(pages_submission(chapter, framework), folder / f"{names[chapter, framework]}.ipynb")
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(folder), "--out", str(out),
                          "--timeout", TIMEOUT_SECONDS], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=3 * float(TIMEOUT_SECONDS) * len(CASES))
    assert run.returncode == 0, run.stderr[-3000:]
    return {case: json.loads((out / name / "result.json").read_text()) for case, name in names.items()}


def test_every_chapter_with_exercises_has_pages_in_the_toc():
    assert CHAPTERS, "no chapter record lists exercises"
    for chapter, pages in CHAPTERS.items():
        assert pages, f"{chapter} has exercises but no pages in _toc.yml"
        assert all(page.is_file() for page in pages), pages


def test_the_submission_keeps_the_student_notebook_and_adds_the_pages_code():
    for chapter, framework in CASES:
        student = nbformat.read(student_path(chapter, framework), as_version=4)
        nb = pages_submission(chapter, framework)
        assert nb.metadata["course"] == student.metadata["course"]
        assert [c.id for c in nb.cells[:len(student.cells)]] == [c.id for c in student.cells]
        added = [c.source for c in nb.cells[len(student.cells):] if c.id != "page-modules"]
        assert added == [s for page in CHAPTERS[chapter] for s in page_code(page, framework)]
        assert len({c.id for c in nb.cells}) == len(nb.cells), "cell ids must be unique"


def test_page_code_takes_the_untagged_cells_and_one_frameworks_cells():
    for pages in CHAPTERS.values():
        for page in pages:
            code = [c for c in jupytext.read(page).cells if c.cell_type == "code"]
            tagged = {tag: [c.source for c in code if tag in c.metadata.get("tags", [])]
                      for tag in FRAMEWORK_TAGS.values()}
            neutral = [c.source for c in code if not set(FRAMEWORK_TAGS.values()) & set(c.metadata.get("tags", []))]
            for framework, tag in FRAMEWORK_TAGS.items():
                got = page_code(page, framework)
                assert sorted(got) == sorted(neutral + tagged[tag]), (page.name, framework)


def _earned(result: dict) -> tuple[float, float, dict[str, tuple[float, float, list[str]]]]:
    by_exercise: dict[str, tuple[float, float, list[str]]] = {}
    for c in result["checks"]:
        if c["exercise"] == "notebook":
            continue
        got, most, passed = by_exercise.get(c["exercise"], (0.0, 0.0, []))
        by_exercise[c["exercise"]] = (got + c["score"], most + c["max_score"],
                                      passed + ([c["name"]] if c["score"] > 0 else []))
    return (sum(g for g, _, _ in by_exercise.values()), sum(m for _, m, _ in by_exercise.values()), by_exercise)


@pytest.mark.parametrize("chapter, framework", CASES, ids=[f"{c}-{fw}" for c, fw in CASES])
def test_the_pages_earn_at_most_a_quarter_of_the_points(graded, chapter, framework):
    result = graded[chapter, framework]
    assert result["error"] is None, f"the pages' submission could not be graded: {result['error']}"
    run_line = next(c for c in result["checks"] if c["exercise"] == "notebook")
    assert "stopped:" not in run_line["output"], (
        "the pages' code did not run to its end in the grader, so the share measured means nothing:\n"
        + run_line["output"])
    score, top, by_exercise = _earned(result)
    assert top > 0
    share = score / top
    pages = ", ".join(p.stem for p in CHAPTERS[chapter])
    print(f"\n{chapter} {framework}: the pages' code earns {score:g} of {top:g} points ({share:.0%})")
    if share > MAX_SHARE:
        lines = [f"{name}: {got:g} of {most:g} points, from: " + "; ".join(passed)
                 for name, (got, most, passed) in by_exercise.items() if got > 0]
        pytest.fail(f"{chapter} ({framework}): copying the code cells of its pages ({pages}) earns {score:g} of "
                    f"{top:g} points ({share:.0%}), over the {MAX_SHARE:.0%} allowed. The pages give away:\n  "
                    + "\n  ".join(lines)
                    + "\nShow these ideas on a special case (one query, a loop, fixed numbers, a built-in) "
                      "and leave the general function to the exercise.\nThe pages' cells that failed in the "
                      f"grader (for information): {run_line['output'] or 'none'}", pytrace=False)


def test_the_book_modules_the_pages_import_travel_with_the_submission():
    modules = book_modules(["from book.pages import *\nimport numpy\nfrom autograder import check"])
    assert "book" in modules and "book.pages" in modules and "numpy" not in modules
    assert "autograder" not in modules
    assert modules["book.pages"] == (REPO_ROOT / "book" / "pages.py").read_text()
    namespace: dict = {}
    exec(MODULE_LOADER.format(modules={"pagesdemo": "", "pagesdemo.helpers": "ANSWER = 42"}), namespace)
    exec("from pagesdemo.helpers import ANSWER", namespace)
    assert namespace["ANSWER"] == 42
