"""Modules on the student's side: the grader constructs them, loads its weights into the attributes
the contract names, and compares outputs (what chapter 04's checks rely on).

What a student reads when their module does not fit is asserted word for word, the same in their
kernel (`check()`) and in the sandbox: a missing attribute, a parameter of the wrong shape, a bias
the layer lacks or should not have (bias=False), a NumPy array instead of a tensor, a bare output
instead of (output, weights)."""
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


# A multi-head attention module as the contract describes it (04_code), and the ways a student's
# can differ from it (VARIANTS, the same source in both frameworks).
VARIANTS = """
class NamedQuery(MultiHeadAttention):
    names = ("query", "w_k", "w_v", "w_o")

class WideQuery(MultiHeadAttention):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__(d_model, num_heads, bias)
        self.w_q = linear(d_model, 2 * d_model, bias)

class AlwaysBias(MultiHeadAttention):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__(d_model, num_heads)

class ReturnsNumpy(MultiHeadAttention):
    def attend(self, *args, **kwargs):
        output, weights = super().attend(*args, **kwargs)
        return to_numpy(output), weights

class OutputOnly(MultiHeadAttention):
    def attend(self, *args, **kwargs):
        return super().attend(*args, **kwargs)[0]
"""
MHA = {
    "torch": """
import torch
from torch import nn

def linear(d_in, d_out, bias):
    return nn.Linear(d_in, d_out, bias=bias)

def to_numpy(x):
    return x.detach().numpy()

class MultiHeadAttention(nn.Module):
    names = ("w_q", "w_k", "w_v", "w_o")

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        for name in self.names:
            setattr(self, name, linear(d_model, d_model, bias))

    def forward(self, query, key, value, mask=None):
        return self.attend(query, key, value)

    def attend(self, query, key, value):
        w_q, w_k, w_v, w_o = (getattr(self, name) for name in self.names)
        batch, n_q, d_model = query.shape
        d = d_model // self.num_heads
        def split(x):   # (B, T, D) -> (B, H, T, d)
            return x.reshape(batch, -1, self.num_heads, d).transpose(1, 2)
        q, k, v = split(w_q(query)), split(w_k(key)), split(w_v(value))
        weights = torch.softmax(q @ k.transpose(-2, -1) / d ** 0.5, dim=-1)   # (B, H, T_q, T_k)
        output = (weights @ v).transpose(1, 2).reshape(batch, n_q, d_model)  # (B, T_q, D)
        return w_o(output), weights
""" + VARIANTS,
    "tf": """
import tensorflow as tf
import keras

def linear(d_in, d_out, bias):   # Keras infers d_in on first use
    return keras.layers.Dense(d_out, use_bias=bias)

def to_numpy(x):
    return x.numpy()

class MultiHeadAttention(keras.layers.Layer):
    names = ("w_q", "w_k", "w_v", "w_o")

    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        for name in self.names:
            setattr(self, name, linear(d_model, d_model, bias))

    def call(self, query, key, value, mask=None):
        return self.attend(query, key, value)

    def attend(self, query, key, value):
        w_q, w_k, w_v, w_o = (getattr(self, name) for name in self.names)
        batch, n_q, d_model = query.shape
        d = d_model // self.num_heads
        def split(x):   # (B, T, D) -> (B, H, T, d)
            return tf.transpose(tf.reshape(x, (batch, -1, self.num_heads, d)), (0, 2, 1, 3))
        q, k, v = split(w_q(query)), split(w_k(key)), split(w_v(value))
        weights = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / d ** 0.5, axis=-1)   # (B, H, T_q, T_k)
        output = tf.reshape(tf.transpose(tf.matmul(weights, v), (0, 2, 1, 3)), (batch, n_q, d_model))
        return w_o(output), weights

class LazyLayers(MultiHeadAttention):   # Keras style that the grader cannot load into
    def __init__(self, d_model, num_heads, bias=True):
        keras.layers.Layer.__init__(self)
        self.num_heads, self.d_model = num_heads, d_model

    def build(self, input_shape):
        for name in self.names:
            setattr(self, name, keras.layers.Dense(self.d_model))
""" + VARIANTS,
}
LOAD_FAILED = "loading the weights into {} raised an error:\n"
TENSOR = {"torch": "torch.Tensor", "tf": "tf.Tensor"}
NO_BIAS = {"torch": "bias=False", "tf": "use_bias=False"}


def mha_weights(rng, d: int, bias: bool) -> dict:
    return {name: {"kernel": rng.standard_normal((d, d)).astype(np.float32),
                   **({"bias": rng.standard_normal(d).astype(np.float32)} if bias else {})}
            for name in ("w_q", "w_k", "w_v", "w_o")}


