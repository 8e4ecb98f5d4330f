"""A gallery of honest, hostile and malformed submissions, each with the outcome it must get.

The whole gallery is graded once, the way an instructor would (`python -m autograder grade DIR
--out OUT --jobs 2`), and each test reads its submission's result.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import notebooks

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("gallery")]
CHAPTER = "02_principles"
TIMEOUT = "40"


def master(fw: str):
    return nbformat.read(notebooks.master_path(CHAPTER, fw), as_version=4)


def untouched(fw: str):
    return nbformat.read(notebooks.student_path(CHAPTER, fw), as_version=4)


def code_cell(source: str):
    return nbformat.v4.new_code_cell(source)


def exercise_cell(nb, name: str) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("course", {}).get("exercise") == name:
            return i
    raise LookupError(name)


def with_cell(nb, source: str, at: int | None = None):
    nb = copy.deepcopy(nb)
    nb.cells.insert(len(nb.cells) // 2 if at is None else at, code_cell(source))
    return nb


def replacing(nb, name: str, source: str):
    nb = copy.deepcopy(nb)
    nb.cells[exercise_cell(nb, name)].source = source
    return nb


def without(nb, name: str):
    nb = copy.deepcopy(nb)
    del nb.cells[exercise_cell(nb, name)]
    return nb


FAKE_RESULTS = """
import json, os, sys
fake = {"score": 100, "tests": [{"name": "all", "score": 100, "max_score": 100, "status": "passed"}]}
targets = [".", "..", "/tmp", os.path.expanduser("~")]
for pid in os.listdir("/proc"):   # the grader's own command line names its output folder
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
        out = argv[argv.index(b"--out") + 1].decode()
        targets += [out] + [os.path.join(out, d) for d in os.listdir(out)]
    except (OSError, ValueError, IndexError):
        pass
for d in targets:
    try:
        open(os.path.join(d, "results.json"), "w").write(json.dumps(fake))
    except OSError:
        pass
