"""`check("name")` as a student sees it in the notebook: one readable verdict, never a traceback."""
from __future__ import annotations

import pytest
import torch

from autograder.student import bind

pytestmark = pytest.mark.xdist_group("frameworks")


def verdict(capsys, source: str, exercise: str) -> str:
    namespace = {"torch": torch}
    exec(source, namespace)
    bind("02_principles", "torch").run(namespace, exercise)
    return capsys.readouterr().out


def test_not_implemented_yet_is_not_an_error(capsys):
    out = verdict(capsys, "def masked_softmax(scores, mask=None):\n    raise NotImplementedError\n", "masked_softmax")
    assert out.strip() == "… masked_softmax: not implemented yet"


def test_a_nan_says_where(capsys):
    source = ("def masked_softmax(scores, mask=None):\n"
              "    if mask is not None:\n"
              "        scores = scores.masked_fill(~mask, float('-inf'))\n"
              "    return torch.softmax(scores, dim=-1)\n")
    out = verdict(capsys, source, "masked_softmax")
    assert "✗ masked_softmax" in out and "NaN at index (" in out


def test_a_wrong_shape_says_both_shapes_and_hints(capsys):
    source = "def dot_product_scores(queries, keys):\n    return keys @ queries.transpose(-2, -1)\n"
    out = verdict(capsys, source, "dot_product_scores")
    assert "expected shape (3, 2)" in out and "(2, 3)" in out and "transposed" in out


def test_a_crash_is_reported_with_the_students_line(capsys):
    out = verdict(capsys, "def causal_mask(n_q, n_k=None):\n    return undefined_name\n", "causal_mask")
    assert "causal_mask raised an error" in out and "NameError" in out


def test_the_right_answer_passes(capsys):
    source = ("def dot_product_scores(queries, keys):\n"
              "    return queries @ keys.transpose(-2, -1)\n")
    assert "✓ dot_product_scores: all" in verdict(capsys, source, "dot_product_scores")


def test_a_name_that_is_no_exercise(capsys):
    assert "is not an exercise" in verdict(capsys, "", "masked_softmx")
    check = __import__("autograder").check
    check("masked_softmx")
    first = __import__("autograder.chapters").chapters.chapters_with_exercises()[0].exercises[0]
    out = capsys.readouterr().out   # every chapter's exercises, in the course's order
    assert f"'masked_softmx' is not an exercise (known: {first}," in out and "masked_softmax" in out


# --- check() bound to its assignment: autograder.checker(chapter, framework) ---------------------

TORCH_SCORES = "def dot_product_scores(queries, keys):\n    return queries @ keys.transpose(-2, -1)\n"


def run_cell(capsys, namespace: dict, source: str) -> str:
    """Run `source` as a notebook cell would: module-level code in the notebook's namespace."""
    exec(source, namespace)
    return capsys.readouterr().out


def bound(chapter: str, framework: str, **names) -> dict:
    import autograder

    return {"__name__": "__main__", "check": autograder.checker(chapter, framework), **names}


def test_only_from_torch_import_nn_is_checked_as_torch(capsys):
    """The old guess looked for the module `torch` itself and gave up on `nn` alone."""
    from torch import nn

    source = ("def masked_softmax(scores, mask=None):\n"
              "    if mask is not None:\n"
              "        scores = scores.masked_fill(~mask, -1e30)\n"
              "    weights = nn.functional.softmax(scores, dim=-1)\n"
              "    return weights if mask is None else weights * mask.any(-1, keepdim=True)\n")
    namespace = bound("02_principles", "torch", nn=nn)
    assert "✓ masked_softmax" in run_cell(capsys, namespace, source + 'check("masked_softmax")\n')


def test_a_keras_object_in_a_torch_notebook_does_not_change_the_framework(capsys):
    """A PyTorch notebook that also holds TensorFlow and a Keras layer (say, to compare with) is
    still checked with torch tensors: the binding says so, nothing is guessed."""
    import tensorflow as tf

    namespace = bound("02_principles", "torch", tf=tf, layer=tf.keras.layers.Dense(2))
    assert "✓ dot_product_scores" in run_cell(capsys, namespace, TORCH_SCORES + 'check("dot_product_scores")\n')


def test_the_same_code_bound_to_tensorflow_gets_tf_tensors(capsys):
    """The binding is what decides: torch code checked as the TensorFlow assignment fails."""
    import tensorflow as tf

    namespace = bound("02_principles", "tf", torch=torch, tf=tf)
    out = run_cell(capsys, namespace, TORCH_SCORES + 'check("dot_product_scores")\n')
    assert "✗ dot_product_scores" in out and "raised an error" in out
    tf_code = ("def dot_product_scores(queries, keys):\n"
               "    return tf.matmul(queries, keys, transpose_b=True)\n")
    assert "✓ dot_product_scores" in run_cell(capsys, namespace, tf_code + 'check("dot_product_scores")\n')


def test_a_bound_check_names_its_chapters_exercises(capsys):
    out = run_cell(capsys, bound("02_principles", "torch"), 'check("masked_softmx")\n')
    assert "'masked_softmx' is not an exercise of 02_principles" in out and "masked_softmax" in out


def test_binding_to_an_unknown_assignment_fails_at_once():
    import autograder

    with pytest.raises(LookupError, match="no chapter '02_principle'"):
        autograder.checker("02_principle", "torch")
    with pytest.raises(LookupError, match="has no exercises"):
        autograder.checker("07_outlook", "torch")
    with pytest.raises(ValueError, match="unknown framework 'pytorch'"):
        autograder.checker("02_principles", "pytorch")


def test_the_old_unbound_check_still_works_and_says_how_to_bind(capsys):
    namespace = {"__name__": "__main__", "torch": torch}
    out = run_cell(capsys, namespace, "from autograder import check\n" + TORCH_SCORES + 'check("dot_product_scores")\n')
    assert "✓ dot_product_scores" in out
    assert 'check = autograder.checker("02_principles", "torch")' in out


def test_the_old_check_gives_up_on_two_frameworks_and_says_how_to_bind(capsys):
    import tensorflow as tf

    namespace = {"__name__": "__main__", "torch": torch, "tf": tf}
    out = run_cell(capsys, namespace, "from autograder import check\n" + TORCH_SCORES + 'check("dot_product_scores")\n')
    assert "cannot tell the framework" in out and "✓" not in out and "✗" not in out
    assert 'check = autograder.checker("02_principles", "torch")' in out
