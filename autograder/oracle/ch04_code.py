"""Chapter 04 (code): the NumPy reference for its six exercises.

Two functions and four modules, as `../shared/CONTRACT.md` names them. A module's reference is a
function of plain data (so that the release can record and replay it, as any oracle call):

    MultiHeadAttention(weights, args, kwargs, query, key, value, mask=None)

is the output of `MultiHeadAttention(*args, **kwargs)` holding `weights` (maths layout,
`y = x @ kernel + bias`, nested dicts for sub-layers:
`{"attention": {"w_q": {"kernel": .., "bias": ..}, ...}, "norm1": {"scale": .., "offset": ..}}`),
called on the inputs. The private classes below mirror the student's modules. Everything is
computed in float64 and cast to float32 at the end.

Conventions (the contract's):
- masks are boolean, `True` means "may attend"; a multi-head layer's mask is broadcastable to
  `(B, T_q, T_k)` and applies to every head (the head axis is inserted before `T_q`);
- a query row whose keys are all masked gets all-zero weights and a zero attention output (before
  the output projection `w_o`, so the layer's output there is `w_o`'s bias), never NaN;
- LayerNorm: `(x - mean) / sqrt(var + 1e-5) * scale + offset`, biased variance over the last axis;
- the FFN is `ffn_out(relu(ffn_in(x)))`.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-5   # the contract's LayerNorm epsilon (PyTorch's default; Keras' default is 1e-3)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _masked_softmax(scores: np.ndarray, mask=None) -> np.ndarray:
    """Softmax over the last axis; masked entries get 0; a row with nothing allowed is all 0."""
    allowed = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), scores.shape)
    any_allowed = allowed.any(axis=-1, keepdims=True)
    top = np.where(allowed, scores, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
    top = np.where(any_allowed, top, 0.0)
    exps = np.where(allowed, np.exp(np.where(allowed, scores - top, 0.0)), 0.0)
    totals = np.where(any_allowed, exps.sum(axis=-1, keepdims=True), 1.0)
    return exps / totals


# --- split and merge heads -----------------------------------------------------------------------

def _split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    *lead, t, width = x.shape
    if width % num_heads:
        raise ValueError(f"the last axis ({width}) is not a multiple of num_heads ({num_heads})")
    # (..., T, H*d) -> (..., T, H, d) -> (..., H, T, d): head h owns features h*d .. (h+1)*d - 1
    return np.swapaxes(x.reshape(*lead, t, num_heads, width // num_heads), -3, -2)


def _merge_heads(x: np.ndarray) -> np.ndarray:
    *lead, h, t, d = x.shape
    # (..., H, T, d) -> (..., T, H, d) -> (..., T, H*d)
    return np.swapaxes(x, -3, -2).reshape(*lead, t, h * d)


def split_heads(x, num_heads: int) -> np.ndarray:
    """`(..., T, H*d) -> (..., H, T, d)`; head `h` takes features `h*d` to `(h+1)*d - 1`."""
    return _split_heads(_f64(x), int(num_heads)).astype(np.float32)


def merge_heads(x) -> np.ndarray:
    """`(..., H, T, d) -> (..., T, H*d)`: the inverse of `split_heads`."""
    return _merge_heads(_f64(x)).astype(np.float32)


# --- modules -------------------------------------------------------------------------------------

class _Linear:
    def __init__(self, d_in: int, d_out: int, bias: bool = True):
        self.d_in, self.d_out, self.has_bias = d_in, d_out, bias
        self.kernel = np.zeros((d_in, d_out))
        self.bias = np.zeros(d_out) if bias else None

    def load_weights(self, params: dict) -> None:
        kernel = _f64(params["kernel"])
        if kernel.shape != (self.d_in, self.d_out):
            raise ValueError(f"kernel of shape {kernel.shape}, expected {(self.d_in, self.d_out)}")
        if ("bias" in params) != self.has_bias:
            raise ValueError("bias given to a layer without one, or missing")
        self.kernel = kernel
        if self.has_bias:
            self.bias = _f64(params["bias"]).reshape(self.d_out)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.kernel
        return y + self.bias if self.has_bias else y


class _LayerNorm:
    def __init__(self, d: int):
        self.scale, self.offset = np.ones(d), np.zeros(d)

    def load_weights(self, params: dict) -> None:
        self.scale, self.offset = _f64(params["scale"]), _f64(params["offset"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)   # biased, as both frameworks
        return (x - mean) / np.sqrt(var + EPS) * self.scale + self.offset


class _Module:
    """Sub-layers by attribute name; `load_weights` takes the grader's nested dict."""

    parts: tuple[str, ...] = ()

    def load_weights(self, weights: dict) -> None:
        unknown = set(weights) - set(self.parts)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no {sorted(unknown)}")
        for name, params in weights.items():
            getattr(self, name).load_weights(params)

    def __call__(self, *args, **kwargs):
        out = self._forward(*(_f64(a) for a in args), **kwargs)
        if isinstance(out, tuple):
            return tuple(o.astype(np.float32) for o in out)
        return out.astype(np.float32)


