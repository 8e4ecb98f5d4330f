"""Carry out one request against a submission's namespace; the same code in the sandbox and in
the student's kernel, so that `check()` and grading see a function behave identically.

A request is a JSON header plus arrays:
- {"kind": "call", "name": f}: call the function `f`;
- {"kind": "new", "name": C}: construct `C(...)` (a module) and keep it under a handle;
- {"kind": "call", "handle": h}: call that object;
- {"kind": "load", "handle": h}: load weights into its attributes. Arguments are keyword arrays
  named "<attribute path>.<kernel|bias|scale|offset>", e.g. "attention.w_q.kernel", in the
  maths convention y = x @ kernel + bias; each framework's layout is applied here.
"""
from __future__ import annotations

import traceback

from autograder.sandbox import convert, tracer

MAX_ERROR = 3000   # characters of traceback sent back per failure


def error_text(exc: BaseException) -> str:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    # Keep the student's frames: drop the grader's own.
    text = "".join(line for line in lines if "autograder/sandbox" not in line)
    return text[-MAX_ERROR:]


def _load(obj, kwargs: dict, framework: str) -> None:
    groups: dict[str, dict] = {}
    for key, value in kwargs.items():
        path, _, part = key.rpartition(".")
        groups.setdefault(path, {})[part] = value
    for path, params in groups.items():
        layer = obj
        for attr in path.split("."):
            if not hasattr(layer, attr):
                raise AttributeError(f"has no attribute '{path}', which the exercise names")
            layer = getattr(layer, attr)
        _load_layer(layer, params, framework)


def _load_layer(layer, params: dict, framework: str) -> None:
    if framework == "torch":
        import torch

        with torch.no_grad():
            for part, value in params.items():
                value = torch.as_tensor(value)
                if part == "kernel":
                    layer.weight.copy_(value.T)        # nn.Linear keeps (out, in)
                elif part in ("scale", "bias", "offset"):
                    target = layer.weight if part == "scale" else layer.bias
                    target.copy_(value)
        return
    import numpy as np

    if not layer.built:   # Keras creates variables on first use; build from the kernel's shape
        size = params["kernel"].shape[0] if "kernel" in params else np.shape(params.get("scale"))[-1]
        layer.build((None, size))
    names = {"kernel": "kernel", "bias": "bias", "scale": "gamma", "offset": "beta"}
    for part, value in params.items():
        getattr(layer, names[part]).assign(value)


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
    try:
        args, kwargs = convert.decode_args(request["spec"], arrays, framework)
        if kind == "load":
            _load(target, {k: convert.to_numpy(v) for k, v in kwargs.items()}, framework)
            value = None
        else:
            value = target(*args, **kwargs)
    except NotImplementedError:
        return {"status": "not_implemented", "builtins": tracer.take()}, None
    except BaseException as exc:   # SystemExit too: a student's function cannot stop us
        return {"status": "error", "error": error_text(exc), "builtins": tracer.take()}, None
    used = tracer.take()
    if kind == "new":
        handle = f"h{len(handles)}"
        handles[handle] = value
        return {"status": "ok", "result": {"kind": "handle", "items": [], "handle": handle}, "builtins": used}, None
    try:
        spec, out = convert.encode_result(value)
    except BaseException as exc:
        return {"status": "error", "builtins": used,
                "error": f"the return value could not be read: {type(exc).__name__}: {exc}"}, None
    return {"status": "ok", "result": spec, "builtins": used}, out
