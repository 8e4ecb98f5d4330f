"""`python -m autograder release`: what students take home works without the repository, and
gives away no reference solution, no oracle code and no hidden check.

The release is built once, by the command line, into a temporary folder. The scan looks for the
masters' solution lines, the oracle's function bodies and the hidden checks' names, bodies and
docstrings in every file of it; the same scan run on the repository's own files finds them, so it
can fail. Then a fresh Python, with only the release's chapter folder on its path and the grader
blocked from import, runs the released notebooks top to bottom as JupyterLab would: with the
reference solutions pasted in (every check passes), untouched (every check says "not implemented
yet"), and with one function made wrong (its check fails with the hint).
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import notebooks
from autograder.chapters import FRAMEWORKS, REPO_ROOT, chapters_with_exercises
from autograder.release import PACKAGE, RELEASE_ENV

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTERS = chapters_with_exercises()
MIN_SOLUTION_LINE = 16   # shorter lines (`d_k = keys.shape[-1]`) are too common to call a leak
MIN_ORACLE_LINE = 20


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """Run as the README says, from a shell that exports none of what `make` does: the program
    sets what it needs itself (RELEASE_ENV)."""
    out = tmp_path_factory.mktemp("release")
    env = {k: v for k, v in os.environ.items() if k not in RELEASE_ENV}
    done = subprocess.run([sys.executable, "-m", "autograder", "release", "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


@pytest.fixture(scope="module")
def release(released) -> Path:
    return released[0]


def test_release_sets_its_environment_itself_and_prints_no_framework_noise(released):
    out, done = released
    assert done.stderr.strip() == ""   # no oneDNN notice, AutoGraph warning or Keras UserWarning
    lines = done.stdout.splitlines()
    assert len(lines) == len(CHAPTERS) and all(f"[{i}/{len(CHAPTERS)}] {r.slug}:" in line
                                                for i, (r, line) in enumerate(zip(CHAPTERS, lines), start=1))
    for record in CHAPTERS:
        manifest = json.loads((out / record.slug / PACKAGE / "data" / f"{record.slug}.json").read_text(encoding="utf-8"))
        assert manifest["computed_under"] == {**RELEASE_ENV, "hash_randomization": 0, "torch_threads": 1}


def _normal(text: str) -> str:
    return " ".join(text.split())


def _text_of(path: Path) -> str:
    """What a reader of the file sees: cell sources for notebooks, array names and dtypes for .npz."""
    if path.suffix == ".ipynb":
        return "\n".join(cell.source for cell in nbformat.read(str(path), as_version=4).cells)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return "\n".join(f"{k} {data[k].dtype}" for k in data.files)
    return path.read_text(encoding="utf-8")


def _corpus(root: Path) -> str:
    return _normal("\n".join(_text_of(p) for p in sorted(root.rglob("*")) if p.is_file()
                             and "__pycache__" not in p.parts))


# --- what must never be released ------------------------------------------------------------------

def _solution_lines() -> set[str]:
    found = set()
    for record in CHAPTERS:
        for framework in FRAMEWORKS:
            for cell in notebooks.read(record.master_path(framework)).cells:
                blocks = re.findall(r"# BEGIN SOLUTION\n(.*?)\n[ \t]*# END SOLUTION", cell.source, re.S)
                for block in blocks:
                    found |= {_normal(line) for line in block.split("\n")
                              if len(_normal(line)) >= MIN_SOLUTION_LINE and not line.strip().startswith("#")}
    return found


def _oracle_lines() -> set[str]:
    found = set()
    for path in sorted((REPO_ROOT / "autograder" / "oracle").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None else node.body
                for statement in body:
                    for line in ast.get_source_segment(text, statement).split("\n"):
                        code = line.split("#", 1)[0]
                        if len(_normal(code)) >= MIN_ORACLE_LINE:
                            found.add(_normal(code))
    return found


def _hidden_checks() -> dict[str, set[str]]:
    """Per hidden check: its name, its body without the docstring, and its docstring as written."""
    found = {}
    for record in CHAPTERS:
        hidden = {d.function for d in record.declared_checks() if not d.public}
        text = record.checks_path.read_text(encoding="utf-8")
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef) and node.name in hidden:
                doc = ast.get_docstring(node)
                body = node.body[1:] if doc is not None else node.body
                found[node.name] = {node.name, _normal("\n".join(ast.get_source_segment(text, s) for s in body))}
                if doc:
                    found[node.name].add(_normal(f'"""{doc}"""'))
    return found


def _leaks(corpus: str) -> list[str]:
    leaks = [f"solution line: {s}" for s in _solution_lines() if s in corpus]
    leaks += [f"oracle line: {s}" for s in _oracle_lines() if s in corpus]
    leaks += [f"hidden check {name}: {s[:80]}" for name, parts in _hidden_checks().items()
              for s in parts if s in corpus]
    return sorted(leaks)


def test_the_scan_finds_solutions_oracle_and_hidden_checks_where_they_are():
    """The scan can fail: on the grader's own files it finds what it looks for."""
    assert _solution_lines() and _oracle_lines() and _hidden_checks()
    masters = _corpus(REPO_ROOT / "solutions")
    assert any(leak.startswith("solution line") for leak in _leaks(masters))
    oracle = _corpus(REPO_ROOT / "autograder" / "oracle")
    assert any(leak.startswith("oracle line") for leak in _leaks(oracle))
    checks = _normal("\n".join(r.checks_path.read_text(encoding="utf-8") for r in CHAPTERS))
    assert len({leak.split(":")[0] for leak in _leaks(checks) if leak.startswith("hidden")}) == len(_hidden_checks())


