"""Limits per check and seeds per call, through the grader's own path: a check file loaded as the
runner loads a chapter's (pytest, its fixtures, its marks), a notebook run by `session.Runner` in
the bubblewrap sandbox, `run_checks` in between.

- `@check(..., memory_mb=256)`: an attention function that builds the n×n matrix (1 GiB of float32
  at n = 16384) loses exactly that check's points, with a message that says why; one that works
  block by block (tens of MB) keeps them; both keep the correctness check's.
- `@check(..., seconds=1)` against a function that sleeps 3 s: a clear message, and the
  submission's other checks still pass.
- Every call is seeded from its check's seed and its index in the check: the same draws on every
  grade of a submission, different draws in different checks (PyTorch, TensorFlow, NumPy).
"""
from __future__ import annotations

import json
import math
import time
import types
from pathlib import Path

import numpy as np
import pytest

from autograder import chapters, isolation
from autograder.checks import runner
from autograder.session import Runner
from autograder.workers import Limits, Sandbox

pytestmark = [pytest.mark.xdist_group("sandbox"), pytest.mark.slow]

N_BIG, D = 16384, 16           # scores (N_BIG, N_BIG) float32: 1 GiB
MEMORY_MB = 256                # the check's bound: a 256-row block of scores is 16 MiB
HINT = "build the result block by block, never the whole n×n matrix"
# The chapter of this test: room for the materialising version (scores and weights, 2 GiB at
# once) inside the submission's memory, so that the check's bound, not the worker, catches it.
CHAPTER = chapters.Limits(call_seconds=60, memory_mb=3072)

CHECKS = f'''
import json, os
import numpy as np
from autograder.checks.api import assert_close, assert_shape, check

def inputs(rng, n):
    return [rng.standard_normal((n, {D})).astype(np.float32) for _ in range(3)]

@check("attention", points=2)
def test_attention_values(student, oracle, rng):
    """equals softmax(q kᵀ / √d) v on small inputs"""
    q, k, v = inputs(rng, 300)
    assert_close(student.attention(q, k, v), oracle.attention(q, k, v), atol=1e-5)

@check("attention", points=1, memory_mb={MEMORY_MB}, memory_hint={HINT!r})
def test_attention_memory(student, rng):
    """never holds the n×n matrix"""
    q, k, v = inputs(rng, {N_BIG})
    assert_shape(student.attention(q, k, v), ({N_BIG}, {D}))

@check("slow", points=1, seconds=1)
def test_slow_within_a_second(student):
    """answers within a second"""
    assert student.slow(3.0) == 3.0

@check("slow", points=1)
def test_slow_still_answers(student):
    """answers at once when asked to wait for nothing"""
    assert student.slow(0.0) == 0.0

def record(check, *values):
    with open(os.environ["CHECK_LIMITS_DRAWN"], "a") as f:
        f.write(json.dumps({{"check": check, "draws": [np.asarray(v).tolist() for v in values]}}) + "\\n")

@check("draw", points=1)
def test_draw_once(student):
    """draws"""
    record("once", *student.draw())

@check("draw_again", points=1)
def test_draw_twice(student):
    """draws twice"""
    record("twice", *student.draw(), *student.draw())
'''

NOTEBOOK = {
    "torch": '''
import math, time
import numpy as np
import torch

def slow(seconds):
    time.sleep(seconds)
    return torch.tensor(seconds)

def draw():
    return torch.rand(3), torch.from_numpy(np.random.rand(3))
''',
    "tf": '''
import math, time
import numpy as np
import tensorflow as tf

def slow(seconds):
    time.sleep(seconds)
    return tf.constant(seconds)

def draw():
    return tf.random.uniform((3,)), tf.constant(np.random.rand(3))
''',
}

MATERIALISING = '''
def attention(q, k, v):              # (n, d) each
    scores = q @ k.T / math.sqrt(q.shape[-1])   # (n, n): the whole matrix
    return torch.softmax(scores, -1) @ v        # (n, n) x (n, d) -> (n, d)
'''

BLOCKED = '''
def attention(q, k, v, block=256):   # (n, d) each
    out = []
    for start in range(0, q.shape[0], block):
        scores = q[start:start + block] @ k.T / math.sqrt(q.shape[-1])   # (block, n)
        out.append(torch.softmax(scores, -1) @ v)                        # (block, d)
    return torch.cat(out)            # (n, d)
'''


def oracle_attention(q, k, v):
    scores = q.astype(np.float64) @ k.T.astype(np.float64) / math.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True) @ v).astype(np.float32)


@pytest.fixture(scope="module")
def check_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checks") / "ch99_limits.py"
    path.write_text(CHECKS)
    return path


