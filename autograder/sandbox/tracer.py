"""Records calls of the frameworks' ready-made attention while a student's function runs.

The contract forbids them inside exercises. This is the dynamic half of the detection: a student
can hide from it (it lives in their process), so the trusted side also scans the source.
"""
from __future__ import annotations

import functools
import importlib

used: set[str] = set()

# (module, attribute path, name shown to the student)
TORCH = [
    ("torch.nn.functional", "scaled_dot_product_attention", "torch.nn.functional.scaled_dot_product_attention"),
    ("torch._C._nn", "scaled_dot_product_attention", "torch.nn.functional.scaled_dot_product_attention"),
    ("torch.nn", "MultiheadAttention.forward", "torch.nn.MultiheadAttention"),
    ("torch.nn", "TransformerEncoderLayer.forward", "torch.nn.TransformerEncoderLayer"),
]
TF = [
    ("keras.layers", "MultiHeadAttention.call", "keras.layers.MultiHeadAttention"),
    ("keras.layers", "Attention.call", "keras.layers.Attention"),
    ("keras.layers", "AdditiveAttention.call", "keras.layers.AdditiveAttention"),
    ("keras.ops", "dot_product_attention", "keras.ops.dot_product_attention"),
    ("keras.src.ops.nn", "dot_product_attention", "keras.ops.dot_product_attention"),
]


def _wrap(func, shown: str):
    @functools.wraps(func)
    def traced(*args, **kwargs):
        used.add(shown)
        return func(*args, **kwargs)

    return traced


def install(framework: str) -> None:
    for module_name, path, shown in TORCH if framework == "torch" else TF:
        try:
            owner = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for p in parents:
                owner = getattr(owner, p)
            setattr(owner, attr, _wrap(getattr(owner, attr), shown))
        except (ImportError, AttributeError, TypeError):
            continue   # an API that moved is no reason to stop grading


def take() -> list[str]:
    out = sorted(used)
    used.clear()
    return out