def test_the_release_holds_no_solution_oracle_or_hidden_check(release):
    assert _leaks(_corpus(release)) == []


def test_the_stored_values_are_plain_numbers(release):
    """Expected values are arrays of numbers and booleans: nothing that could hold code or text."""
    for record in CHAPTERS:
        with np.load(release / record.slug / PACKAGE / "data" / f"{record.slug}.npz", allow_pickle=False) as data:
            assert data.files and all(data[k].dtype.kind in "biuf" for k in data.files)


def test_the_release_has_the_notebooks_and_a_public_check_for_every_exercise(release):
    for record in CHAPTERS:
        folder = release / record.slug
        manifest = json.loads((folder / PACKAGE / "data" / f"{record.slug}.json").read_text(encoding="utf-8"))
        assert manifest["exercises"] == list(record.exercises)
        public = [d.function for d in record.declared_checks() if d.public]
        assert [c["function"] for c in manifest["checks"]] == public
        for framework in FRAMEWORKS:
            nb = nbformat.read(str(folder / f"exercises_{framework}.ipynb"), as_version=4)
            code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
            assert f'check = {PACKAGE}.checker("{record.slug}", "{framework}")' in code
            assert "autograder" not in code
            assert notebooks.exercises(nb) == list(record.exercises)


# --- the released checks, run without the repository --------------------------------------------

RUN_NOTEBOOK = textwrap.dedent('''
    """Run a released notebook's code cells in order, as a kernel would; print the check cells' output."""
    import contextlib, io, json, sys

    class NoGrader:
        """The release must not need the course's grader, even where it happens to be installed."""
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "autograder":
                raise ImportError(f"the release imported {name}")

    sys.meta_path.insert(0, NoGrader())
    notebook, variants = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
    report = {}
    for variant, replaced in variants.items():
        namespace, report[variant] = {"__name__": "__main__"}, {}
        for cell in notebook["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = replaced.get(cell["id"], "".join(cell["source"]))
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(source, cell["id"], "exec"), namespace)
            if "check" in cell["metadata"].get("tags", []):
                report[variant][source.strip()] = out.getvalue()
    report["grader_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "autograder")
    print(json.dumps(report))
''')

# The reference with a stray leading axis on every output: a slip whose hint the checks name.
EXTRA_AXIS = ("\n_reference_{name} = {name}\n\n"
              "def {name}(*args, **kwargs):\n"
              "    result = _reference_{name}(*args, **kwargs)\n"
              "    return tuple(r[None] for r in result) if isinstance(result, tuple) else result[None]\n")