class _MultiHeadAttention(_Module):
    """`w_o(merge_heads(softmax(mask(q k^T / sqrt(d))) v))` with `q, k, v = split_heads(w_*(...))`.

    Call `(query (B, T_q, D), key (B, T_k, D), value (B, T_k, D), mask=None)` ->
    `(output (B, T_q, D), weights (B, H, T_q, T_k))`; `mask` broadcastable to `(B, T_q, T_k)`."""

    parts = ("w_q", "w_k", "w_v", "w_o")

    def __init__(self, d_model: int, num_heads: int, bias: bool = True):
        if d_model % num_heads:
            raise ValueError("d_model must be a multiple of num_heads")
        self.d_model, self.num_heads = d_model, num_heads
        for name in self.parts:
            setattr(self, name, _Linear(d_model, d_model, bias))

    def _forward(self, query, key, value, mask=None):
        heads = self.num_heads
        q = _split_heads(self.w_q(query), heads)                  # (B, H, T_q, d)
        k = _split_heads(self.w_k(key), heads)                    # (B, H, T_k, d)
        v = _split_heads(self.w_v(value), heads)                  # (B, H, T_k, d)
        scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # (B, H, T_q, T_k)
        if mask is not None:
            mask = np.asarray(mask, bool)
            mask = mask[..., None, :, :] if mask.ndim >= 2 else mask   # one mask for every head
        weights = _masked_softmax(scores, mask)                   # (B, H, T_q, T_k)
        return self.w_o(_merge_heads(weights @ v)), weights       # (B, T_q, D), (B, H, T_q, T_k)


class _AdditiveAttention(_Module):
    """Bahdanau: `score[i, j] = w_v . tanh(W_q q_i + W_k k_j)`, masked softmax over keys, weighted
    sum of values. Call `(queries (..., n_q, d_q), keys (..., n_k, d_k), values (..., n_k, d_v),
    mask=None)` -> `(output (..., n_q, d_v), weights (..., n_q, n_k))`; no scale."""

    parts = ("W_q", "W_k", "w_v")

    def __init__(self, query_dim: int, key_dim: int, num_hiddens: int):
        self.W_q = _Linear(query_dim, num_hiddens, bias=False)
        self.W_k = _Linear(key_dim, num_hiddens, bias=False)
        self.w_v = _Linear(num_hiddens, 1, bias=False)

    def _forward(self, queries, keys, values, mask=None):
        features = np.tanh(self.W_q(queries)[..., :, None, :] + self.W_k(keys)[..., None, :, :])   # (..., n_q, n_k, h)
        scores = self.w_v(features)[..., 0]                       # (..., n_q, n_k)
        weights = _masked_softmax(scores, mask)
        return weights @ values, weights


def _ffn(block, x):
    return block.ffn_out(np.maximum(block.ffn_in(x), 0.0))


