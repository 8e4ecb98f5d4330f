"""The chapter-06 reference solutions (the masters) against the oracle, each other, and the built-ins.

- Every function of both masters equals the NumPy oracle on random inputs with leading dimensions,
  n_q != n_k, ragged blocks, rows with no visible key, empty softmax parts.
- The oracle itself is checked against independent computations: a one-pass log-sum-exp for the
  merged statistics, chapter 02's causal_mask (bottom-right) and masked softmax for flash attention,
  the quadratic form phi(Q) phi(K)^T for linear attention, full causal attention for decoding, a
  per-head loop with chapter 02's attention for grouped-query attention.
- The masters against the built-ins, here in the tests, where they are the independent witness (the
  exercises may not call them): torch's scaled_dot_product_attention (with an explicit bottom-right
  mask, `is_causal=True` when n_q == n_k, and `enable_gqa=True`), torch.logsumexp for lse, and
  keras.ops.dot_product_attention on TensorFlow.
"""
import math
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from autograder.notebooks import load_namespace, master_path
from autograder.oracle import ch02_principles as oracle02
from autograder.oracle import ch06_efficiency as oracle

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "06_efficiency"
RTOL, ATOL = 1e-4, 2e-5


@pytest.fixture(scope="module")
def namespaces():
    return {fw: load_namespace(master_path(CHAPTER, fw)) for fw in ("torch", "tf")}


def _to(framework, x):
    if isinstance(x, tuple):
        return tuple(_to(framework, y) for y in x)
    if not isinstance(x, np.ndarray):
        return x
    return torch.from_numpy(np.array(x)) if framework == "torch" else tf.constant(x)


