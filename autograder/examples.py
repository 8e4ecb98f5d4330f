"""Worked examples computed by the oracle, so a printed example can never disagree with a correct answer.

A master's Markdown writes each number of a worked example that a function computes as a template,
filled in when the student views are generated (`python -m autograder assign`):

    `softmax([1, 2, 3]) = {{ softmax([1, 2, 3]) :.4f }}`   ->   `softmax([1, 2, 3]) = [0.0900, 0.2447, 0.6652]`

- the expression is Python, evaluated with the chapter's oracle functions (`autograder.oracle.ch<slug>`),
  `np`, and `e`, `inf`, `log`, `exp`, `sqrt`, `tanh` in scope, and no built-ins;
- after the last ` :` comes a format spec for each number (`.4f`, `7.3f`); none gives `str()`;
- a scalar prints as a number, an array as a bracketed list (nested for more dimensions, on one
  line), booleans as `True`/`False`, a tuple as its items joined by `, `.

Numbers the reader is given (the inputs) stay typed. `tests/test_worked_examples.py` fails on a
typed number with three or more decimals in a worked example: those are results, and come from here.
A template that does not evaluate stops generation, naming the cell and the expression.
"""
from __future__ import annotations

import importlib
import math
import re

import numpy as np

from autograder import chapters

TEMPLATE = re.compile(r"\{\{(?P<body>.+?)\}\}", re.S)
_SPEC = re.compile(r"^(?P<expr>.*?)\s:(?P<spec>[^:{}\[\]()]*)$", re.S)


class ExampleError(Exception):
    """A template that cannot be filled in; the message names it."""


def namespace(chapter: str) -> dict:
    """What a template may use: the chapter oracle's public functions and a few constants."""
    module = importlib.import_module(chapters.chapter(chapter).oracle_module)
    names = {name: value for name, value in vars(module).items()
             if callable(value) and not name.startswith("_") and getattr(value, "__module__", "") == module.__name__}
    names.update(np=np, e=math.e, inf=math.inf, log=np.log, exp=np.exp, sqrt=np.sqrt, tanh=np.tanh)
    return {"__builtins__": {}, **names}


def show(value, spec: str = "") -> str:
    """One value as a worked example prints it."""
    if isinstance(value, tuple):
        return ", ".join(show(item, spec) for item in value)
    array = np.asarray(value)
    if array.ndim:
        return "[" + ", ".join(show(item, spec) for item in array) + "]"
    item = array.item()
    if isinstance(item, bool) or not spec:
        return str(item)
    text = format(item, spec)
    if text.lstrip().startswith("-") and float(text) == 0:   # -0.0000 is 0 to a reader
        text = text.replace("-", " " if re.match(r"\d", spec) else "", 1)
    return text


def fill(text: str, chapter: str, where: str = "") -> str:
    """`text` with each `{{ expr : spec }}` replaced by its value."""
    if "{{" not in text:
        return text
    scope = namespace(chapter)

    def one(match: re.Match) -> str:
        body = match["body"].strip()
        parts = _SPEC.match(body)
        expr, spec = (parts["expr"], parts["spec"].strip()) if parts else (body, "")
        try:   # masters are the course's own text, never a student's
            return show(eval(compile(expr.strip(), "<worked example>", "eval"), scope), spec)
        except Exception as exc:
            raise ExampleError(f"{where}: the worked example {{{{ {body} }}}} failed: "
                               f"{type(exc).__name__}: {exc}") from None

    return TEMPLATE.sub(one, text)
