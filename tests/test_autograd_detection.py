"""Gradients by hand: automatic differentiation is charged to the exercises a record lists in
`no_autograd` (chapter 03's `attention_backward`), and to no other exercise.

The static scan (autograder/scan.py) reads the whole notebook: `torch.autograd.*`, `torch.func`,
`.backward()`, `requires_grad(_)`, `tf.GradientTape`, `tf.gradients` in any unit the exercise can
reach (helpers, aliases, imports inside the function) charge it; the same code in an exercise not
listed, or in a cell the exercise does not reach, charges nothing. Then two real submissions, the
chapter-03 masters with `attention_backward` done by autograd, graded through the sandbox: that
exercise scores zero with the reason named, and the other five keep full marks.
"""
from __future__ import annotations

import pytest

from autograder import scan
from autograder.chapters import all_chapters, chapter
from check_functions import graded_master_with

CHAPTER = "03_math"
EXERCISE = "attention_backward"

CHARGED = {
    "torch.autograd.grad": ("import torch\n", """
def attention_backward(q, k, v, g):
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    return torch.autograd.grad(_forward(*leaves), leaves, g)
""", "torch.autograd"),
    "helper with .backward()": ("", """
def _grads(out, g, leaves):
    out.backward(g)
    return [x.grad for x in leaves]
def attention_backward(q, k, v, g):
    return _grads(_forward(q, k, v), g, (q, k, v))
""", "Tensor.backward"),
    "aliased import inside the function": ("", """
def attention_backward(q, k, v, g):
    from torch import autograd as ag
    return ag.grad(_forward(q, k, v), (q, k, v), g)
""", "torch.autograd"),
    "torch.func.vjp": ("from torch.func import vjp\n", """
def attention_backward(q, k, v, g):
    _, pull = vjp(_forward, q, k, v)
    return pull(g)
""", "torch.func"),
    "tf.GradientTape": ("import tensorflow as tf\n", """
def attention_backward(q, k, v, g):
    with tf.GradientTape() as tape:
        tape.watch([q, k, v])
        out = _forward(q, k, v)
    return tape.gradient(out, [q, k, v], output_gradients=g)
""", "tf.GradientTape"),
    "tf.gradients by another name": ("import tensorflow\ngradients = tensorflow.gradients\n", """
def attention_backward(q, k, v, g):
    return gradients(_forward(q, k, v), [q, k, v], g)
""", "tf.gradients"),
    "requires_grad set as an attribute": ("", """
def attention_backward(q, k, v, g):
    q.requires_grad = True
    return q
""", "requires_grad"),
}


def _cells(prelude: str, body: str, other: str = "") -> list[tuple[int, str]]:
    return [(0, prelude), (1, "def _forward(q, k, v):\n    return q\n"), (2, body), (3, other)]


@pytest.mark.parametrize("name", sorted(CHARGED))
def test_autograd_is_charged_to_a_listed_exercise(name):
    prelude, body, shown = CHARGED[name]
    findings = scan.scan(_cells(prelude, body), [EXERCISE], no_autograd=(EXERCISE,))
    assert shown in findings.charged.get(EXERCISE, []), findings.charged


@pytest.mark.parametrize("name", sorted(CHARGED))
def test_autograd_is_not_charged_to_an_unlisted_exercise(name):
    prelude, body, _ = CHARGED[name]
    assert not scan.scan(_cells(prelude, body), [EXERCISE]).charged
    assert not scan.scan(_cells(prelude, body), [EXERCISE], no_autograd=("something_else",)).charged


def test_autograd_in_a_cell_the_exercise_does_not_reach_is_not_charged():
    verify = "def _verify(q):\n    q.requires_grad_()\n    q.sum().backward()\n    return q.grad\n"
    honest = "def attention_backward(q, k, v, g):\n    return _forward(q, k, v)\n"
    findings = scan.scan(_cells("import torch\n", honest, verify), [EXERCISE], no_autograd=(EXERCISE,))
    assert not findings.charged


def test_records_list_only_their_own_exercises():
    assert EXERCISE in chapter(CHAPTER).no_autograd
    for record in all_chapters():
        assert set(record.no_autograd) <= set(record.exercises), record.slug
        assert not [p for p in record.audit() if "autograd" in p]


# --- through the sandbox -----------------------------------------------------------------------------

AUTOGRAD_SUBMISSIONS = {
    "torch": '''
def attention_backward(queries, keys, values, grad_output):
    leaves = [x.detach().clone().requires_grad_(True) for x in (queries, keys, values)]
    scores = leaves[0] @ leaves[1].transpose(-2, -1) / math.sqrt(keys.shape[-1])
    out = torch.softmax(scores, dim=-1) @ leaves[2]
    return tuple(torch.autograd.grad(out, leaves, grad_output))
''',
    "tf": '''
def attention_backward(queries, keys, values, grad_output):
    leaves = [tf.convert_to_tensor(x) for x in (queries, keys, values)]
    with tf.GradientTape() as tape:
        tape.watch(leaves)
        scores = tf.matmul(leaves[0], leaves[1], transpose_b=True) / math.sqrt(keys.shape[-1])
        out = tf.matmul(tf.nn.softmax(scores, axis=-1), leaves[2])
    return tuple(tape.gradient(out, leaves, output_gradients=grad_output))
''',
}


@pytest.mark.slow
@pytest.mark.xdist_group("sandbox")
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_attention_backward_by_autograd_scores_zero(tmp_path, framework):
    from autograder.report.feedback import feedback_markdown

    result = graded_master_with(CHAPTER, framework, EXERCISE, AUTOGRAD_SUBMISSIONS[framework], tmp_path)
    assert result.error is None, result.error
    assert list(result.builtins) == [EXERCISE], result.builtins
    by_exercise: dict[str, list] = {}
    for c in result.checks:
        by_exercise.setdefault(c.exercise, []).append(c)
    # the autograd answer is right, so only the charge takes its points
    assert all(c.score == 0 and "uses " in c.output for c in by_exercise[EXERCISE])
    for exercise in chapter(CHAPTER).exercises:
        if exercise != EXERCISE:
            assert all(c.passed for c in by_exercise[exercise]), exercise
    shown = "torch.autograd" if framework == "torch" else "tf.GradientTape"
    assert shown in feedback_markdown(result)