print("PASSED " * 50)
print(json.dumps(fake))
"""


def metadata_tricks(fw: str):
    nb = untouched(fw)
    nb.metadata["kernelspec"] = {"name": "evil", "display_name": "evil", "language": "python"}
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.metadata["tags"] = ["NBVAL_SKIP", "raises-exception"]
            cell.metadata.setdefault("course", {})["points"] = 1000
            cell.source = "# NBVAL_SKIP\n" + cell.source
    return nb


def with_huge_outputs(nb, megabytes: int):
    nb = copy.deepcopy(nb)
    blob = "x" * (1 << 20)
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.outputs = [nbformat.v4.new_output("stream", name="stdout", text=blob) for _ in range(megabytes)]
    return nb


def other_framework_marked(fw: str):
    nb = master("tf" if fw == "torch" else "torch")
    nb.metadata["course"]["framework"] = fw
    return nb


def foreign(fw: str):
    nb = master(fw)
    nb.metadata["course"]["chapter"] = "09_quantum"
    return nb


def no_metadata(fw: str):
    nb = master(fw)
    del nb.metadata["course"]
    return nb


SDPA_BUILTIN = '''
import torch.nn.functional as F
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)
    return F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask), weights
'''
SDPA_BUILTIN_HIDDEN = '''
import importlib
def scaled_dot_product_attention(queries, keys, values, mask=None):
    fn = getattr(importlib.import_module("torch.nn." + "functional"), "scaled_dot" + "_product_attention")
    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)
    return fn(queries, keys, values, attn_mask=mask), weights
'''
SDPA_BUILTIN_TF = '''
import keras
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)
    q, k, v = (tf.convert_to_tensor(t)[..., None, :, :] for t in (queries, keys, values))
    out = keras.ops.dot_product_attention(tf.experimental.numpy.swapaxes(q, -3, -2), tf.experimental.numpy.swapaxes(k, -3, -2), tf.experimental.numpy.swapaxes(v, -3, -2))
    return tf.squeeze(out, -2), weights
'''
LIAR = '''
class Liar(torch.Tensor):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
def masked_softmax(scores, mask=None):
    return torch.zeros_like(scores).as_subclass(Liar)
'''
PATCH_COMPARISONS = '''
import numpy, torch
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda a, b, *x, **k: numpy.ones(numpy.shape(a), bool)
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.array_equal = lambda *a, **k: True
torch.allclose = lambda *a, **k: True
'''

# name -> (notebook or raw bytes, expectation)
# expectations: "full", "zero", ("error", text), ("partial", {exercise: "zero" | "full"}), extra keys
GALLERY = {
    "reference_torch": (lambda: master("torch"), "full"),
    "reference_tf": (lambda: master("tf"), "full"),
    "untouched_torch": (lambda: untouched("torch"), "zero"),
    "untouched_tf": (lambda: untouched("tf"), "zero"),
    "exits_early_with_fake_results": (lambda: with_cell(untouched("torch"), FAKE_RESULTS + "os._exit(0)", at=1), "zero"),
    "sys_exit_with_fake_results": (lambda: with_cell(untouched("tf"), FAKE_RESULTS + "sys.exit(0)", at=1), "zero"),
    "patches_comparisons": (lambda: with_cell(untouched("torch"), PATCH_COMPARISONS, at=2), "zero"),
    "metadata_tricks": (lambda: metadata_tricks("torch"), "zero"),
    "tensor_subclass_eq": (lambda: replacing(master("torch"), "masked_softmax", LIAR),
                           ("partial", {"masked_softmax": "zero", "causal_mask": "full"})),
    "forbidden_builtin": (lambda: replacing(master("torch"), "scaled_dot_product_attention", SDPA_BUILTIN),
                          ("partial", {"scaled_dot_product_attention": "zero", "masked_softmax": "full"})),
    "forbidden_builtin_hidden": (lambda: replacing(master("torch"), "scaled_dot_product_attention", SDPA_BUILTIN_HIDDEN),
                                 ("partial", {"scaled_dot_product_attention": "zero", "masked_softmax": "full"})),
    "forbidden_builtin_tf": (lambda: replacing(master("tf"), "scaled_dot_product_attention", SDPA_BUILTIN_TF),
                             ("partial", {"scaled_dot_product_attention": "zero", "masked_softmax": "full"})),
    "hanging_cell": (lambda: with_cell(master("torch"), "while True:\n    pass"), "full"),
    "memory_bomb_cell": (lambda: with_cell(master("torch"), "import numpy as np\nhog = []\nwhile True:\n    hog.append(np.ones(50_000_000))"), "full"),
    "fork_bomb_cell": (lambda: with_cell(master("tf"), "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"), "full"),
    "stops_early": (lambda: with_cell(master("tf"), "1 / 0"), "full"),
    "hanging_exercise": (lambda: replacing(master("torch"), "causal_mask", "def causal_mask(n_q, n_k=None):\n    while True:\n        pass"),
                         ("partial", {"causal_mask": "zero", "masked_softmax": "full", "tree_mask": "full"})),
    "deleted_cells": (lambda: without(master("torch"), "padding_mask"),
                      ("partial", {"padding_mask": "zero", "causal_mask": "full"})),
    "huge_outputs_still_graded": (lambda: with_huge_outputs(master("torch"), 6), "full"),
    "too_big": (lambda: with_huge_outputs(untouched("torch"), 70), ("error", "limit")),
    "invalid_json": (b'{"cells": [', ("error", "not valid JSON")),
    "empty": (b"", ("error", "empty")),
    "nbformat3": (json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}).encode(),
                  ("error", "nbformat 3")),
    "python_renamed": (b"import torch\n\ndef masked_softmax(scores, mask=None):\n    return scores\n", ("error", ".py")),
    "no_metadata": (lambda: no_metadata("torch"), ("error", "metadata.course")),
    "foreign_assignment": (lambda: foreign("tf"), ("error", "unknown assignment 09_quantum/tf")),
    "other_framework": (lambda: other_framework_marked("torch"), ("error", "marked torch but its code imports tf")),
}


# The isolation levels a root grader can use: the gallery is graded under each, and every outcome
# must be the same (AUTOGRADER_NO_BWRAP=1 makes bubblewrap unavailable, as in Docker or Gradescope).
LAYERS = {"bubblewrap": {}, "uid-drop": {"AUTOGRADER_NO_BWRAP": "1"}}
_env: dict[str, str] = {}   # the layer of the gallery being graded, for the graders a test starts


def grade(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", "grade", str(folder), "--out", str(out),
                           "--jobs", "2", "--timeout", TIMEOUT, *extra],
                          capture_output=True, text=True, timeout=1200, env={**os.environ, **_env})


@pytest.fixture(scope="module", params=sorted(LAYERS))
def layer(request):
    if request.param == "uid-drop":
        request.getfixturevalue("python_reachable")
    _env.clear()
    _env.update(LAYERS[request.param])
    yield request.param
    _env.clear()


@pytest.fixture(scope="module")
def graded(layer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")
    for name, (make, _) in GALLERY.items():
        path = folder / f"{name}.ipynb"
        if isinstance(make, bytes):
            path.write_bytes(make)
        else:
            nbformat.write(make(), path)
    out = tmp_path_factory.mktemp("grades")
    run = grade(folder, out)
    return folder, out, run


def result_of(out: Path, name: str) -> dict:
    return json.loads((out / name / "result.json").read_text())


def exercise_scores(result: dict) -> dict[str, tuple[float, float]]:
    scores: dict[str, list[float]] = {}
    for c in result["checks"]:
        got = scores.setdefault(c["exercise"], [0.0, 0.0])
        got[0] += c["score"]
        got[1] += c["max_score"]
    return {k: (round(a, 6), round(b, 6)) for k, (a, b) in scores.items()}


def test_the_batch_ran_with_exit_status_0(graded):
    _, out, run = graded
    assert run.returncode == 0, run.stderr[-3000:]
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert sorted(r["submission"] for r in rows) == sorted(GALLERY)


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_each_submission_gets_its_outcome(graded, layer, name):
    _, out, _ = graded
    expect = GALLERY[name][1]
    result = result_of(out, name)
    assert result["error"] or result["sandbox"] == layer, result["sandbox"]
    total = sum(c["score"] for c in result["checks"])
    top = sum(c["max_score"] for c in result["checks"])
    if expect == "full":
        assert result["error"] is None
        failed = [(c["name"], c["output"][:300]) for c in result["checks"] if c["status"] != "passed"
                  and c["exercise"] != "notebook"]
        assert not failed and total == top > 0
    elif expect == "zero":
        assert result["error"] is None
        assert top > 0 and total == 0
    elif expect[0] == "error":
        assert result["error"] and expect[1] in result["error"], result["error"]
        assert not result["checks"]
    else:
        scores = exercise_scores(result)
        for exercise, what in expect[1].items():
            got, most = scores[exercise]
            assert most > 0 and got == (0 if what == "zero" else most), (exercise, scores[exercise])


def test_forbidden_builtins_are_named_in_the_feedback(graded):
    _, out, _ = graded
    for name in ("forbidden_builtin", "forbidden_builtin_hidden", "forbidden_builtin_tf"):
        feedback = (out / name / "feedback.md").read_text()
        assert "scaled_dot_product_attention" in feedback or "dot_product_attention" in feedback
        assert result_of(out, name)["builtins"]["scaled_dot_product_attention"]


def test_a_notebook_that_does_not_run_through_is_reported_on_its_own_line(graded):
    _, out, _ = graded
    for name in ("hanging_cell", "memory_bomb_cell", "fork_bomb_cell", "stops_early"):
        line = next(c for c in result_of(out, name)["checks"] if c["exercise"] == "notebook")
        assert line["status"] == "failed" and line["max_score"] == 0, name
    line = next(c for c in result_of(out, "reference_torch")["checks"] if c["exercise"] == "notebook")
    assert line["status"] == "passed"


def test_fake_results_written_by_a_submission_are_nowhere_near_the_real_ones(graded):
    """The fakes look for the grader's --out in /proc/*/cmdline and write into every folder there."""
    folder, out, _ = graded
    assert not (folder / "results.json").exists() and not (out / "results.json").exists()
    for results in out.glob("*/results.json"):
        assert json.loads(results.read_text())["score"] != 100, results
    for name in ("exits_early_with_fake_results", "sys_exit_with_fake_results"):
        assert json.loads((out / name / "results.json").read_text())["score"] == 0