class _TransformerEncoderBlock(_Module):
    """Post-norm: `x = norm1(x + attn(x, x, x)); x = norm2(x + ffn(x))`.
    Pre-norm (`norm_first`): `x = x + attn(n, n, n)` with `n = norm1(x)`; `x = x + ffn(norm2(x))`."""

    parts = ("attention", "ffn_in", "ffn_out", "norm1", "norm2")

    def __init__(self, d_model: int, num_heads: int, d_ff: int, norm_first: bool = False):
        self.norm_first = norm_first
        self.attention = _MultiHeadAttention(d_model, num_heads)
        self.ffn_in, self.ffn_out = _Linear(d_model, d_ff), _Linear(d_ff, d_model)
        self.norm1, self.norm2 = _LayerNorm(d_model), _LayerNorm(d_model)

    def _forward(self, x, mask=None):
        def attend(y):
            return self.attention._forward(y, y, y, mask)[0]
        if self.norm_first:
            x = x + attend(self.norm1(x))
            return x + _ffn(self, self.norm2(x))
        x = self.norm1(x + attend(x))
        return self.norm2(x + _ffn(self, x))


class _TransformerDecoderBlock(_Module):
    """Masked self-attention, cross-attention to `memory`, FFN; each with a residual and LayerNorm
    (after it, or before it when `norm_first`). Call `(x (B, T, D), memory (B, S, D), self_mask=None,
    memory_mask=None)` -> `(B, T, D)`."""

    parts = ("self_attention", "cross_attention", "ffn_in", "ffn_out", "norm1", "norm2", "norm3")

    def __init__(self, d_model: int, num_heads: int, d_ff: int, norm_first: bool = False):
        self.norm_first = norm_first
        self.self_attention = _MultiHeadAttention(d_model, num_heads)
        self.cross_attention = _MultiHeadAttention(d_model, num_heads)
        self.ffn_in, self.ffn_out = _Linear(d_model, d_ff), _Linear(d_ff, d_model)
        self.norm1, self.norm2, self.norm3 = _LayerNorm(d_model), _LayerNorm(d_model), _LayerNorm(d_model)

    def _forward(self, x, memory, self_mask=None, memory_mask=None):
        def self_attend(y):
            return self.self_attention._forward(y, y, y, self_mask)[0]

        def cross_attend(y):
            return self.cross_attention._forward(y, memory, memory, memory_mask)[0]
        if self.norm_first:
            x = x + self_attend(self.norm1(x))
            x = x + cross_attend(self.norm2(x))
            return x + _ffn(self, self.norm3(x))
        x = self.norm1(x + self_attend(x))
        x = self.norm2(x + cross_attend(x))
        return self.norm3(x + _ffn(self, x))


# --- the exercises' references: plain data in, arrays out ----------------------------------------

def _run(cls, weights: dict, args, kwargs, inputs: tuple, call_kwargs: dict):
    module = cls(*args, **dict(kwargs or {}))
    module.load_weights(weights)
    return module(*inputs, **call_kwargs)


def MultiHeadAttention(weights, args, kwargs, query, key, value, mask=None):
    """`(output (B, T_q, D), weights (B, H, T_q, T_k))` of `MultiHeadAttention(*args, **kwargs)`."""
    return _run(_MultiHeadAttention, weights, args, kwargs, (query, key, value), {"mask": mask})


def AdditiveAttention(weights, args, kwargs, queries, keys, values, mask=None):
    """`(output (..., n_q, d_v), weights (..., n_q, n_k))` of `AdditiveAttention(*args, **kwargs)`."""
    return _run(_AdditiveAttention, weights, args, kwargs, (queries, keys, values), {"mask": mask})


def TransformerEncoderBlock(weights, args, kwargs, x, mask=None):
    """`y (B, T, D)` of `TransformerEncoderBlock(*args, **kwargs)`."""
    return _run(_TransformerEncoderBlock, weights, args, kwargs, (x,), {"mask": mask})


def TransformerDecoderBlock(weights, args, kwargs, x, memory, self_mask=None, memory_mask=None):
    """`y (B, T, D)` of `TransformerDecoderBlock(*args, **kwargs)`."""
    return _run(_TransformerDecoderBlock, weights, args, kwargs, (x, memory),
                {"self_mask": self_mask, "memory_mask": memory_mask})
