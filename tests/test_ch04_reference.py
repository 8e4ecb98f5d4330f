"""The chapter-04 reference solutions (the masters) against the oracle, each other, and the built-ins.

- The oracle against an independent NumPy computation: one head at a time with explicit loops over
  batch and query, LayerNorm from its definition with math.fsum-free float64 sums.
- The oracle, the PyTorch master and the TensorFlow master against the frameworks' own layers, with
  the same weights copied in: `torch.nn.MultiheadAttention(batch_first=True,
  average_attn_weights=False)` (packed `in_proj_weight`, masks inverted), `keras.layers.
  MultiHeadAttention` (per-head EinsumDense kernels), `torch.nn.TransformerEncoderLayer` and
  `torch.nn.TransformerDecoderLayer` (batch_first, dropout 0, norm_first both ways).
- The PyTorch master against the TensorFlow master, through the same weights.
- The masters against the oracle on inputs with leading dimensions, masks and fully masked rows.
Here, in the tests, the built-ins are the independent witness; the exercises may use none of them.
"""
import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

from autograder.notebooks import load_namespace, master_path
from autograder.oracle import ch04_code as oracle
from autograder.sandbox import weights as loader

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "04_code"
ATOL, RTOL = 2e-5, 1e-4
D, H, D_FF = 16, 4, 24


@pytest.fixture(scope="module")
def namespaces():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {fw: load_namespace(master_path(CHAPTER, fw)) for fw in ("torch", "tf")}


def _normal(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _linear(rng, d_in, d_out, bias=True):
    params = {"kernel": _normal(rng, d_in, d_out, scale=1.5 / np.sqrt(d_in))}
    if bias:
        params["bias"] = _normal(rng, d_out, scale=0.3)
    return params


def _mha(rng, d=D, bias=True):
    return {name: _linear(rng, d, d, bias) for name in ("w_q", "w_k", "w_v", "w_o")}


def _norm(rng, d=D):
    return {"scale": 1 + _normal(rng, d, scale=0.3), "offset": _normal(rng, d, scale=0.2)}


def _encoder(rng):
    return {"attention": _mha(rng), "ffn_in": _linear(rng, D, D_FF), "ffn_out": _linear(rng, D_FF, D),
            "norm1": _norm(rng), "norm2": _norm(rng)}


def _decoder(rng):
    return {"self_attention": _mha(rng), "cross_attention": _mha(rng), "ffn_in": _linear(rng, D, D_FF),
            "ffn_out": _linear(rng, D_FF, D), "norm1": _norm(rng), "norm2": _norm(rng), "norm3": _norm(rng)}


def _flat(nested, prefix=""):
    flat = {}
    for name, value in nested.items():
        if all(isinstance(v, dict) for v in value.values()):
            for part, array in _flat(value, f"{prefix}{name}.").items():
                flat[part] = array
        else:
            for part, array in value.items():
                flat[f"{prefix}{name}.{part}"] = array
    return flat


def _oracle_module(name, weights, *args, **kwargs):
    """The oracle's reference of a module, as a function of the inputs."""
    return lambda *inputs, **call_kwargs: getattr(oracle, name)(weights, args, kwargs, *inputs, **call_kwargs)


def _master_module(namespaces, framework, name, weights, *args, **kwargs):
    module = namespaces[framework][name](*args, **kwargs)
    loader.load(module, _flat(weights), framework)
    return module


def _to(framework, x):
    return torch.from_numpy(np.array(x)) if framework == "torch" else tf.constant(x)


def _np(value):
    if isinstance(value, tuple):
        return tuple(_np(v) for v in value)
    return np.asarray(value.detach().numpy() if hasattr(value, "detach") else value.numpy())


def _close(got, want, atol=ATOL):
    if isinstance(want, tuple):
        for g, w in zip(got, want):
            _close(g, w, atol)
        return
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, atol=atol, rtol=RTOL)


# --- the built-ins, with the course's weights copied in ---------------------------------------------

