"""Worked examples: the numbers a notebook prints are the oracle's, and a correct answer agrees.

The masters write computed numbers as `{{ expr :spec }}` templates (autograder/examples.py), filled
in by `assign`. These tests grow with `chapters.assignments()`: a new chapter is checked once it is
registered.
"""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from autograder import assign, chapters, examples, notebooks
from autograder.sandbox import convert

ASSIGNMENTS = chapters.assignments()
# A result typed by hand: a number with three or more decimals (inputs are small integers or given).
TYPED_RESULT = re.compile(r"(?<![\w.])-?\d+\.\d{3,}")


def worked_parts(text: str) -> list[str]:
    """The worked-example parts of a Markdown cell: from each "Worked example" to the next hint."""
    parts = []
    for start in (m.start() for m in re.finditer(r"\*\*Worked examples?\b", text)):
        end = text.find("*Useful:*", start)
        parts.append(text[start:end if end > 0 else None])
    return parts


def typed_results(text: str) -> list[str]:
    """Numbers with 3+ decimals in the worked examples of `text`, outside templates."""
    found = []
    for part in worked_parts(text):
        found += TYPED_RESULT.findall(examples.TEMPLATE.sub("", part))
    return found


def templates(nb) -> list[tuple[int, str]]:
    return [(index, match["body"]) for index, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
            for match in examples.TEMPLATE.finditer(cell.source)]


@pytest.mark.parametrize("chapter,framework", ASSIGNMENTS)
def test_no_worked_example_types_a_result(chapter, framework):
    master = notebooks.read(notebooks.master_path(chapter, framework))
    typed = {index: typed_results(cell.source) for index, cell in enumerate(master.cells)
             if cell.cell_type == "markdown"}
    typed = {index: numbers for index, numbers in typed.items() if numbers}
    assert not typed, (f"{chapter} {framework}: worked examples type results by hand (cell: numbers); "
                       f"write them as {{{{ expr :spec }}}} (autograder/examples.py): {typed}")


def test_a_planted_typed_result_is_found():
    text = ("**Worked example:** `target = [[1, 0]]`\n\n```\nweights = [0.570, 0.138, 0.281]\n```\n\n"
            "*Useful:* `torch.exp`, 1.2345 outside the example is not looked at")
    assert typed_results(text) == ["0.570", "0.138", "0.281"]
    assert typed_results(text.replace("[0.570, 0.138, 0.281]", "{{ softmax([1, 2]) :.3f }}")) == []


@pytest.mark.parametrize("chapter,framework", ASSIGNMENTS)
def test_student_view_has_every_template_filled(chapter, framework):
    view = notebooks.read(notebooks.student_path(chapter, framework))
    assert not templates(view), f"{chapter} {framework}: unfilled templates {templates(view)}"


# Arguments that hold integers (indices, lengths, ids); every other array is float32, as the checks send.
INTEGER_ARGUMENTS = {"valid_lens", "tgt_valid_lens", "src_valid_lens", "parents", "segment_ids", "tokens",
                     "block_table", "lengths"}


def _to_framework(value, framework, integer=False):
    """A template's argument as the student's function receives it: a framework tensor."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, tuple):
        return tuple(_to_framework(item, framework) for item in value)
    array = np.asarray(value)
    if array.dtype != bool:
        array = array.astype(np.int64 if integer else np.float32)
    return convert.to_framework(array, framework)


def _to_numpy(value):
    if isinstance(value, (tuple, list)):
        return tuple(_to_numpy(item) for item in value)
    if isinstance(value, dict):
        return value
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


@pytest.mark.parametrize("chapter,framework", ASSIGNMENTS)
def test_the_reference_solution_prints_the_same_examples(chapter, framework):
    """Each template, evaluated with the master's own solutions (framework tensors in and out)
    instead of the oracle, prints the same text: a correct answer never disagrees with the page."""
    master_path = notebooks.master_path(chapter, framework)
    found = templates(notebooks.read(master_path))
    if not found:
        pytest.skip(f"{chapter} has no computed worked example")
    solved = notebooks.load_namespace(master_path)
    scope = examples.namespace(chapter)
    oracle_names = [name for name in scope if name in solved and callable(solved[name])]

    def wrapped(function):
        def call(*args, **kwargs):
            bound = inspect.signature(function).bind(*args, **kwargs)
            given = {name: _to_framework(value, framework, name in INTEGER_ARGUMENTS)
                     for name, value in bound.arguments.items()}
            return _to_numpy(function(**given))
        return call

    student_scope = {**scope, **{name: wrapped(solved[name]) for name in oracle_names}}
    for index, body in found:
        by_oracle = examples.fill("{{" + body + "}}", chapter)
        by_student = examples.TEMPLATE.sub(
            lambda m: examples.show(eval(examples._SPEC.match(m["body"].strip())["expr"], student_scope),
                                    examples._SPEC.match(m["body"].strip())["spec"].strip()),
            "{{" + body + "}}")
        assert by_student == by_oracle, f"{chapter} {framework} cell {index}: {{{{{body}}}}}"


def test_a_template_that_fails_stops_generation_naming_it():
    with pytest.raises(examples.ExampleError, match=r"cell 7: the worked example .*no_such_function"):
        examples.fill("**Worked example:** {{ no_such_function([1]) :.3f }}", "01_background", "cell 7")


def test_show_formats_each_number_and_hides_negative_zero():
    assert examples.show(np.array([[0.25, -0.0]]), "7.4f") == "[[ 0.2500,  0.0000]]"
    assert examples.show((np.float32(1.5), [True, False]), ".1f") == "1.5, [True, False]"
    expected = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    assert examples.fill("{{ softmax([1, 2, 3]) :.4f }}", "01_background") == \
        "[" + ", ".join(f"{x:.4f}" for x in expected) + "]"


def test_generation_fails_on_a_broken_template(tmp_path):
    chapter, framework = ASSIGNMENTS[0]
    master = notebooks.read(notebooks.master_path(chapter, framework))
    cell = next(c for c in master.cells if c.cell_type == "markdown")
    cell.source += "\n\n**Worked example:** {{ softmax( :.3f }}"
    with pytest.raises(assign.AssignError, match="worked example"):
        assign.student_view(master, chapter, framework)
