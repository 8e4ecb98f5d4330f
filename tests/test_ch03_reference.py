"""The chapter-03 reference solutions (the masters) against the oracle, each other, and the built-ins.

- Every function of both masters equals the NumPy oracle on random inputs with leading batch
  dimensions, -inf entries, values of +-1e4 and zero weights.
- The oracle itself is checked against independent computations: math.fsum for log-sum-exp, finite
  differences of the softmax for its Jacobian, finite differences of attention for its gradients,
  math.sin/cos for the encoding, a triple loop counting multiply-adds for the cost.
- attention_backward equals torch.autograd (through torch's own scaled_dot_product_attention) and
  tf.GradientTape (through keras.ops.dot_product_attention): here, in the tests, where the built-ins
  are the independent witness; the exercise itself may use neither.
- logsumexp and attention_entropy equal torch.logsumexp / tf.reduce_logsumexp and -xlogy sums.
"""
import itertools
import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

from autograder.notebooks import load_namespace, master_path
from autograder.oracle import ch03_math as oracle

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "03_math"
RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def namespaces():
    return {fw: load_namespace(master_path(CHAPTER, fw)) for fw in ("torch", "tf")}


def _to(framework, x):
    return torch.from_numpy(np.array(x)) if framework == "torch" else tf.constant(x)


def _np(value):
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _probabilities(rng, *shape, zeros=False):
    raw = rng.random(shape) + 0.05
    if zeros:
        raw = np.where(rng.random(shape) < 0.4, 0.0, raw)
        raw[..., 0] += 0.3
    return (raw / raw.sum(axis=-1, keepdims=True)).astype(np.float32)


def _lse_input(rng):
    x = _normal(rng, 3, 4, 6) * 5
    x[rng.random(x.shape) < 0.3] = -np.inf
    x[0, 0] = -np.inf
    x[1] += 1e4
    x[2] -= 1e4
    return x


def _cases(rng):
    """(exercise, args) pairs, NumPy arguments."""
    return [
        ("logsumexp", (_lse_input(rng),), {}),
        ("logsumexp", (_normal(rng, 2, 5, 3),), {"axis": 1}),
        ("softmax_jacobian", (_probabilities(rng, 2, 3, 5, zeros=True),), {}),
        ("attention_backward", (_normal(rng, 2, 3, 4, 8), _normal(rng, 2, 3, 6, 8), _normal(rng, 2, 3, 6, 5),
                                _normal(rng, 2, 3, 4, 5)), {}),
        ("sinusoidal_positional_encoding", (37, 24), {}),
        ("attention_cost", (128, 64, 32, 48, 4), {}),
        ("attention_entropy", (_probabilities(rng, 2, 3, 4, 7, zeros=True),), {}),
    ]


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("seed", [0, 1])
def test_masters_equal_the_oracle(namespaces, framework, seed):
    for name, args, kwargs in _cases(np.random.default_rng(seed)):
        conv = tuple(_to(framework, a) if isinstance(a, np.ndarray) else a for a in args)
        got = namespaces[framework][name](*conv, **kwargs)
        want = getattr(oracle, name)(*args, **kwargs)
        if isinstance(want, dict):
            assert got == want and all(type(v) is int for v in got.values()), name
            continue
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            g = _np(g)
            assert g.dtype == np.float32 and g.shape == w.shape, name
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5, err_msg=name)


def test_torch_and_tf_masters_agree(namespaces):
    for name, args, kwargs in _cases(np.random.default_rng(5)):
        outs = []
        for fw in ("torch", "tf"):
            conv = tuple(_to(fw, a) if isinstance(a, np.ndarray) else a for a in args)
            got = namespaces[fw][name](*conv, **kwargs)
            outs.append(got if isinstance(got, dict) else [_np(g) for g in (got if isinstance(got, tuple) else (got,))])
        if isinstance(outs[0], dict):
            assert outs[0] == outs[1]
        else:
            for a, b in zip(*outs):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)


def test_tf_master_accepts_numpy(namespaces):
    rng = np.random.default_rng(2)
    for name, args, kwargs in _cases(rng):
        got = namespaces["tf"][name](*args, **kwargs)
        want = getattr(oracle, name)(*args, **kwargs)
        if not isinstance(want, dict):
            for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
                np.testing.assert_allclose(_np(g), w, rtol=1e-4, atol=2e-5, err_msg=name)


# --- the oracle against independent computations ---------------------------------------------------

def test_oracle_logsumexp_against_fsum():
    x = _lse_input(np.random.default_rng(3)).astype(np.float64)
    got = oracle.logsumexp(x)
    for index in np.ndindex(x.shape[:-1]):
        row = x[index]
        finite = row[np.isfinite(row)]
        if not len(finite):
            assert got[index] == -np.inf
            continue
        top = finite.max()
        want = top + math.log(math.fsum(math.exp(v - top) for v in finite))
        assert got[index] == pytest.approx(want, rel=1e-6)


