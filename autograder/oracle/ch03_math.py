"""Chapter 03 (mathematics): the NumPy reference for its six exercises.

Each function follows `../shared/CONTRACT.md` ("03_math") word for word:
- `logsumexp(x, axis=-1)`: stable; `-inf` entries allowed; a slice that is all `-inf` gives `-inf`;
- `softmax_jacobian(p)`: `(..., n)` -> `(..., n, n)` = `diag(p) - p p^T`;
- `attention_backward(queries, keys, values, grad_output)` -> `(d_queries, d_keys, d_values)`, the
  gradients of unmasked scaled dot-product attention's output, computed by hand;
- `sinusoidal_positional_encoding(num_positions, d_model)`: `PE[p, 2i] = sin(p / 10000**(2i/d))`,
  `PE[p, 2i+1] = cos(...)`, `d_model` even;
- `attention_cost(n_q, n_k, d_k, d_v, num_heads=1)` -> `{"flops", "score_elements"}` (ints);
- `attention_entropy(weights)` -> `(..., n_q)`, in nats, with `0 log 0 = 0`.

Everything is computed in float64 and cast to float32 at the end. `finite_difference_backward` is
the independent check of `attention_backward`: central differences of the forward pass.
"""
from __future__ import annotations

import numpy as np


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _logsumexp(x, axis=-1) -> np.ndarray:
    x = _f64(x)
    top = np.max(x, axis=axis, keepdims=True)
    # an all -inf slice has top = -inf: shift by 0 there, so exp gives 0 and log gives -inf
    shift = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    return np.squeeze(total, axis=axis)


def logsumexp(x, axis=-1) -> np.ndarray:
    """`log(sum(exp(x), axis))`, without overflow at large `x`; the axis is removed."""
    return _logsumexp(x, axis).astype(np.float32)


def softmax_jacobian(p) -> np.ndarray:
    """`J[..., i, j] = d p_i / d s_j = p_i (delta_ij - p_j)`: `(..., n)` -> `(..., n, n)`."""
    p = _f64(p)
    diag = p[..., :, None] * np.eye(p.shape[-1])
    return (diag - p[..., :, None] * p[..., None, :]).astype(np.float32)


def _softmax(scores: np.ndarray) -> np.ndarray:
    exps = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def _attention(queries, keys, values) -> np.ndarray:
    queries, keys, values = _f64(queries), _f64(keys), _f64(values)
    scores = queries @ np.swapaxes(keys, -1, -2) / np.sqrt(keys.shape[-1])
    return _softmax(scores) @ values


def attention_forward(queries, keys, values) -> np.ndarray:
    """Unmasked scaled dot-product attention's output `(..., n_q, d_v)` (what is differentiated)."""
    return _attention(queries, keys, values).astype(np.float32)


def _attention_backward(queries, keys, values, grad_output):
    queries, keys, values, grad = map(_f64, (queries, keys, values, grad_output))
    scale = 1.0 / np.sqrt(keys.shape[-1])
    weights = _softmax(queries @ np.swapaxes(keys, -1, -2) * scale)          # (..., n_q, n_k)
    d_values = np.swapaxes(weights, -1, -2) @ grad                           # (..., n_k, d_v)
    d_weights = grad @ np.swapaxes(values, -1, -2)                           # (..., n_q, n_k)
    # through the softmax Jacobian, row by row: dS = P * (dP - sum_j dP_j P_j)
    d_scores = weights * (d_weights - (d_weights * weights).sum(axis=-1, keepdims=True))
    d_queries = d_scores @ keys * scale                                      # (..., n_q, d_k)
    d_keys = np.swapaxes(d_scores, -1, -2) @ queries * scale                 # (..., n_k, d_k)
    return d_queries, d_keys, d_values


def attention_backward(queries, keys, values, grad_output):
    """`(d_queries, d_keys, d_values)`: the gradients of `sum(attention(Q, K, V) * grad_output)`."""
    return tuple(g.astype(np.float32) for g in _attention_backward(queries, keys, values, grad_output))


def finite_difference_backward(queries, keys, values, grad_output, eps: float = 1e-6):
    """The same gradients by central differences of the float64 forward pass, one entry at a time:
    independent of the formulas in `attention_backward`."""
    inputs = [_f64(queries).copy(), _f64(keys).copy(), _f64(values).copy()]
    grad = _f64(grad_output)
    grads = []
    for which in range(3):
        out = np.zeros_like(inputs[which])
        for index in np.ndindex(out.shape):
            saved = inputs[which][index]
            inputs[which][index] = saved + eps
            up = np.sum(_attention(*inputs) * grad)
            inputs[which][index] = saved - eps
            down = np.sum(_attention(*inputs) * grad)
            inputs[which][index] = saved
            out[index] = (up - down) / (2 * eps)
        grads.append(out.astype(np.float32))
    return tuple(grads)


def sinusoidal_positional_encoding(num_positions: int, d_model: int) -> np.ndarray:
    """`(num_positions, d_model)`: sines in the even columns, cosines in the odd ones."""
    if d_model % 2:
        raise ValueError(f"d_model must be even, not {d_model}")
    positions = np.arange(num_positions, dtype=np.float64)[:, None]          # (P, 1)
    two_i = np.arange(0, d_model, 2, dtype=np.float64)                       # (d/2,)
    angles = positions / 10000.0 ** (two_i / d_model)                        # (P, d/2)
    pe = np.empty((num_positions, d_model))
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles)
    return pe.astype(np.float32)


def attention_cost(n_q: int, n_k: int, d_k: int, d_v: int, num_heads: int = 1) -> dict:
    """The multiply-adds of scores and weighted sum, counted as 2 flops each, and the size of the
    score matrix."""
    return {"flops": 2 * num_heads * n_q * n_k * (d_k + d_v),
            "score_elements": num_heads * n_q * n_k}


def attention_entropy(weights) -> np.ndarray:
    """`-sum_j p_j log p_j` over the last axis, in nats; a zero weight contributes 0."""
    p = _f64(weights)
    safe = np.where(p > 0, p, 1.0)
    return (0.0 - np.where(p > 0, p * np.log(safe), 0.0).sum(axis=-1)).astype(np.float32)   # +0, not -0