@pytest.fixture
def graded(check_file, monkeypatch, tmp_path):
    """grade(framework, notebook) -> {check name: result}, plus the draws the checks recorded."""
    monkeypatch.setattr(runner, "check_files", lambda chapter: [check_file])
    monkeypatch.setattr(runner, "oracle_for", lambda chapter: types.SimpleNamespace(attention=oracle_attention))
    drawn = tmp_path / "drawn.jsonl"
    monkeypatch.setenv("CHECK_LIMITS_DRAWN", str(drawn))
    boxes: dict[str, Sandbox] = {}

    def grade(framework: str, notebook: str, seed: int = 0, exercise: str | None = None):
        if isolation.bubblewrap_problem():
            pytest.skip(isolation.bubblewrap_problem())
        box = boxes.get(framework) or boxes.setdefault(framework, Sandbox(framework, level=isolation.BUBBLEWRAP))
        session = Runner(box, [(0, notebook)], limits=Limits(
            call_seconds=CHAPTER.call_seconds, submission_memory_bytes=CHAPTER.memory_mb << 20))
        drawn.unlink(missing_ok=True)
        try:
            outcome = session.run_cells()[0]
            assert outcome.ok, outcome.error
            started = time.monotonic()
            results, _ = runner.run_checks("99_limits", session, framework, seed=seed, limits=CHAPTER,
                                          exercise=exercise)
            grade.seconds = time.monotonic() - started
        finally:
            session.close()
        draws = [json.loads(line) for line in drawn.read_text().splitlines()] if drawn.exists() else []
        return {r.name.split(": ", 1)[1]: r for r in results}, draws

    yield grade
    for box in boxes.values():
        box.close()


def test_materialising_attention_loses_exactly_the_memory_checks_points(graded):
    blocked, _ = graded("torch", NOTEBOOK["torch"] + BLOCKED)
    whole, _ = graded("torch", NOTEBOOK["torch"] + MATERIALISING)
    memory = "never holds the n×n matrix"
    assert blocked[memory].status == "passed", blocked[memory].output
    assert whole[memory].status == "failed" and whole[memory].score == 0
    first, *rest = whole[memory].output.splitlines()
    assert first == f"attention used more memory than this check allows ({MEMORY_MB} MB): {HINT}"
    # the measured peak (the submission's own word) only on the later lines: 2 GiB, scores and weights
    used = rest[0].removeprefix("attention used ").split(" at its peak")[0]
    assert used.endswith(" GB") and 1.0 <= float(used[:-3]) < 3, rest
    # everything else scores the same
    for name, result in blocked.items():
        if name != memory:
            assert (whole[name].status, whole[name].score) == (result.status, result.score), name
    assert blocked["equals softmax(q kᵀ / √d) v on small inputs"].score == 2


def test_a_call_past_its_checks_time_limit_fails_that_check_only(graded):
    results, _ = graded("torch", NOTEBOOK["torch"] + BLOCKED)
    slow = results["answers within a second"]
    assert slow.status == "failed"
    assert slow.output.splitlines()[0] == "slow: timed out: still running after 1 s, the limit of this check"
    # the same function, called by the next check with the chapter's limit, still answers
    assert results["answers at once when asked to wait for nothing"].status == "passed"
    assert [name for name, r in results.items() if r.status == "failed"] == ["answers within a second"]


def test_a_function_that_timed_out_twice_is_not_called_again_at_that_limit(graded):
    box = Sandbox("torch", level=isolation.BUBBLEWRAP) if not isolation.bubblewrap_problem() else None
    if box is None:
        pytest.skip(isolation.bubblewrap_problem())
    session = Runner(box, [(0, NOTEBOOK["torch"])])
    try:
        session.run_cells()
        for _ in range(2):
            assert session.request({"name": "slow"}, (3.0,), {}, seconds=0.5).error.startswith("timed out")
        started = time.monotonic()
        skipped = session.request({"name": "slow"}, (3.0,), {}, seconds=0.5)
        assert skipped.status == "died" and "timed out twice already" in skipped.error
        assert time.monotonic() - started < 0.5
        # a check that allows more time still calls it
        assert session.request({"name": "slow"}, (1.0,), {}, seconds=10).status == "ok"
    finally:
        session.close()
        box.close()


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_every_call_is_seeded_from_its_check(graded, framework):
    _, first = graded(framework, NOTEBOOK[framework])
    _, again = graded(framework, NOTEBOOK[framework])
    assert [d["check"] for d in first] == ["once", "twice"]
    assert first == again                           # the same draws on every grade
    once, twice = first[0]["draws"], first[1]["draws"]
    for a, b in zip(once, twice[:2]):               # another check: other draws
        assert a != b
    for a, b in zip(twice[:2], twice[2:]):          # the next call of a check: other draws
        assert a != b
    # whatever ran before in the process: here nothing (a fresh child draws first), not "once"
    _, alone = graded(framework, NOTEBOOK[framework], exercise="draw_again")
    assert alone == first[1:]
    _, other = graded(framework, NOTEBOOK[framework], seed=1)   # another batch seed: other draws
    assert other[0] != first[0] and other[1] != first[1]