def _np(value):
    if isinstance(value, tuple):
        return tuple(_np(v) for v in value)
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _normal(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _close(got, want, rtol=RTOL, atol=ATOL):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            _close(g, w, rtol, atol)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _cases(rng):
    inf = np.inf
    m1, m2 = _normal(rng, 3, 5, scale=4.0), _normal(rng, 3, 5, scale=4.0)
    l1, l2 = (1 + 5 * rng.random((2, 3, 5))).astype(np.float32)
    m1[0, :2], l1[0, :2] = -inf, 0
    m2[0, 1:3], l2[0, 1:3] = -inf, 0
    qkv = lambda batch, n_q, n_k, d_k, d_v, s=1.0: (_normal(rng, *batch, n_q, d_k, scale=s),  # noqa: E731
                                                    _normal(rng, *batch, n_k, d_k, scale=s),
                                                    _normal(rng, *batch, n_k, d_v))
    mask = rng.random((2, 1, 4, 7)) < 0.5
    mask[0, 0, 2] = False
    return [
        ("merge_softmax_stats", (m1, l1, m2, l2), {}),
        ("flash_attention", qkv((2, 3), 7, 19, 8, 5), {"block_size": 4}),
        ("flash_attention", qkv((2,), 19, 19, 8, 5, 6.0), {"block_size": 5, "causal": True}),
        ("flash_attention", qkv((2,), 6, 19, 8, 5), {"block_size": 4, "causal": True}),
        ("flash_attention", qkv((), 15, 6, 4, 3), {"block_size": 4, "causal": True}),
        ("flash_attention", qkv((2,), 70, 130, 16, 16), {}),
        ("sliding_window_mask", (23, 4), {}),
        ("sliding_window_mask", (23, 4), {"causal": True}),
        ("linear_attention", qkv((2, 2), 6, 9, 5, 3, 2.0), {}),
        ("linear_attention", qkv((2,), 9, 9, 5, 3, 2.0), {"causal": True}),
        ("grouped_query_attention", (_normal(rng, 2, 6, 4, 8), _normal(rng, 2, 3, 7, 8), _normal(rng, 2, 3, 7, 5)), {}),
        ("grouped_query_attention", (_normal(rng, 2, 4, 4, 8), _normal(rng, 2, 1, 7, 8), _normal(rng, 2, 1, 7, 5)),
         {"mask": mask}),
        ("split_kv_decode", (*qkv((2, 3), 1, 11, 8, 5)[:3], 4), {}),
        ("split_kv_decode", (*qkv((), 1, 3, 4, 2, 4.0)[:3], 5), {}),
        ("paged_attention", (_normal(rng, 3, 1, 4), _normal(rng, 5, 3, 4), _normal(rng, 5, 3, 2),
                             np.array([[4, 0, -1], [1, 2, 3], [0, -1, -1]]), np.array([5, 7, 0])), {}),
        ("flash_attention_backward", _backward_case(rng, qkv((2,), 9, 13, 4, 3), causal=True), {"block_size": 4, "causal": True}),
        ("flash_attention_backward", _backward_case(rng, (_normal(rng, 3, 6, 4), _normal(rng, 8, 4), _normal(rng, 8, 2))),
         {"block_size": 3}),
    ]


def _backward_case(rng, qkv, causal=False):
    """flash_attention_backward's arguments: the inputs, the oracle's forward pass, an upstream gradient."""
    out, lse = oracle.flash_attention(*qkv, causal=causal)
    return (*qkv, out, lse, _normal(rng, *out.shape))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_masters_equal_the_oracle(namespaces, framework):
    rng = np.random.default_rng(0)
    for name, args, kwargs in _cases(rng):
        with np.errstate(all="ignore"):
            want = getattr(oracle, name)(*args, **kwargs)
        got = _np(namespaces[framework][name](*_to(framework, args), **{k: _to(framework, v) for k, v in kwargs.items()}))
        _close(got, want)


def test_torch_equals_tensorflow(namespaces):
    rng = np.random.default_rng(1)
    for name, args, kwargs in _cases(rng):
        outs = [_np(namespaces[fw][name](*_to(fw, args), **{k: _to(fw, v) for k, v in kwargs.items()}))
                for fw in ("torch", "tf")]
        _close(outs[0], outs[1])


def test_tensorflow_accepts_numpy(namespaces):
    rng = np.random.default_rng(2)
    for name, args, kwargs in _cases(rng):
        _close(_np(namespaces["tf"][name](*args, **kwargs)), _np(namespaces["tf"][name](*_to("tf", args), **kwargs)))


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_decode_over_a_sequence_is_causal_attention(namespaces, framework):
    rng = np.random.default_rng(3)
    q, k, v = _normal(rng, 2, 3, 9, 8), _normal(rng, 2, 3, 9, 8), _normal(rng, 2, 3, 9, 5)
    cache, outputs = None, []
    for t in range(9):
        step = _to(framework, (q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :]))
        out, cache = namespaces[framework]["decode_step"](*step, cache)
        outputs.append(_np(out))
        assert tuple(cache[0].shape) == (2, 3, t + 1, 8) and tuple(cache[1].shape) == (2, 3, t + 1, 5)
    _close(_np(cache), (k, v), 0, 0)                      # the cache holds the tokens, oldest first
    want, _ = oracle02.scaled_dot_product_attention(q, k, v, oracle02.causal_mask(9))
    _close(np.concatenate(outputs, -2), want.astype(np.float32))


# --- the oracle against independent computations --------------------------------------------------

def test_oracle_merge_equals_a_one_pass_logsumexp():
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((5, 12)) * 30
    scores[0, :6] = -np.inf       # an empty first part
    scores[1] = -np.inf           # two empty parts
    parts = []
    for part in (scores[:, :6], scores[:, 6:]):
        m = part.max(-1)
        with np.errstate(invalid="ignore"):
            l = np.where(np.isinf(m), 0.0, np.exp(part - np.where(np.isinf(m), 0, m)[:, None]).sum(-1))
        parts += [m, l]
    m, l = oracle.merge_softmax_stats(*parts)
    assert m[1] == -np.inf and l[1] == 0
    expected = [math.log(math.fsum(math.exp(s) for s in row if s > -np.inf)) for row in scores[[0, 2, 3, 4]]]
    rows = [0, 2, 3, 4]
    np.testing.assert_allclose(m[rows] + np.log(l[rows]), expected, rtol=1e-6)