def _solved_cells(record, framework: str) -> dict[str, str]:
    master = notebooks.read(record.master_path(framework))
    return {cell.id: cell.source for cell in master.cells if notebooks.exercise_of(cell)}


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("record", CHAPTERS, ids=lambda c: c.slug)
def test_released_checks_pass_the_reference_and_fail_the_untouched_notebook(release, tmp_path, record, framework):
    folder = release / record.slug
    solved = _solved_cells(record, framework)
    first = record.exercises[0]
    first_cell = next(i for i, source in solved.items() if re.search(rf"def {first}\(", source))
    wrong = {**solved, first_cell: solved[first_cell] + EXTRA_AXIS.format(name=first)}
    (tmp_path / "run.py").write_text(RUN_NOTEBOOK, encoding="utf-8")
    (tmp_path / "variants.json").write_text(json.dumps({"reference": solved, "untouched": {}, "wrong": wrong}))
    env = {**os.environ, "PYTHONPATH": str(folder), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(folder / f"exercises_{framework}.ipynb"),
                           str(tmp_path / "variants.json")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report.pop("grader_modules") == []
    for variant, verdicts in report.items():
        assert list(verdicts) == [f'check("{name}")' for name in record.exercises], variant
    for name in record.exercises:
        assert report["reference"][f'check("{name}")'].startswith(f"✓ {name}: "), report["reference"]
        assert report["untouched"][f'check("{name}")'].strip() == f"… {name}: not implemented yet"
    wrong_first = report["wrong"][f'check("{first}")']
    assert wrong_first.startswith(f"✗ {first}: ") and "More dimensions than expected" in wrong_first, wrong_first


# --- the stored values ---------------------------------------------------------------------------

def test_recorded_values_replay_exactly_and_only_for_the_recorded_inputs(tmp_path):
    from autograder.release.template.replay import NotStored, RecordingOracle, ReplayOracle, Store

    class Oracle:
        @staticmethod
        def pair(x, flag=None):
            return x * 2, (x > 0)

        @staticmethod
        def total(x):
            return np.float32(x.sum())

    store, x = Store(), np.arange(6, dtype=np.float32).reshape(2, 3)
    recording = RecordingOracle(Oracle, store)
    want = recording.pair(x, flag=3), recording.total(x)
    store.save(tmp_path, "ch", {"numpy": np.__version__})
    loaded, manifest = Store.load(tmp_path, "ch")
    replay = ReplayOracle(loaded, manifest["numpy"])
    got = replay.pair(x.copy(), flag=3), replay.total(x)
    assert isinstance(got[0], tuple) and got[0][1].dtype == bool and type(got[1]) is np.float32
    np.testing.assert_array_equal(got[0][0], want[0][0])
    np.testing.assert_array_equal(got[0][1], want[0][1])
    for other in ((x.astype(np.float64),), (x[:1],), (x + 1e-7,)):   # dtype, shape, one value
        with pytest.raises(NotStored, match="not stored when the exercises were released"):
            replay.pair(*other, flag=3)
    with pytest.raises(NotStored):
        replay.pair(x, flag=4)


def test_a_folder_that_is_not_a_release_is_not_overwritten(tmp_path):
    from autograder.release import ReleaseError, release_chapter

    (tmp_path / CHAPTERS[0].slug).mkdir()
    (tmp_path / CHAPTERS[0].slug / "my_notes.txt").write_text("mine")
    with pytest.raises(ReleaseError, match="is not a release"):
        release_chapter(CHAPTERS[0], tmp_path)
    assert (tmp_path / CHAPTERS[0].slug / "my_notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHAPTERS[0].slug]


def test_the_released_notebook_runs_in_a_jupyter_kernel_from_its_folder(release):
    """As in JupyterLab: the kernel starts in the notebook's folder, which is all it needs."""
    from nbclient import NotebookClient

    record = CHAPTERS[0]
    folder = release / record.slug
    nb = nbformat.read(str(folder / "exercises_torch.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'autograder'))"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute(env=env)
    printed = {cell.source.strip(): "".join(o.get("text", "") for o in cell.outputs)
               for cell in nb.cells if cell.cell_type == "code"}
    for name in record.exercises:
        assert printed[f'check("{name}")'].strip() == f"… {name}: not implemented yet"
    assert printed[nb.cells[-1].source.strip()].strip() == "[]"
