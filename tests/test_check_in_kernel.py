"""`check("name")` as a student sees it in the notebook: one readable verdict, never a traceback."""
from __future__ import annotations

import pytest
import torch

from autograder.student import check_in

pytestmark = pytest.mark.xdist_group("frameworks")


def verdict(capsys, source: str, exercise: str) -> str:
    namespace = {"torch": torch}
    exec(source, namespace)
    check_in(namespace, exercise)
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
    assert "expected shape (3, 2), got (2, 3)" in out and "transposed" in out


def test_a_crash_is_reported_with_the_students_line(capsys):
    out = verdict(capsys, "def causal_mask(n_q, n_k=None):\n    return undefined_name\n", "causal_mask")
    assert "causal_mask raised an error" in out and "NameError" in out


def test_the_right_answer_passes(capsys):
    source = ("def dot_product_scores(queries, keys):\n"
              "    return queries @ keys.transpose(-2, -1)\n")
    assert "✓ dot_product_scores: all" in verdict(capsys, source, "dot_product_scores")


def test_a_name_that_is_no_exercise(capsys):
    assert "is not an exercise" in verdict(capsys, "", "masked_softmx")