def mha_expected(query, key, value, weights: dict, num_heads: int):
    """(output, weights) in NumPy, float64 inside."""
    def project(x, name):
        return x.astype(np.float64) @ weights[name]["kernel"] + weights[name].get("bias", 0)

    batch, n_q, d_model = query.shape
    d = d_model // num_heads

    def split(x):   # (B, T, D) -> (B, H, T, d)
        return x.reshape(batch, -1, num_heads, d).transpose(0, 2, 1, 3)

    q, k, v = split(project(query, "w_q")), split(project(key, "w_k")), split(project(value, "w_v"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)   # (B, H, T_q, T_k)
    attention = np.exp(scores - scores.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    output = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, n_q, d_model)
    return project(output, "w_o").astype(np.float32), attention.astype(np.float32)


def mha_exercise(student, framework: str):
    rng = np.random.default_rng(1)
    d, heads = 16, 4
    query = rng.standard_normal((2, 3, d)).astype(np.float32)   # (B, T_q, D)
    key = rng.standard_normal((2, 5, d)).astype(np.float32)     # (B, T_k, D), also the values

    def failure(name, weights, *args, **kwargs):
        layer = student.new(name, d, heads, *args, **kwargs)
        with pytest.raises(CheckFailure) as raised:
            layer.load_weights(weights)
        return str(raised.value).removeprefix(LOAD_FAILED.format(name))

    for bias in (True, False):   # loads and matches, with and without biases
        weights = mha_weights(rng, d, bias)
        layer = student.new("MultiHeadAttention", d, heads, bias=bias)
        layer.load_weights(weights)
        assert_close(layer(query, key, key), mha_expected(query, key, key, weights, heads),
                     what=("output", "weights"), atol=1e-4)

    with_bias, without_bias = mha_weights(rng, d, True), mha_weights(rng, d, False)
    assert failure("NamedQuery", with_bias) == ("NamedQuery has no attribute w_q "
                                                "(the contract names w_q, w_k, w_v, w_o)")
    assert failure("WideQuery", with_bias) == ("w_q.kernel: expected shape (16, 16), your layer has (16, 32)\n"
                                               "w_q.bias: expected shape (16,), your layer has (32,)")
    assert failure("MultiHeadAttention", with_bias, bias=False) == "\n".join(
        f"{name}.bias: the grader's weights have a bias, your layer has none (made with {NO_BIAS[framework]}?)"
        for name in ("w_q", "w_k", "w_v", "w_o"))
    assert failure("AlwaysBias", without_bias, bias=False) == "\n".join(
        f"{name}.bias: your layer has a bias, the grader's weights have none "
        f"(was {NO_BIAS[framework]} passed on to it?)"
        for name in ("w_q", "w_k", "w_v", "w_o"))
    odd = {"w_q": {"kernel": with_bias["w_q"]["kernel"], "wrong": with_bias["w_q"]["bias"]}}
    assert failure("MultiHeadAttention", odd) == ("the grader sent an unknown kind of weight 'w_q.wrong'; "
                                                  "tell your instructor")
    if framework == "tf":
        assert failure("LazyLayers", with_bias) == (
            "LazyLayers has no attributes w_q, w_k, w_v, w_o (the contract names w_q, w_k, w_v, w_o); create its "
            "sublayers in __init__, not in build(): the grader loads weights before the first call")

    for name, message in [
        ("ReturnsNumpy", f"ReturnsNumpy returned a numpy.ndarray; the exercise asks for a {TENSOR[framework]}.\n"
                         "(the type it returned: numpy.ndarray)"),
        ("OutputOnly", "expected a tuple (output, weights), got a single value."),
    ]:
        layer = student.new(name, d, heads)
        layer.load_weights(with_bias)
        with pytest.raises(CheckFailure) as raised:
            assert_close(layer(query, key, key), mha_expected(query, key, key, with_bias, heads),
                         what=("output", "weights"), atol=1e-4)
        assert str(raised.value) == message


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
    with pytest.raises(CheckFailure) as failure:
        block.load_weights({"w_q": {"kernel": weights["inner.proj"]["kernel"]}})
    assert str(failure.value) == LOAD_FAILED.format("Block") + "Block has no attribute w_q (the contract names w_q)"
    with pytest.raises(CheckFailure) as failure:   # one level down: the names the contract gives there
        block.load_weights({"inner.proj": weights["inner.proj"], "inner.out": weights["inner.proj"]})
    assert str(failure.value) == (LOAD_FAILED.format("Block")
                                  + "Block.inner has no attribute out (the contract names proj, out)")
    with pytest.raises(CheckFailure, match="is not defined"):
        student.new("TransformerEncoderBlock", d, 2, 8)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_in_the_students_kernel(framework):
    namespace: dict = {}
    exec(TOY[framework], namespace)
    exec(MHA[framework], namespace)
    student = StudentProxy(LocalBackend(namespace, framework), framework, lambda names: None)
    exercise(student)
    mha_exercise(student, framework)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_in_the_sandbox(framework):
    box = Sandbox(framework, Limits(call_seconds=20))
    runner = Runner(box, [(0, TOY[framework]), (1, MHA[framework])])
    try:
        assert all(outcome.ok for outcome in runner.run_cells())
        student = StudentProxy(runner, framework, lambda names: None)
        exercise(student)
        mha_exercise(student, framework)
    finally:
        runner.close()
        box.close()