def test_oracle_flash_equals_chapter_02_attention_with_causal_mask():
    rng = np.random.default_rng(5)
    for n_q, n_k in ((5, 9), (9, 9), (9, 4)):
        q, k, v = rng.standard_normal((2, n_q, 4)), rng.standard_normal((2, n_k, 4)), rng.standard_normal((2, n_k, 3))
        mask = oracle02.causal_mask(n_q, n_k)
        out, lse = oracle.flash_attention(q, k, v, causal=True)
        want, _ = oracle02.scaled_dot_product_attention(q, k, v, mask)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
        scores = q @ k.transpose(0, 2, 1) / 2.0
        for b in range(2):
            for i in range(n_q):
                visible = scores[b, i][mask[i]]
                expected = math.log(math.fsum(np.exp(visible))) if visible.size else -np.inf
                assert lse[b, i] == pytest.approx(expected, rel=1e-5)


def test_oracle_linear_attention_equals_the_quadratic_form():
    rng = np.random.default_rng(6)
    q, k, v = rng.standard_normal((2, 7, 4)), rng.standard_normal((2, 7, 4)), rng.standard_normal((2, 7, 3))
    phi = lambda x: np.where(x > 0, x + 1, np.exp(x))   # noqa: E731  elu(x) + 1
    a = phi(q) @ phi(k).transpose(0, 2, 1)               # (2, 7, 7): the matrix linear attention avoids
    np.testing.assert_allclose(oracle.linear_attention(q, k, v), a @ v / a.sum(-1, keepdims=True), rtol=1e-5)
    a = np.tril(a)
    np.testing.assert_allclose(oracle.linear_attention(q, k, v, causal=True), a @ v / a.sum(-1, keepdims=True),
                               rtol=1e-5)


