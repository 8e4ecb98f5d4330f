"""A record decides which of the tracer's attention built-ins an exercise is charged with.

By default every exercise is charged with all of them ("no built-in for the exercise's own job").
A record may narrow its `forbidden`, and may list exercises in `builtins_allowed` whose job is
something else (training a whole model in chapter 05, where `nn.MultiheadAttention` is a fair
brick). Own-job and autograd charges, and forged names, are never waived.
"""
from __future__ import annotations

import dataclasses

import pytest

from autograder import chapters
from autograder.session import FORGED_BUILTIN
from check_functions import graded_master_with

SDPA = "torch.nn.functional.scaled_dot_product_attention"
KERAS_MHA = "keras.layers.MultiHeadAttention"


def test_charged_keeps_every_name_by_default():
    record = chapters.chapter("02_principles")
    seen = [SDPA, KERAS_MHA, "softmax", FORGED_BUILTIN]
    assert record.charged("scaled_dot_product_attention", seen) == sorted(seen)


def test_an_allowed_exercise_is_charged_with_no_attention_built_in_but_still_with_the_rest():
    record = dataclasses.replace(chapters.chapter("01_background"), builtins_allowed=("attention_pool",))
    assert record.charged("attention_pool", [SDPA, KERAS_MHA, "softmax", FORGED_BUILTIN]) == sorted(
        ["softmax", FORGED_BUILTIN])
    assert record.charged("softmax", [SDPA]) == [SDPA]            # the other exercises are unchanged


def test_a_narrowed_forbidden_list_charges_only_what_it_names():
    record = dataclasses.replace(chapters.chapter("02_principles"),
                                 forbidden=chapters.Forbidden(torch=(SDPA,), tf=()))
    assert record.charged("scaled_dot_product_attention", [SDPA, KERAS_MHA]) == [SDPA]


def test_the_audit_names_an_allowed_exercise_the_record_lacks():
    record = dataclasses.replace(chapters.chapter("01_background"), builtins_allowed=("translate",))
    assert "the record of 01_background allows built-ins in translate, which is not one of its exercises" \
        in record.audit()


CALLS_SDPA = '''import torch.nn.functional as F

def scaled_dot_product_attention(queries, keys, values, mask=None):
    F.scaled_dot_product_attention(queries, keys, values)   # called, its result unused
    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)
    return weights @ values, weights
'''


@pytest.mark.parametrize("allowed", [False, True], ids=["charged", "allowed"])
def test_a_real_grade_follows_the_record(allowed, monkeypatch, tmp_path):
    """The same right answer that calls SDPA scores zero, then full marks once the record allows it."""
    slug, exercise = "02_principles", "scaled_dot_product_attention"
    if allowed:
        monkeypatch.setitem(chapters._BY_SLUG, slug,
                            dataclasses.replace(chapters.chapter(slug), builtins_allowed=(exercise,)))
    result = graded_master_with(slug, "torch", exercise, CALLS_SDPA, tmp_path)
    assert not result.error
    mine = [c for c in result.checks if c.exercise == exercise]
    assert mine and all(c.max_score > 0 for c in mine)
    if allowed:
        assert exercise not in result.builtins
        assert all(c.score == c.max_score for c in mine), [c.output for c in mine if c.score < c.max_score]
    else:
        assert result.builtins[exercise] == [SDPA]
        assert all(c.score == 0 for c in mine)
        assert "the built-in this exercise asks you to write yourself" in mine[0].output