def test_oracle_softmax_jacobian_against_finite_differences():
    rng = np.random.default_rng(4)
    scores = rng.standard_normal(6)

    def softmax(s):
        e = np.exp(s - s.max())
        return e / e.sum()

    eps = 1e-6
    numeric = np.stack([(softmax(scores + eps * np.eye(6)[j]) - softmax(scores - eps * np.eye(6)[j])) / (2 * eps)
                        for j in range(6)], axis=-1)                       # [i, j] = d p_i / d s_j
    np.testing.assert_allclose(oracle.softmax_jacobian(softmax(scores)), numeric, atol=1e-6)


def test_oracle_backward_against_its_finite_differences():
    rng = np.random.default_rng(6)
    args = (_normal(rng, 2, 3, 4), _normal(rng, 2, 5, 4), _normal(rng, 2, 5, 3), _normal(rng, 2, 3, 3))
    for got, want in zip(oracle.attention_backward(*args), oracle.finite_difference_backward(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_oracle_positional_encoding_against_math():
    pe = oracle.sinusoidal_positional_encoding(11, 10)
    for p, column in itertools.product(range(11), range(10)):
        i = column // 2
        angle = p / 10000 ** (2 * i / 10)
        want = math.sin(angle) if column % 2 == 0 else math.cos(angle)
        assert pe[p, column] == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError):
        oracle.sinusoidal_positional_encoding(3, 5)


def test_oracle_cost_against_counting():
    n_q, n_k, d_k, d_v, h = 3, 4, 5, 2, 2
    multiply_adds = sum(1 for _ in itertools.product(range(h), range(n_q), range(n_k), range(d_k)))
    multiply_adds += sum(1 for _ in itertools.product(range(h), range(n_q), range(n_k), range(d_v)))
    assert oracle.attention_cost(n_q, n_k, d_k, d_v, h) == {"flops": 2 * multiply_adds, "score_elements": 24}


def test_oracle_entropy_known_values():
    np.testing.assert_allclose(oracle.attention_entropy(np.eye(4)), 0)
    np.testing.assert_allclose(oracle.attention_entropy(np.full((2, 8), 1 / 8)), math.log(8), rtol=1e-6)
    assert not np.signbit(oracle.attention_entropy(np.eye(3))).any()


# --- the masters against the frameworks' built-ins (tests only) ------------------------------------

def test_attention_backward_equals_torch_autograd(namespaces):
    rng = np.random.default_rng(8)
    arrays = (_normal(rng, 2, 3, 4, 8), _normal(rng, 2, 3, 6, 8), _normal(rng, 2, 3, 6, 5))
    grad = _normal(rng, 2, 3, 4, 5)
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = torch.nn.functional.scaled_dot_product_attention(*leaves)
    out.backward(torch.from_numpy(grad))
    got = namespaces["torch"]["attention_backward"](*map(torch.from_numpy, arrays), torch.from_numpy(grad))
    for g, leaf in zip(got, leaves):
        np.testing.assert_allclose(g.numpy(), leaf.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_attention_backward_equals_tf_gradient_tape(namespaces):
    import keras

    rng = np.random.default_rng(9)
    arrays = [tf.constant(a) for a in (_normal(rng, 2, 4, 8), _normal(rng, 2, 6, 8), _normal(rng, 2, 6, 5))]
    grad = tf.constant(_normal(rng, 2, 4, 5))
    with tf.GradientTape() as tape:
        tape.watch(arrays)
        # keras.ops.dot_product_attention takes (batch, n, heads, d): one head here
        out = keras.ops.dot_product_attention(*(a[:, :, None, :] for a in arrays))[:, :, 0, :]
    want = tape.gradient(out, arrays, output_gradients=grad)
    got = namespaces["tf"]["attention_backward"](*arrays, grad)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-5)


def test_logsumexp_and_entropy_equal_the_builtins(namespaces):
    rng = np.random.default_rng(10)
    x = _lse_input(rng)
    np.testing.assert_allclose(namespaces["torch"]["logsumexp"](torch.from_numpy(x)).numpy(),
                               torch.logsumexp(torch.from_numpy(x), dim=-1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(namespaces["tf"]["logsumexp"](tf.constant(x)).numpy(),
                               tf.reduce_logsumexp(tf.constant(x), axis=-1).numpy(), rtol=1e-6)
    w = _probabilities(rng, 3, 4, 6, zeros=True)
    np.testing.assert_allclose(namespaces["torch"]["attention_entropy"](torch.from_numpy(w)).numpy(),
                               -torch.special.xlogy(torch.from_numpy(w), torch.from_numpy(w)).sum(-1).numpy(),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(namespaces["tf"]["attention_entropy"](tf.constant(w)).numpy(),
                               -tf.reduce_sum(tf.math.xlogy(w, w), axis=-1).numpy(), rtol=1e-6, atol=1e-7)


def test_softmax_jacobian_equals_autograd(namespaces):
    scores = torch.randn(5, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    want = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, -1), scores)
    got = namespaces["torch"]["softmax_jacobian"](torch.softmax(scores, -1))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


def test_positional_encoding_rejects_odd_d_model(namespaces):
    for fw in ("torch", "tf"):
        with pytest.raises(ValueError):
            namespaces[fw]["sinusoidal_positional_encoding"](4, 7)
