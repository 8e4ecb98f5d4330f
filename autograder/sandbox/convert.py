"""Crossing between NumPy (what checks speak) and the notebook's framework (what students speak).

Used on the untrusted side of a graded run and in the student's own kernel by `check()`, so that
a function sees exactly the same inputs in both places.
"""
from __future__ import annotations

import numpy as np

SCALARS = (bool, int, float, str)


def encode_args(args, kwargs) -> tuple[dict, dict[str, np.ndarray]]:
    """Checks' arguments -> JSON spec + arrays. Only arrays, scalars and None may cross."""
    arrays: dict[str, np.ndarray] = {}

    def one(value):
        if value is None:
            return {"none": True}
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, SCALARS):
            return {"v": value}
        if isinstance(value, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = value
            return {"a": key}
        if isinstance(value, (tuple, list)):
            return {"seq": [one(v) for v in value]}
        raise TypeError(f"cannot send {type(value).__name__} to a submission")

    spec = {"args": [one(a) for a in args], "kwargs": {k: one(v) for k, v in kwargs.items()}}
    return spec, arrays


def decode_args(spec: dict, arrays: dict, framework: str):
    def one(item):
        if "none" in item:
            return None
        if "v" in item:
            return item["v"]
        if "seq" in item:
            return tuple(one(v) for v in item["seq"])
        return to_framework(arrays[item["a"]], framework)

    return [one(a) for a in spec["args"]], {k: one(v) for k, v in spec["kwargs"].items()}


def to_framework(array: np.ndarray, framework: str):
    """NumPy -> the framework's default types: float32 stays, ints become the framework's int."""
    if framework == "torch":
        import torch

        return torch.from_numpy(np.array(array, copy=True))
    import tensorflow as tf

    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.int32)   # TF's default int; tf.range(...) is int32
    return tf.constant(array)


def type_name(value) -> str:
    cls = type(value)
    module = cls.__module__.split(".")[0]
    if module == "torch" and cls.__name__ in ("Tensor", "Parameter"):
        return "torch.Tensor"
    if module in ("tensorflow", "keras") and hasattr(value, "numpy") and hasattr(value, "dtype"):
        return "tf.Tensor"
    if cls is np.ndarray:
        return "numpy.ndarray"
    return f"{cls.__module__}.{cls.__qualname__}"


def to_numpy(value) -> np.ndarray:
    """A returned tensor -> a plain ndarray (no subclass, no object dtype)."""
    if hasattr(value, "detach"):           # torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):   # tf.Tensor / Variable
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError("returned an object array")
    return np.array(array, copy=True, subok=False)


def encode_result(value) -> tuple[dict, dict[str, np.ndarray]]:
    """A function's return value -> JSON spec + arrays, recording each leaf's type."""
    arrays: dict[str, np.ndarray] = {}

    def leaf(v):
        if v is None:
            return {"none": True, "type": "None"}
        if isinstance(v, (bool, int, float)) and not isinstance(v, np.generic):
            return {"v": v, "type": type(v).__name__}
        key = f"r{len(arrays)}"
        name = type_name(v)
        arrays[key] = to_numpy(v)
        return {"a": key, "type": name}

    if isinstance(value, (tuple, list)):
        return {"kind": type(value).__name__, "items": [leaf(v) for v in value]}, arrays
    return {"kind": "single", "items": [leaf(value)]}, arrays
