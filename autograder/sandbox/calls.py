"""Carry out one request against a submission's namespace; the same code in the sandbox and in
the student's kernel, so that `check()` and grading see a function behave identically.

A request is a JSON header plus arrays:
- {"kind": "call", "name": f}: call the function `f`;
- {"kind": "new", "name": C}: construct `C(...)` (a module) and keep it under a handle;
- {"kind": "call", "handle": h}: call that object;
- {"kind": "load", "handle": h}: load weights into its attributes. Arguments are keyword arrays
  named "<attribute path>.<kernel|bias|scale|offset>", e.g. "attention.w_q.kernel", in the
  maths convention y = x @ kernel + bias; weights.py applies each framework's layout and says
  what does not fit.

Around every call (all three kinds):
- "seed" in the request (an int; absent: nothing is seeded) seeds Python's `random`, NumPy's
  global generator and the notebook's framework just before the call (seeding.py), so that a
  check that trains something (chapter 05) scores the same every time;
- the reply carries "peak_bytes" (peak.py): how far the process's memory rose above where it
  stood when the call began, at its highest. It is the process's own word: a submission can forge
  it, so it serves checks that teach (chapter 06's flash_attention must not build the n x n
  matrix); the memory limit itself stays the worker's and the cgroup's;
- the reply carries "changed" (calls and constructions, not loads): the arguments, by array key,
  whose tensors the call modified in place (convert.changed_inputs). Inputs are left unchanged:
  the checks fail a function that changes them.
"""
from __future__ import annotations

import traceback

from autograder.sandbox import convert, peak, tracer, weights
from autograder.sandbox.seeding import seed_everything

MAX_ERROR = 3000   # characters of traceback sent back per failure


def error_text(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    # Keep the student's frames: drop the grader's own.
    text = "".join(line for line in lines if "autograder/sandbox" not in line)
    return text[-MAX_ERROR:]


def builtin_kind(exc: BaseException) -> str:
    """The built-in exception class the raised one is (ValueError for a subclass of it): what a
    check that expects an error compares, never the message."""
    return next((c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"), "BaseException")


def perform(request: dict, arrays: dict, namespace: dict, handles: dict, framework: str):
    """-> (reply header, reply arrays)."""
    kind = request.get("kind", "call")
    if "handle" in request:
        target = handles.get(request["handle"])
        if target is None:
            return {"status": "error", "error": "unknown object"}, None
    else:
        target = namespace.get(request.get("name"))
        if target is None:
            return {"status": "missing"}, None
        if not callable(target):
            return {"status": "error", "error": f"{request.get('name')} is not a function or class"}, None
    tracer.take()
    seed = request.get("seed")
    peak_bytes = 0
    try:
        made: dict = {}
        args, kwargs = convert.decode_args(request["spec"], arrays, framework, made)
        if type(seed) is int:
            seed_everything(seed, framework)
        started = peak.meter().start(framework)
        try:
            if kind == "load":
                weights.load(target, {k: convert.to_numpy(v) for k, v in kwargs.items()}, framework)
                value = None
            else:
                value = target(*args, **kwargs)
        finally:
            peak_bytes = peak.meter().stop(started)
    except NotImplementedError:
        return {"status": "not_implemented", "builtins": tracer.take(), "peak_bytes": peak_bytes}, None
    except weights.Mismatch as exc:   # the grader's words, no traceback: no student frame is involved
        return {"status": "error", "error": str(exc), "builtins": tracer.take(), "peak_bytes": peak_bytes}, None
    except BaseException as exc:   # SystemExit too: a student's function cannot stop us
        return {"status": "error", "error": error_text(exc), "builtins": tracer.take(),
                "peak_bytes": peak_bytes, "raised": builtin_kind(exc)}, None
    used = tracer.take()
    changed = [] if kind == "load" else convert.changed_inputs(arrays, made)
    if kind == "new":
        handle = f"h{len(handles)}"
        handles[handle] = value
        return {"status": "ok", "result": {"kind": "handle", "items": [], "handle": handle}, "builtins": used,
                "peak_bytes": peak_bytes, "changed": changed}, None
    try:
        spec, out = convert.encode_result(value)
    except BaseException as exc:
        return {"status": "error", "builtins": used,
                "error": f"the return value could not be read: {type(exc).__name__}: {exc}"}, None
    return {"status": "ok", "result": spec, "builtins": used, "peak_bytes": peak_bytes, "changed": changed}, out