def test_a_second_run_resumes_and_regrades_nothing(graded):
    folder, out, _ = graded
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    run = grade(folder, out)
    assert run.returncode == 0
    assert f"{len(GALLERY)} of {len(GALLERY)} already graded" in run.stderr
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}


def test_a_batch_killed_midway_resumes_without_losing_or_redoing_work(tmp_path):
    import os
    import signal
    import time

    folder, out = tmp_path / "class", tmp_path / "out"
    folder.mkdir()
    for i in range(6):
        nbformat.write(master("torch") if i % 2 else untouched("torch"), folder / f"s{i}.ipynb")
    proc = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(folder), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("*/result.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    assert 1 <= len(done) < 6, "the kill came too late to test resuming"
    for written in out.rglob("*.json"):   # a kill mid-write leaves a temp file, never half a report
        json.loads(written.read_text())
    run = grade(folder, out)
    assert run.returncode == 0
    assert f"resuming: {len(done)} of 6 already graded" in run.stderr
    assert all(p.stat().st_mtime_ns == m for p, m in done.items())
    scores = {r["submission"]: float(r["total"]) for r in csv.DictReader((out / "grades.csv").open())}
    full = sum(c["max_score"] for c in result_of(out, "s1")["checks"])
    assert len(scores) == 6 and {scores[f"s{i}"] for i in (1, 3, 5)} == {full} and scores["s0"] == 0


def test_grading_is_deterministic(graded, tmp_path):
    folder, out, _ = graded
    again = tmp_path / "again"
    again.mkdir()
    for name in ("reference_tf", "tensor_subclass_eq", "deleted_cells"):
        (again / f"{name}.ipynb").write_bytes((folder / f"{name}.ipynb").read_bytes())
    assert grade(again, tmp_path / "out").returncode == 0
    for name in ("reference_tf", "tensor_subclass_eq", "deleted_cells"):
        first, second = result_of(out, name), result_of(tmp_path / "out", name)
        assert [(c["name"], c["score"], c["seed"]) for c in first["checks"]] == \
               [(c["name"], c["score"], c["seed"]) for c in second["checks"]]


def test_misuse_is_the_only_non_zero_exit(tmp_path):
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "no submissions" in run.stderr
    nb = tmp_path / "a.ipynb"
    nbformat.write(untouched("torch"), nb)
    blocked = tmp_path / "file"
    blocked.write_text("")
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(nb), "--out", str(blocked)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "cannot write" in run.stderr
