"""Load the grader's weights into a student's module, or say in the contract's words what does not fit.

The grader speaks the maths layout, y = x @ kernel + bias, and names a layer by its attribute path
from the module ("w_q", "attention.w_q"):
    {"w_q.kernel": (in, out), "w_q.bias": (out,), "norm1.scale": (d,), "norm1.offset": (d,)}
Here each framework's layout is applied: nn.Linear keeps its weight as (out, in); a Keras layer
makes its variables on first use, so an unbuilt one is built from the kernel's shape.

Everything is checked before anything is written, and every problem found is reported at once
as a `Mismatch` whose text the student reads as it is: a missing attribute (with the names the
contract gives at that level), a parameter of the wrong shape (in the maths layout, whatever the
framework), a bias the layer lacks or has when the grader's weights have none (bias=False).
Exceptions raised by the student's own code (a property, a Keras `build`) pass through unchanged,
so the student sees their traceback.
"""
from __future__ import annotations

import numpy as np

MAX_PROBLEMS = 6   # lines of a Mismatch; the rest is counted
_MISSING = object()

# grader's part -> (the layer's attribute holding it, what the contract makes that layer,
#                   the constructor argument that leaves the part out)
PARTS = {
    "torch": {"kernel": ("weight", "nn.Linear", None),
              "bias": ("bias", "nn.Linear", "bias=False"),
              "scale": ("weight", "nn.LayerNorm", "elementwise_affine=False"),
              "offset": ("bias", "nn.LayerNorm", "bias=False")},
    "tf": {"kernel": ("kernel", "keras.layers.Dense", None),
           "bias": ("bias", "keras.layers.Dense", "use_bias=False"),
           "scale": ("gamma", "keras.layers.LayerNormalization", "scale=False"),
           "offset": ("beta", "keras.layers.LayerNormalization", "center=False")},
}
# the parts a layer of each kind has unless made without them
SIBLINGS = {"kernel": ("kernel", "bias"), "bias": ("kernel", "bias"), "scale": ("scale", "offset"),
            "offset": ("scale", "offset")}


class Mismatch(Exception):
    """The student's module does not have what the grader loads; the text says what and where."""


def load(module, flat: dict[str, np.ndarray], framework: str) -> None:
    """`flat`: {"<path>.<part>": array} in the maths layout (see the module's docstring)."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in flat.items():
        path, _, part = key.rpartition(".")
        if part not in PARTS[framework]:
            raise Mismatch(f"the grader sent an unknown kind of weight {key!r}; tell your instructor")
        groups.setdefault(path, {})[part] = value
    problems: list[str] = []
    layers = _find_layers(module, list(groups), problems, framework)
    plans = []
    for path, layer in layers.items():
        plans += _plan(path, layer, groups[path], framework, problems)
    if problems:
        more = len(problems) - MAX_PROBLEMS
        raise Mismatch("\n".join(problems[:MAX_PROBLEMS] + ([f"… and {more} more"] if more > 0 else [])))
    _write(plans, framework)


def _find_layers(module, paths: list[str], problems: list[str], framework: str) -> dict:
    """path -> the object at that attribute path; what is missing goes to `problems`, one line per
    object that lacks something, with the names the contract gives at that level."""
    found, missing = {}, {}   # missing: parent path -> names it lacks
    for path in paths:
        obj, walked = module, []
        for attr in path.split(".") if path else []:
            child = _attribute(obj, attr)
            if child is _MISSING:
                missing.setdefault(".".join(walked), []).append(attr)
                break
            obj, walked = child, [*walked, attr]
        else:
            found[path] = obj
    root = type(module).__name__
    for parent, names in missing.items():
        below = [p[len(parent) + 1:] if parent else p for p in paths if not parent or p.startswith(parent + ".")]
        wanted = [name for name in dict.fromkeys(p.split(".")[0] for p in below) if name]   # the grader's order
        lacking = list(dict.fromkeys(names))
        where = f"{root}.{parent}" if parent else root
        noun = "attribute" if len(lacking) == 1 else "attributes"
        problems.append(f"{where} has no {noun} {', '.join(lacking)} (the contract names {', '.join(wanted)})"
                        + _lazy_hint(_at(module, parent), framework))
    return found


def _attribute(obj, name: str):
    try:
        return getattr(obj, name)
    except AttributeError:   # nn.Module and keras.Layer say "missing" this way; other errors are the student's
        return _MISSING


def _at(module, path: str):
    for attr in path.split(".") if path else []:
        module = getattr(module, attr)
    return module


def _lazy_hint(obj, framework: str) -> str:
    """A Keras layer may create its sublayers in its own build(), which the grader never triggers."""
    if framework != "tf" or getattr(obj, "built", True) is not False:
        return ""
    import keras

    if getattr(type(obj), "build", None) not in (None, keras.layers.Layer.build):
        return ("; create its sublayers in __init__, not in build(): the grader loads weights before "
                "the first call")
    return ""


def _plan(path: str, layer, params: dict[str, np.ndarray], framework: str, problems: list[str]) -> list:
    """[(variable, value in the framework's layout)] for one layer, or problems."""
    name = path or type(layer).__name__
    first = next(iter(params))
    attr, kind, _ = PARTS[framework][first]
    if framework == "tf" and getattr(layer, "built", None) is False and _is_keras_layer(layer):
        size = params["kernel"].shape[0] if "kernel" in params else np.shape(params[first])[-1]
        layer.build((None, size))   # the student's build() may run here: its errors are theirs
    if not all(_attribute(layer, PARTS[framework][part][0]) is not _MISSING for part in params):
        problems.append(f"{name}: expected a {kind}, your module has a {type(layer).__name__} there")
        return []
    plans = []
    for part in SIBLINGS[first]:
        attr, _, without = PARTS[framework][part]
        variable = _attribute(layer, attr)
        if part in params and variable is None:
            problems.append(f"{name}.{part}: the grader's weights have a {part}, your layer has none "
                            f"(made with {without}?)")
        elif part not in params and variable is not None and variable is not _MISSING:
            problems.append(f"{name}.{part}: your layer has a {part}, the grader's weights have none "
                            f"(was {without} passed on to it?)")
        elif part in params:
            value = np.asarray(params[part])
            want, got = value.shape, _maths_shape(variable, part, framework)
            if got != want:
                problems.append(f"{name}.{part}: expected shape {_shape(want)}, your layer has {_shape(got)}")
            else:
                plans.append((variable, value.T if framework == "torch" and part == "kernel" else value))
    return plans


def _is_keras_layer(layer) -> bool:
    return callable(getattr(layer, "build", None))


def _maths_shape(variable, part: str, framework: str) -> tuple:
    shape = tuple(int(n) for n in variable.shape)
    if framework == "torch" and part == "kernel" and len(shape) == 2:
        return shape[::-1]   # nn.Linear's (out, in) -> (in, out)
    return shape


def _shape(shape: tuple) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _write(plans: list, framework: str) -> None:
    if framework == "torch":
        import torch

        with torch.no_grad():
            for variable, value in plans:
                variable.copy_(torch.as_tensor(np.ascontiguousarray(value)))
        return
    for variable, value in plans:
        dtype = getattr(variable.dtype, "as_numpy_dtype", variable.dtype)   # Keras: "float32"; tf: tf.float32
        variable.assign(np.asarray(value, dtype=np.dtype(dtype)))
