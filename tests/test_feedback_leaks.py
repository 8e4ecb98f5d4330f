"""Nothing a submission controls reaches what students read unbounded or un-neutralised (issue 14).

A submission's function is called with the hidden checks' inputs, so anything it can make the
grader echo is a channel for those inputs: a returned object's class name, an exception's message,
the values and positions it returns, the built-in names its process reports. The attacks below
try each channel and the tests read the student's feedback (feedback.md, feedback.html,
results.json) the way the grader writes it. Checks run through `run_checks` over a `LocalBackend`:
the same request/convert/_read_reply path as the sandbox, without the transport.
"""
from __future__ import annotations

import json
import re
import unicodedata
import warnings

import numpy as np
import pytest

from autograder.checks.runner import LocalBackend, run_checks
from autograder.session import _read_reply
from autograder.notebooks import load_namespace, master_path
from autograder.report.feedback import feedback_html, feedback_markdown
from autograder.report.gradescope import to_gradescope
from autograder.results import SubmissionResult

CHAPTER = "02_principles"
MARK = "LEAK"        # every attack writes this into the channel it tries

# The attacks record the inputs they saw, so a test can look for them in the feedback.
SEEN: list[np.ndarray] = []


def _graded(source: str, framework: str = "torch", public_only: bool = False) -> SubmissionResult:
    namespace = load_namespace(master_path(CHAPTER, framework))
    namespace["SEEN"] = SEEN
    exec(source, namespace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks, traced = run_checks(CHAPTER, LocalBackend(namespace, framework), framework, seed=3,
                                    public_only=public_only)
    return SubmissionResult("attacker", "attacker.ipynb", CHAPTER, framework, checks=checks,
                            exercises=sorted({c.exercise for c in checks}), builtins=traced)


def _student_texts(result: SubmissionResult) -> dict[str, str]:
    return {"feedback.md": feedback_markdown(result), "feedback.html": feedback_html(result),
            "results.json": json.dumps(to_gradescope(result), ensure_ascii=False)}


def _hidden_lines(result: SubmissionResult) -> str:
    """What students read of the failed hidden checks (results.json's per-test output)."""
    tests = to_gradescope(result)["tests"]
    return "\n".join(t["output"] for t in tests if t["visibility"] == "after_published")


def _input_numbers(arrays) -> set[str]:
    """Renderings of the inputs' values a leak would show (as %g or repr prints them)."""
    found = set()
    for array in arrays:
        for v in np.asarray(array, np.float64).ravel()[:50]:
            if abs(v) > 1e-3 and v != round(v):   # round numbers (1e4) are the grader's fixed inputs
                found |= {f"{v:.6g}", f"{v:.4f}", repr(float(np.float32(v)))[:7]}
    return {s for s in found if len(s) >= 5 and "." in s}


CLASS_NAME_LEAK = f'''
class _Carrier:
    def __init__(self, array):
        self._array = array
    def __array__(self, dtype=None, copy=None):
        return self._array
def masked_softmax(scores, mask=None):
    SEEN.append(scores.numpy().copy())
    name = "{MARK}" + repr(scores.numpy().round(4).tolist())
    carrier = type(name, (_Carrier,), {{}})
    return carrier(scores.numpy())
'''


def test_a_class_name_cannot_carry_hidden_inputs_into_feedback():
    SEEN.clear()
    _graded(CLASS_NAME_LEAK, public_only=True)
    public = _input_numbers(SEEN)
    SEEN.clear()
    result = _graded(CLASS_NAME_LEAK)
    secret = _input_numbers(SEEN) - public
    hidden = _hidden_lines(result)
    assert hidden and secret, "the attack should fail the hidden checks"
    assert MARK not in hidden
    for where, text in _student_texts(result).items():
        leaked = {n for n in secret if n in text}
        assert not leaked, f"hidden inputs in the student's {where}: {sorted(leaked)[:5]}"
    # the instructor copy still says what came back, bounded
    instructor = feedback_markdown(result, instructor=True)
    assert MARK in instructor
    assert max(len(line) for line in instructor.splitlines()) < 400


VALUE_LEAK = '''
def masked_softmax(scores, mask=None):
    SEEN.append(scores.numpy().copy())
    flat = scores.reshape(-1)
    out = torch.zeros_like(scores)
    out.view(-1)[:flat.numel()] = flat * 1000 + 0.5      # the inputs, as "wrong" weights
    return out
'''


def test_returned_values_and_positions_are_not_shown_for_hidden_checks():
    SEEN.clear()
    result = _graded(VALUE_LEAK)
    hidden = _hidden_lines(result)
    assert hidden
    leaked = {n for n in _input_numbers([1000 * s + 0.5 for s in SEEN]) if n in hidden}
    assert not leaked, f"returned values in a hidden check's first line: {sorted(leaked)[:5]}"
    assert not re.search(r"\(\d+(, \d+)*\)", hidden.replace("expected shape", "")), hidden


ERROR_LEAK = f'''
def masked_softmax(scores, mask=None):
    raise ValueError("{MARK}" + repr(scores.numpy().tolist()) + "\\x1b[31m\\u202e\\r`" * 3)
'''


def test_an_exception_message_is_withheld_for_hidden_checks_and_neutralised_for_public_ones():
    result = _graded(ERROR_LEAK)
    assert MARK not in _hidden_lines(result)
    for where, text in _student_texts(result).items():
        assert "\x1b" not in text and "\u202e" not in text and "\r" not in text, where
    public = [c.output for c in result.checks if c.visibility == "visible" and c.exercise == "masked_softmax"]
    assert public and all(MARK in out for out in public)   # a public check may show the student's error
    assert all(len(out) <= 2500 for out in public)


FORGED_BUILTINS = f'''
import autograder.sandbox.tracer as _tracer
def masked_softmax(scores, mask=None):
    _tracer.used.add("{MARK}" + repr(scores.numpy().tolist()))
    return torch.softmax(scores, -1)
'''


def test_forged_builtin_names_do_not_reach_the_feedback():
    result = _graded(FORGED_BUILTINS)
    for where, text in _student_texts(result).items():
        assert MARK not in text, where


def test_tree_mask_hidden_check_does_not_print_its_random_parents():
    wrong = "def tree_mask(parents):\n    return torch.eye(len(parents), dtype=torch.bool)\n"
    result = _graded(wrong)
    hidden = [c for c in result.checks if c.exercise == "tree_mask" and c.visibility == "hidden"
              and not c.passed]
    assert hidden
    shown = _hidden_lines(result)
    assert "parents [" not in shown and "-1, " not in shown, shown


# --- the reply itself: what the trusted side accepts from the student's process --------------------

def _reply(types, error="", builtins=()):
    head = {"status": "ok", "result": {"kind": "tuple", "items": [{"a": f"r{i}", "type": t}
                                                                   for i, t in enumerate(types)]},
            "builtins": list(builtins)}
    return _read_reply(head, {f"r{i}": np.zeros(2, np.float32) for i in range(len(types))})


def test_type_names_from_a_reply_are_short_and_plain():
    reply = _reply(["x" * 5000 + "\x1b[2J\n<b>" + "\u202e"])
    (kind,) = reply.types
    assert len(kind) <= 80 and "\x1b" not in kind and "\n" not in kind and "\u202e" not in kind


@pytest.mark.parametrize("bad", [["a", ["b"]], {"deep": 1}, 7])
def test_a_type_that_is_not_a_string_is_a_malformed_reply(bad):
    head = {"status": "ok", "result": {"kind": "single", "items": [{"a": "r0", "type": bad}]}}
    assert _read_reply(head, {"r0": np.zeros(1)}).status == "error"


def test_error_text_from_a_reply_is_bounded_and_has_no_control_characters():
    head = {"status": "error", "error": ("Traceback\n" + "\x07\x1b[0m\u2066line\r\n" * 5000)}
    reply = _read_reply(head, {})
    assert len(reply.error) <= 2500
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\n\t" for ch in reply.error)
