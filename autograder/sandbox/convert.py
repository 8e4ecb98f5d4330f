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


def decode_args(spec: dict, arrays: dict, framework: str, made: dict | None = None):
    """The arguments as the framework's tensors; `made` (if given) gets each array's tensor by key."""
    def one(item):
        if "none" in item:
            return None
        if "v" in item:
            return item["v"]
        if "seq" in item:
            return tuple(one(v) for v in item["seq"])
        tensor = to_framework(arrays[item["a"]], framework)
        if made is not None:
            made[item["a"]] = tensor
        return tensor

    return [one(a) for a in spec["args"]], {k: one(v) for k, v in spec["kwargs"].items()}


def to_framework(array: np.ndarray, framework: str):
    """NumPy -> the framework's default types: float32 stays, ints become the framework's int."""
    if framework == "torch":
        import torch

        return torch.from_numpy(np.array(array, copy=True))
    import tensorflow as tf

    if array.dtype == np.int64:
        array = array.astype(np.int32)   # TF's default int; tf.range(...) is int32 (uint8 images stay uint8)
    return tf.constant(array)


# What `type_name` reports; anything else is the submission's own class, named for the instructor.
KNOWN_TYPES = ("torch.Tensor", "tf.Tensor", "numpy.ndarray", "a numpy.ndarray subclass")
MAX_TYPE_NAME = 80


# The frameworks' real classes and conversions, taken by `pin()` before any student code runs (the
# worker pins them right after importing its framework, so every child inherits them). A
# submission that rebinds `torch._C.TensorBase`, TensorFlow's `ops.EagerTensor`, or a method of
# `torch.Tensor` afterwards changes nothing here: a NumPy array is not let through as a tensor.
# Unpinned (the student's own kernel), they are looked up at each use.
_PINNED: dict[str, object] = {}


def pin() -> None:
    """Take the loaded frameworks' tensor classes and conversion functions now, once."""
    import sys

    if "torch" in sys.modules and "torch" not in _PINNED:
        torch = sys.modules["torch"]
        _PINNED["torch"] = _torch_tensor_class()
        _PINNED["torch_ops"] = (torch._C.DisableTorchFunctionSubclass, torch.Tensor, torch.Tensor.detach,
                                torch.Tensor.cpu, torch.Tensor.float, torch.Tensor.as_subclass,
                                torch.Tensor.numpy, torch.bfloat16)
    if "tensorflow" in sys.modules and "tf" not in _PINNED:
        import tensorflow as tf

        _PINNED["tf"] = _tf_tensor_classes()
        _PINNED["tf_ops"] = (tf.convert_to_tensor, type(tf.constant(0)).numpy)


def _torch_tensor_class():
    """torch's real Tensor class, or None. Taken from `torch._C`, where a submission that rebinds
    `torch.Tensor` to a class of its own does not reach; every real tensor subclasses `TensorBase`."""
    import sys

    if "torch" in _PINNED:
        return _PINNED["torch"]
    torch_c = getattr(sys.modules.get("torch"), "_C", None)
    base = getattr(torch_c, "TensorBase", None) or getattr(torch_c, "_TensorBase", None)
    return base if isinstance(base, type) else None


def _tf_tensor_classes():
    """TensorFlow's eager tensor and variable classes, or (). An EagerTensor is made in C; a class
    that only subclasses the Python `tf.Tensor` is not one."""
    import sys

    if "tf" in _PINNED:
        return _PINNED["tf"]
    if "tensorflow" not in sys.modules:
        return ()
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import resource_variable_ops

    return (ops.EagerTensor, resource_variable_ops.BaseResourceVariable)


def type_name(value) -> str:
    """What the value really is, judged by its class's ancestry, never by its name: a class named
    `Tensor` in a module named `torch` is not a torch.Tensor."""
    cls = type(value)   # unlike value.__class__, type() cannot be faked
    torch_tensor = _torch_tensor_class()
    if torch_tensor is not None and issubclass(cls, torch_tensor):
        return "torch.Tensor"
    tf_classes = _tf_tensor_classes()
    if tf_classes and issubclass(cls, tf_classes):
        return "tf.Tensor"
    if cls is np.ndarray:
        return "numpy.ndarray"
    if issubclass(cls, np.ndarray):
        return "a numpy.ndarray subclass"
    # Never one of KNOWN_TYPES, whatever the class calls itself.
    return f"a class named {cls.__module__}.{cls.__qualname__}"[:MAX_TYPE_NAME]


def to_numpy(value) -> np.ndarray:
    """A returned tensor -> a plain ndarray (no subclass, no object dtype), through the frameworks'
    own conversions for real tensors (a subclass's overridden `numpy()` is not asked)."""
    kind = type_name(value)
    if kind == "torch.Tensor":
        if "torch_ops" in _PINNED:
            no_subclass, tensor_class, detach, cpu, to_float, as_subclass, numpy, bfloat16 = _PINNED["torch_ops"]
        else:
            import torch

            no_subclass, tensor_class, bfloat16 = torch._C.DisableTorchFunctionSubclass, torch.Tensor, torch.bfloat16
            detach, cpu, to_float = torch.Tensor.detach, torch.Tensor.cpu, torch.Tensor.float
            as_subclass, numpy = torch.Tensor.as_subclass, torch.Tensor.numpy
        with no_subclass():
            tensor = cpu(detach(value))
            if tensor.dtype == bfloat16:
                tensor = to_float(tensor)
            value = numpy(as_subclass(tensor, tensor_class))
    elif kind == "tf.Tensor":
        if "tf_ops" in _PINNED:
            convert_to_tensor, numpy = _PINNED["tf_ops"]
        else:
            import tensorflow as tf

            convert_to_tensor, numpy = tf.convert_to_tensor, type(tf.constant(0)).numpy
        value = numpy(convert_to_tensor(value))
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError("returned an object array")
    return np.array(array, copy=True, subok=False)


class ReturnedList(tuple):
    """What a student's function returned as a Python list: compared as a tuple (as it always
    was), but named a list in messages, so that "return a tensor" points the right way."""


def encode_result(value) -> tuple[dict, dict[str, np.ndarray]]:
    """A function's return value -> JSON spec + arrays, recording each leaf's type. A tuple's
    items may themselves be tuples (one level: chapter 06's `(output, (keys, values))`)."""
    arrays: dict[str, np.ndarray] = {}

    def leaf(v, nested=False):
        if isinstance(v, (tuple, list)) and not nested:
            # one level of nesting: (output, (keys, values)), a KV cache beside the output
            return {"seq": [leaf(x, nested=True) for x in v], "type": "tuple"}
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
    if isinstance(value, dict) and all(type(k) is str for k in value):
        # a flat dict of named results (chapter 03's attention_cost): keys in insertion order
        return {"kind": "dict", "keys": list(value), "items": [leaf(v) for v in value.values()]}, arrays
    return {"kind": "single", "items": [leaf(value)]}, arrays


def changed_inputs(arrays: dict[str, np.ndarray], made: dict) -> list[str]:
    """The keys of the arguments whose tensors no longer hold what was sent (values, shape): the
    function changed its input in place. `arrays` are what was received (each tensor was made
    from a copy, so these still hold the sent values); `made` their tensors, by key."""
    changed = []
    for key, tensor in made.items():
        sent = arrays[key]
        try:
            now = to_numpy(tensor)
            same = now.shape == sent.shape and bool(
                np.array_equal(now, sent, equal_nan=sent.dtype.kind in "fc" and now.dtype.kind in "fc"))
        except Exception:   # a tensor that cannot even be read back has been changed
            same = False
        if not same:
            changed.append(key)
    return changed