def test_oracle_gqa_equals_per_head_attention_and_sliding_window_equals_a_band():
    rng = np.random.default_rng(7)
    q, k, v = rng.standard_normal((2, 6, 3, 4)), rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 5, 3))
    out, weights = oracle.grouped_query_attention(q, k, v)
    for h in range(6):
        want_out, want_w = oracle02.scaled_dot_product_attention(q[:, h], k[:, h // 3], v[:, h // 3])
        np.testing.assert_allclose(out[:, h], want_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(weights[:, h], want_w, rtol=1e-5, atol=1e-6)
    ones = np.ones((9, 9), bool)
    np.testing.assert_array_equal(oracle.sliding_window_mask(9, 3), np.triu(np.tril(ones, 2), -2))
    np.testing.assert_array_equal(oracle.sliding_window_mask(9, 3, causal=True), np.triu(np.tril(ones), -2))


# --- the masters against the frameworks' built-ins -------------------------------------------------

@pytest.mark.parametrize("causal, n_q, n_k", [(False, 7, 11), (True, 9, 9), (True, 5, 12), (True, 8, 3)])
def test_oracle_backward_equals_autograd_through_torch_sdpa(causal, n_q, n_k):
    """The oracle's FlashAttention-2 gradients against autograd through torch's SDPA (explicit
    bottom-right mask; rows with no visible key, whose SDPA output is NaN, are zeroed first)."""
    rng = np.random.default_rng(3)
    q, k, v = _normal(rng, 2, n_q, 4), _normal(rng, n_k, 4), _normal(rng, 2, n_k, 3)   # keys broadcast over the batch
    grad_out = _normal(rng, 2, n_q, 3)
    out, lse = oracle.flash_attention(q, k, v, causal=causal)
    want = oracle.flash_attention_backward(q, k, v, out, lse, grad_out, causal=causal)
    tq, tk, tv = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (q, k, v))
    mask = torch.from_numpy(oracle02.causal_mask(n_q, n_k)) if causal else None
    got = F.scaled_dot_product_attention(tq, tk.expand(2, n_k, 4), tv, attn_mask=mask)
    (torch.nan_to_num(got) * torch.from_numpy(grad_out).double()).sum().backward()
    for w, t in zip(want, (tq, tk, tv)):
        assert w.shape == tuple(t.shape)
        np.testing.assert_allclose(w, t.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_flash_attention_equals_torch_sdpa(namespaces):
    flash = namespaces["torch"]["flash_attention"]
    rng = np.random.default_rng(8)
    for n_q, n_k, block in ((64, 64, 16), (33, 100, 7), (100, 33, 8)):
        q, k, v = (torch.from_numpy(_normal(rng, 2, 4, n, d)) for n, d in ((n_q, 16), (n_k, 16), (n_k, 8)))
        out, lse = flash(q, k, v, block_size=block)
        _close(out.numpy(), F.scaled_dot_product_attention(q, k, v).numpy())
        _close(lse.numpy(), torch.logsumexp(q @ k.transpose(-2, -1) / 4.0, -1).numpy())
        # bottom-right causal: an explicit boolean mask (SDPA's is_causal is top-left when n_q != n_k)
        mask = torch.ones(n_q, n_k, dtype=torch.bool).tril(diagonal=n_k - n_q)
        out, lse = flash(q, k, v, block_size=block, causal=True)
        visible = mask.any(-1)
        _close(out[..., visible, :].numpy(), F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[..., visible, :].numpy())
        assert torch.all(out[..., ~visible, :] == 0) and torch.all(torch.isneginf(lse[..., ~visible]))
        if n_q == n_k:
            _close(out.numpy(), F.scaled_dot_product_attention(q, k, v, is_causal=True).numpy())


def test_gqa_equals_torch_sdpa_with_enable_gqa(namespaces):
    gqa = namespaces["torch"]["grouped_query_attention"]
    rng = np.random.default_rng(9)
    for h_q, h_kv in ((8, 2), (8, 1), (4, 4)):
        q = torch.from_numpy(_normal(rng, 2, h_q, 5, 16))
        k, v = torch.from_numpy(_normal(rng, 2, h_kv, 7, 16)), torch.from_numpy(_normal(rng, 2, h_kv, 7, 8))
        out, _ = gqa(q, k, v)
        _close(out.numpy(), F.scaled_dot_product_attention(q, k, v, enable_gqa=True).numpy())
        mask = torch.from_numpy(rng.random((2, 1, 5, 7)) < 0.7)
        mask[..., 0] = True                                   # SDPA gives NaN on fully masked rows
        out, _ = gqa(q, k, v, mask)
        _close(out.numpy(), F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).numpy())


def test_decode_and_flash_equal_keras_dot_product_attention(namespaces):
    import keras

    rng = np.random.default_rng(10)
    q, k, v = _normal(rng, 2, 9, 3, 8), _normal(rng, 2, 9, 3, 8), _normal(rng, 2, 9, 3, 8)   # keras: (B, T, H, D)
    want = keras.ops.dot_product_attention(q, k, v, is_causal=True)                          # (B, T, H, D)
    heads_first = lambda x: np.transpose(x, (0, 2, 1, 3))                                    # noqa: E731
    out, _ = namespaces["tf"]["flash_attention"](*map(heads_first, (q, k, v)), block_size=4, causal=True)
    _close(heads_first(_np(out)), _np(want))
    cache, outputs = None, []
    for t in range(9):
        step = (heads_first(q)[..., t:t + 1, :], heads_first(k)[..., t:t + 1, :], heads_first(v)[..., t:t + 1, :])
        out, cache = namespaces["tf"]["decode_step"](*step, cache)
        outputs.append(_np(out))
    _close(heads_first(np.concatenate(outputs, -2)), _np(want))


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_survives_scores_that_outgrow_the_first_blocks_maximum(namespaces, framework, causal):
    """The masters keep each row's shift at its first key block's maximum and redo a query block
    whose later scores outgrow it (exp overflows float32 above ~88). Keys from the second block on
    are 60x larger here, so later scores exceed the first block's maxima by hundreds: the case is
    checked to overflow a fixed shift, then the masters are checked against the oracle."""
    rng = np.random.default_rng(11)
    block, n, d = 5, 23, 16
    q, k, v = _normal(rng, 2, n, d), _normal(rng, 2, n, d), _normal(rng, 2, n, 4)
    k[:, block:] *= 60
    scores = q.astype(np.float64) @ k.astype(np.float64).transpose(0, 2, 1) / math.sqrt(d)
    if causal:
        scores = np.where(np.tri(n, dtype=bool), scores, -np.inf)
    assert np.max(scores[:, :, block:].max(-1) - scores[:, :, :block].max(-1)) > 2 * 88   # a fixed shift overflows
    got = _np(namespaces[framework]["flash_attention"](*_to(framework, (q, k, v)), block_size=block, causal=causal))
    want = oracle.flash_attention(q, k, v, causal=causal)
    assert np.all(np.isfinite(got[0])) and np.all(np.isfinite(got[1])), "overflowed: inf or NaN in the output"
    _close(got, tuple(np.asarray(w, np.float32) for w in want), rtol=1e-4, atol=1e-4)
