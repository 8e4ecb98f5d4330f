"""Modules on the student's side: the grader constructs them, loads its weights into the attributes
the contract names, and compares outputs (what chapter 04's checks rely on)."""
from __future__ import annotations

import numpy as np
import pytest

from autograder.checks.api import CheckFailure, assert_close
from autograder.checks.runner import LocalBackend, StudentProxy
from autograder.session import Runner
from autograder.workers import Limits, Sandbox

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sandbox")]

TOY = {
    "torch": """
import torch
from torch import nn

class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.inner = nn.Module()
        self.inner.proj = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=1e-5)

    def forward(self, x):
        return self.norm(torch.relu(self.inner.proj(x)))
""",
    "tf": """
import tensorflow as tf
import keras

class Inner(keras.layers.Layer):
    def __init__(self, d):
        super().__init__()
        self.proj = keras.layers.Dense(d)

class Block(keras.layers.Layer):
    def __init__(self, d):
        super().__init__()
        self.inner = Inner(d)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5)

    def call(self, x):
        return self.norm(tf.nn.relu(self.inner.proj(x)))
""",
}


def expected(x, kernel, bias, scale, offset):
    h = np.maximum(x.astype(np.float64) @ kernel + bias, 0)
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
    return (h * scale + offset).astype(np.float32)


def exercise(student):
    rng = np.random.default_rng(0)
    d = 6
    weights = {"inner.proj": {"kernel": rng.standard_normal((d, d)).astype(np.float32),
                              "bias": rng.standard_normal(d).astype(np.float32)},
               "norm": {"scale": rng.standard_normal(d).astype(np.float32),
                        "offset": rng.standard_normal(d).astype(np.float32)}}
    x = rng.standard_normal((2, 3, d)).astype(np.float32)
    block = student.new("Block", d)
    block.load_weights(weights)
    want = expected(x, weights["inner.proj"]["kernel"], weights["inner.proj"]["bias"],
                    weights["norm"]["scale"], weights["norm"]["offset"])
    assert_close(block(x), want, atol=1e-4)
    with pytest.raises(CheckFailure, match="has no attribute 'w_q'"):
        block.load_weights({"w_q": {"kernel": weights["inner.proj"]["kernel"]}})
    with pytest.raises(CheckFailure, match="is not defined"):
        student.new("MultiHeadAttention", d, 2)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_in_the_students_kernel(framework):
    namespace: dict = {}
    exec(TOY[framework], namespace)
    exercise(StudentProxy(LocalBackend(namespace, framework), framework, lambda names: None))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_in_the_sandbox(framework):
    box = Sandbox(framework, Limits(call_seconds=20))
    runner = Runner(box, [(0, TOY[framework])])
    try:
        assert runner.run_cells()[0].ok
        exercise(StudentProxy(runner, framework, lambda names: None))
    finally:
        runner.close()
        box.close()