def torch_mha(weights, d=D, heads=H):
    """nn.MultiheadAttention: in_proj_weight packs (W_q^T; W_k^T; W_v^T) as (3D, D); out_proj is a Linear."""
    layer = torch.nn.MultiheadAttention(d, heads, batch_first=True, dropout=0.0)
    _copy_torch_mha(layer, weights)
    return layer.eval()


def _copy_torch_mha(layer, weights):
    with torch.no_grad():
        layer.in_proj_weight.copy_(torch.from_numpy(np.concatenate([weights[n]["kernel"].T for n in ("w_q", "w_k", "w_v")])))
        layer.in_proj_bias.copy_(torch.from_numpy(np.concatenate([weights[n]["bias"] for n in ("w_q", "w_k", "w_v")])))
        layer.out_proj.weight.copy_(torch.from_numpy(weights["w_o"]["kernel"].T))
        layer.out_proj.bias.copy_(torch.from_numpy(weights["w_o"]["bias"]))


def keras_mha(weights, d=D, heads=H):
    """keras.layers.MultiHeadAttention: per-head EinsumDense kernels (D, H, d), biases (H, d); output (H, d, D)."""
    layer = keras.layers.MultiHeadAttention(heads, d // heads)
    x = np.zeros((1, 1, d), np.float32)
    layer(x, x)   # builds the variables
    per_head = []
    for name in ("w_q", "w_k", "w_v"):
        per_head += [weights[name]["kernel"].reshape(d, heads, d // heads), weights[name]["bias"].reshape(heads, d // heads)]
    layer.set_weights(per_head + [weights["w_o"]["kernel"].reshape(heads, d // heads, d), weights["w_o"]["bias"]])
    return layer


def _copy_torch_norm(norm, params):
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(params["scale"]))
        norm.bias.copy_(torch.from_numpy(params["offset"]))


def _copy_torch_ffn(layer, weights):
    with torch.no_grad():
        for name, linear in (("ffn_in", layer.linear1), ("ffn_out", layer.linear2)):
            linear.weight.copy_(torch.from_numpy(weights[name]["kernel"].T))
            linear.bias.copy_(torch.from_numpy(weights[name]["bias"]))


def torch_encoder(weights, norm_first):
    layer = torch.nn.TransformerEncoderLayer(D, H, D_FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    _copy_torch_mha(layer.self_attn, weights["attention"])
    _copy_torch_ffn(layer, weights)
    _copy_torch_norm(layer.norm1, weights["norm1"])
    _copy_torch_norm(layer.norm2, weights["norm2"])
    return layer.eval()


def torch_decoder(weights, norm_first):
    layer = torch.nn.TransformerDecoderLayer(D, H, D_FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    _copy_torch_mha(layer.self_attn, weights["self_attention"])
    _copy_torch_mha(layer.multihead_attn, weights["cross_attention"])
    _copy_torch_ffn(layer, weights)
    for i in (1, 2, 3):
        _copy_torch_norm(getattr(layer, f"norm{i}"), weights[f"norm{i}"])
    return layer.eval()


# --- the oracle against an independent computation -------------------------------------------------

def _loop_mha(query, key, value, weights, heads, mask=None):
    """One batch item, one head, one query at a time, float64."""
    def project(x, name):
        return x.astype(np.float64) @ weights[name]["kernel"] + weights[name].get("bias", 0.0)

    q, k, v = project(query, "w_q"), project(key, "w_k"), project(value, "w_v")
    batch, n_q, d_model = q.shape
    n_k, d = k.shape[1], d_model // heads
    allowed = np.ones((batch, n_q, n_k), bool) if mask is None else np.broadcast_to(mask, (batch, n_q, n_k))
    concat = np.zeros((batch, n_q, d_model))
    probabilities = np.zeros((batch, heads, n_q, n_k))
    for b in range(batch):
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            for i in range(n_q):
                keep = allowed[b, i]
                if not keep.any():
                    continue
                scores = np.array([q[b, i, cols] @ k[b, j, cols] / np.sqrt(d) for j in range(n_k)])
                e = np.where(keep, np.exp(scores - scores[keep].max()), 0.0)
                probabilities[b, h, i] = e / e.sum()
                concat[b, i, cols] = probabilities[b, h, i] @ v[b, :, cols]
    return project(concat, "w_o"), probabilities


def test_oracle_split_heads_by_hand():
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    # head 0 takes features 0, 1 of each step; head 1 features 2, 3
    np.testing.assert_array_equal(oracle.split_heads(x, 2), [[[[0, 1], [4, 5]], [[2, 3], [6, 7]]]])
    np.testing.assert_array_equal(oracle.merge_heads(oracle.split_heads(x, 2)), x)


def test_oracle_mha_equals_a_loop_over_batch_heads_and_queries():
    rng = np.random.default_rng(0)
    weights = _mha(rng, 12)
    query, key, value = _normal(rng, 2, 3, 12), _normal(rng, 2, 5, 12), _normal(rng, 2, 5, 12)
    mask = rng.random((2, 3, 5)) < 0.6
    mask[0, 1] = False
    for m in (None, mask):
        got = _oracle_module("MultiHeadAttention", weights, 12, 3)(query, key, value, mask=m)
        want = _loop_mha(query, key, value, weights, 3, m)
        _close(got, tuple(w.astype(np.float32) for w in want), atol=1e-5)


def test_oracle_additive_equals_a_double_loop():
    rng = np.random.default_rng(1)
    weights = {"W_q": _linear(rng, 3, 5, False), "W_k": _linear(rng, 4, 5, False),
               "w_v": {"kernel": _normal(rng, 5, 1)}}
    queries, keys, values = _normal(rng, 2, 3, 3), _normal(rng, 2, 6, 4), _normal(rng, 2, 6, 2)
    out, weights_got = _oracle_module("AdditiveAttention", weights, 3, 4, 5)(queries, keys, values)
    for b in range(2):
        for i in range(3):
            scores = np.array([weights["w_v"]["kernel"][:, 0] @ np.tanh(queries[b, i] @ weights["W_q"]["kernel"]
                                                                         + keys[b, j] @ weights["W_k"]["kernel"])
                               for j in range(6)])
            p = np.exp(scores - scores.max())
            p /= p.sum()
            np.testing.assert_allclose(weights_got[b, i], p, atol=1e-6)
            np.testing.assert_allclose(out[b, i], p @ values[b], atol=1e-6)


def test_oracle_layer_norm_from_its_definition():
    rng = np.random.default_rng(2)
    params = _norm(rng, 6)
    x = _normal(rng, 3, 6, scale=0.01)
    norm = oracle._LayerNorm(6)
    norm.load_weights(params)
    for row, got in zip(x.astype(np.float64), norm(x.astype(np.float64))):
        mean = sum(row) / 6
        var = sum((v - mean) ** 2 for v in row) / 6                 # biased, as both frameworks
        np.testing.assert_allclose(got, [(v - mean) / np.sqrt(var + 1e-5) * s + o
                                         for v, s, o in zip(row, params["scale"], params["offset"])], rtol=1e-12)


# --- against the built-ins ---------------------------------------------------------------------------

def _mha_inputs(rng):
    query, key, value = _normal(rng, 2, 3, D), _normal(rng, 2, 5, D), _normal(rng, 2, 5, D)
    mask = np.tril(np.ones((3, 5), bool), k=2)        # (T_q, T_k), bottom-right causal: no empty row
    return query, key, value, mask


def test_oracle_and_masters_equal_torch_multihead_attention(namespaces):
    rng = np.random.default_rng(3)
    weights = _mha(rng)
    query, key, value, mask = _mha_inputs(rng)
    builtin = torch_mha(weights)
    for m in (None, mask):
        with torch.no_grad():   # nn.MultiheadAttention: True = masked out
            want = _np(builtin(*map(torch.from_numpy, (query, key, value)), need_weights=True,
                               attn_mask=None if m is None else torch.from_numpy(~m), average_attn_weights=False))
        _close(_oracle_module("MultiHeadAttention", weights, D, H)(query, key, value, mask=m), want)
        for fw in ("torch", "tf"):
            module = _master_module(namespaces, fw, "MultiHeadAttention", weights, D, H)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = module(*(_to(fw, a) for a in (query, key, value)), mask=None if m is None else _to(fw, m))
            _close(_np(got), want)


def test_torch_multihead_attention_key_padding_mask_is_the_inverse_of_ours(namespaces):
    rng = np.random.default_rng(4)
    weights = _mha(rng)
    query, key, value, _ = _mha_inputs(rng)
    lengths = np.array([5, 2])
    ours = np.arange(5)[None, None, :] < lengths[:, None, None]            # (B, 1, T_k): True = may attend
    with torch.no_grad():
        want = _np(torch_mha(weights)(*map(torch.from_numpy, (query, key, value)),
                                      key_padding_mask=torch.from_numpy(~ours[:, 0]), average_attn_weights=False))
    module = _master_module(namespaces, "torch", "MultiHeadAttention", weights, D, H)
    _close(_np(module(*map(torch.from_numpy, (query, key, value)), mask=torch.from_numpy(ours))), want)


def test_oracle_and_masters_equal_keras_multihead_attention(namespaces):
    rng = np.random.default_rng(5)
    weights = _mha(rng)
    query, key, value, mask = _mha_inputs(rng)
    builtin = keras_mha(weights)
    for m in (None, np.broadcast_to(mask, (2, 3, 5))):
        # Keras: call(query, value, key); attention_mask True = may attend, as ours
        out, scores = builtin(query, value, key, attention_mask=m, return_attention_scores=True)
        want = (_np(out), _np(scores))
        _close(_oracle_module("MultiHeadAttention", weights, D, H)(query, key, value, mask=m), want)
        for fw in ("torch", "tf"):
            module = _master_module(namespaces, fw, "MultiHeadAttention", weights, D, H)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = module(*(_to(fw, a) for a in (query, key, value)), mask=None if m is None else _to(fw, np.array(m)))
            _close(_np(got), want)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_equals_torch_transformer_encoder_layer(namespaces, norm_first):
    rng = np.random.default_rng(6)
    weights = _encoder(rng)
    x = _normal(rng, 3, 6, D)
    lengths = np.array([6, 4, 1])
    padding = np.arange(6)[None, None, :] < lengths[:, None, None]          # (B, 1, T)
    causal = np.tril(np.ones((6, 6), bool))
    builtin = torch_encoder(weights, norm_first)
    cases = [(None, {}), (causal, {"src_mask": torch.from_numpy(~causal)}),
             (padding, {"src_key_padding_mask": torch.from_numpy(~padding[:, 0])})]
    for ours, theirs in cases:
        with torch.no_grad():
            want = _np(builtin(torch.from_numpy(x), **theirs))
        if ours is padding:   # the built-in's fast path may leave padded query rows as they are: compare kept rows
            rows = padding[:, 0]
        else:
            rows = np.ones((3, 6), bool)
        got = _oracle_module("TransformerEncoderBlock", weights, D, H, D_FF, norm_first=norm_first)(x, mask=ours)
        _close(got[rows], want[rows])
        for fw in ("torch", "tf"):
            module = _master_module(namespaces, fw, "TransformerEncoderBlock", weights, D, H, D_FF, norm_first=norm_first)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got = _np(module(_to(fw, x), mask=None if ours is None else _to(fw, ours)))
            _close(got[rows], want[rows])


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_equals_torch_transformer_decoder_layer(namespaces, norm_first):
    rng = np.random.default_rng(7)
    weights = _decoder(rng)
    x, memory = _normal(rng, 3, 5, D), _normal(rng, 3, 7, D)
    causal = np.tril(np.ones((5, 5), bool))
    source = np.arange(7)[None, None, :] < np.array([7, 2, 5])[:, None, None]   # (B, 1, S)
    builtin = torch_decoder(weights, norm_first)
    with torch.no_grad():   # the built-in's masks: True = masked out
        want = _np(builtin(torch.from_numpy(x), torch.from_numpy(memory), tgt_mask=torch.from_numpy(~causal),
                           memory_key_padding_mask=torch.from_numpy(~source[:, 0])))
    got = _oracle_module("TransformerDecoderBlock", weights, D, H, D_FF, norm_first=norm_first)(
        x, memory, self_mask=causal, memory_mask=source)
    _close(got, want)
    for fw in ("torch", "tf"):
        module = _master_module(namespaces, fw, "TransformerDecoderBlock", weights, D, H, D_FF, norm_first=norm_first)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _np(module(_to(fw, x), _to(fw, memory), self_mask=_to(fw, causal), memory_mask=_to(fw, source)))
        _close(got, want)


def test_the_boolean_mask_trap_is_real():
    """Passing our mask (True = may attend) unchanged to nn.MultiheadAttention attends to the wrong keys."""
    rng = np.random.default_rng(8)
    weights = _mha(rng)
    query, key, value, mask = _mha_inputs(rng)
    with torch.no_grad():
        wrong = _np(torch_mha(weights)(*map(torch.from_numpy, (query, key, value)), attn_mask=torch.from_numpy(mask),
                                       average_attn_weights=False))
    right = _oracle_module("MultiHeadAttention", weights, D, H)(query, key, value, mask=mask)
    assert np.nanmax(np.abs(wrong[1] - right[1])) > 0.1
    assert mask[-1].all() and np.isnan(wrong[0][:, -1]).all()   # a row we open fully is fully closed there: NaN
    partial = ~mask.all(-1)
    assert np.all(wrong[1][:, :, partial][..., mask[partial]] == 0)   # every key we allowed got weight 0 there


# --- the masters against the oracle, and each other, on general inputs ------------------------------

def test_masters_equal_the_oracle_with_leading_dimensions_and_empty_rows(namespaces):
    rng = np.random.default_rng(9)
    x = _normal(rng, 2, 3, 4, 12)
    additive = {"W_q": _linear(rng, 4, 6, False), "W_k": _linear(rng, 5, 6, False), "w_v": {"kernel": _normal(rng, 6, 1)}}
    queries, keys, values = _normal(rng, 2, 3, 4, 4), _normal(rng, 2, 3, 6, 5), _normal(rng, 2, 3, 6, 2)
    mask = rng.random((2, 3, 4, 6)) < 0.5
    mask[0, 0, 1] = False
    mha = _mha(rng, 12)
    q, k = _normal(rng, 2, 4, 12), _normal(rng, 2, 6, 12)
    mha_mask = rng.random((2, 4, 6)) < 0.5
    mha_mask[1] = False
    results = {}
    for fw in ("torch", "tf"):
        ns = namespaces[fw]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results[fw] = [
                _np(ns["split_heads"](_to(fw, x), 3)),
                _np(ns["merge_heads"](_to(fw, oracle.split_heads(x, 4)))),
                _np(_master_module(namespaces, fw, "AdditiveAttention", additive, 4, 5, 6)(
                    _to(fw, queries), _to(fw, keys), _to(fw, values), mask=_to(fw, mask))),
                _np(_master_module(namespaces, fw, "MultiHeadAttention", mha, 12, 3)(
                    _to(fw, q), _to(fw, k), _to(fw, k), mask=_to(fw, mha_mask))),
            ]
    want = [oracle.split_heads(x, 3), x,
            _oracle_module("AdditiveAttention", additive, 4, 5, 6)(queries, keys, values, mask=mask),
            _oracle_module("MultiHeadAttention", mha, 12, 3)(q, k, k, mask=mha_mask)]
    for got_torch, got_tf, w in zip(results["torch"], results["tf"], want):
        _close(got_torch, w)
        _close(got_tf, w)
        _close(got_torch, got_tf)
    assert not np.isnan(results["torch"][3][1]).any()
    np.testing.assert_array_equal(results["torch"][3][1][1], 0)            # all-masked batch item: zero weights
