"""Chapter 06 (efficiency): the NumPy reference for its nine exercises.

Each function follows `../shared/CONTRACT.md` ("06_efficiency") word for word:
- `merge_softmax_stats(m1, l1, m2, l2)` -> `(m, l)`; two empty parts `(-inf, 0)` give `(-inf, 0)`;
- `flash_attention(queries, keys, values, block_size=64, causal=False)` -> `(output, lse)`:
  scaled dot-product attention and the log-sum-exp of each row's scaled scores; `causal` is the
  bottom-right alignment of chapter 02's `causal_mask`; a row with no visible key gives zeros and
  `lse = -inf`. The oracle may hold the whole score matrix (it is the reference, not the exercise):
  `block_size` changes nothing in exact arithmetic and is accepted only to be checked;
- `sliding_window_mask(n, window, causal=False)` -> bool `(n, n)`;
- `linear_attention(queries, keys, values, causal=False)`, feature map `elu(x) + 1`;
- `decode_step(query, key, value, cache=None)` -> `(output (..., 1, d_v), (keys, values))`;
- `grouped_query_attention(queries, keys, values, mask=None)` -> `(output, weights)`, query head
  `h` reading key/value head `h // (H_q // H_kv)`;
- `split_kv_decode(query, keys, values, num_splits)` -> `output (..., 1, d_v)` (Flash-Decoding);
- `paged_attention(query, key_pages, value_pages, block_table, lengths)` -> `output (B, 1, d_v)`;
- `flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False)`
  -> `(grad_queries, grad_keys, grad_values)`, FlashAttention-2's formulas from the saved `lse`.

Everything is computed in float64 (loops where a loop is the definition) and cast to float32.
"""
from __future__ import annotations

import numpy as np


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def merge_softmax_stats(m1, l1, m2, l2):
    """`m = max(m1, m2)`, `l = l1 exp(m1 - m) + l2 exp(m2 - m)`; where both parts are empty
    (`m = -inf`) the merged part is empty too: `(-inf, 0)`."""
    m1, l1, m2, l2 = np.broadcast_arrays(*map(_f64, (m1, l1, m2, l2)))
    m = np.maximum(m1, m2)
    empty = np.isneginf(m)
    safe = np.where(empty, 0.0, m)                       # exp(-inf - 0) = 0 for an empty part
    with np.errstate(invalid="ignore", over="ignore"):
        l = l1 * np.exp(m1 - safe) + l2 * np.exp(m2 - safe)
    l = np.where(empty, 0.0, l)
    return m.astype(np.float32), l.astype(np.float32)


def causal_allowed(n_q: int, n_k: int) -> np.ndarray:
    """Bool `(n_q, n_k)`: query i sees key j iff `j <= i + (n_k - n_q)` (bottom-right, as chapter 02)."""
    return np.arange(n_k)[None, :] <= np.arange(n_q)[:, None] + (n_k - n_q)


def _attention_lse(queries, keys, values, allowed=None):
    """(output, lse) in float64, row by row over the allowed keys; empty rows: zeros and -inf."""
    q, k, v = _f64(queries), _f64(keys), _f64(values)
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])            # (..., n_q, n_k)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    exps = np.exp(scores - top)                                            # 0 where masked
    total = exps.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(total > 0, exps / total, 0.0)
        lse = np.where(total > 0, np.log(total) + top, -np.inf)[..., 0]
    return weights @ v, lse, weights


def flash_attention(queries, keys, values, block_size=64, causal=False):
    """`(output (..., n_q, d_v), lse (..., n_q))` of scaled dot-product attention."""
    if int(block_size) < 1:
        raise ValueError("block_size must be a positive integer")
    allowed = causal_allowed(np.shape(queries)[-2], np.shape(keys)[-2]) if causal else None
    output, lse, _ = _attention_lse(queries, keys, values, allowed)
    return output.astype(np.float32), lse.astype(np.float32)


def sliding_window_mask(n: int, window: int, causal: bool = False) -> np.ndarray:
    """Bool `(n, n)`: `|i - j| < window`, or `0 <= i - j < window` when causal (loops, as defined)."""
    allowed = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            allowed[i, j] = (0 <= i - j < window) if causal else abs(i - j) < window
    return allowed


def elu_plus_one(x) -> np.ndarray:
    x = _f64(x)
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def linear_attention(queries, keys, values, causal=False) -> np.ndarray:
    """`out_i = phi(q_i)^T S / phi(q_i)^T z`, S and z summed over all keys, or over `j <= i` when
    causal; computed as a loop over the rows (the definition), in float64."""
    phi_q, phi_k, v = elu_plus_one(queries), elu_plus_one(keys), _f64(values)
    n_q, n_k = phi_q.shape[-2], phi_k.shape[-2]
    if causal and n_q != n_k:
        raise ValueError("causal linear attention needs n_q == n_k")
    out = np.zeros(np.broadcast_shapes(phi_q.shape[:-2], v.shape[:-2]) + (n_q, v.shape[-1]))
    for i in range(n_q):
        last = i + 1 if causal else n_k
        S = np.einsum("...jd,...je->...de", phi_k[..., :last, :], v[..., :last, :])   # (..., d_k, d_v)
        z = phi_k[..., :last, :].sum(axis=-2)                                          # (..., d_k)
        numerator = np.einsum("...d,...de->...e", phi_q[..., i, :], S)
        denominator = np.einsum("...d,...d->...", phi_q[..., i, :], z)[..., None]
        out[..., i, :] = numerator / denominator
    return out.astype(np.float32)


def decode_step(query, key, value, cache=None):
    """Append `key`, `value` to the cache and attend `query` to all of them:
    `(output (..., 1, d_v), (keys (..., t + 1, d_k), values (..., t + 1, d_v)))`."""
    key, value = _f64(key), _f64(value)
    if cache is None:
        keys, values = key, value
    else:
        keys = np.concatenate([_f64(cache[0]), key], axis=-2)
        values = np.concatenate([_f64(cache[1]), value], axis=-2)
    output, _, _ = _attention_lse(query, keys, values)
    return output.astype(np.float32), (keys.astype(np.float32), values.astype(np.float32))


def grouped_query_attention(queries, keys, values, mask=None):
    """`(output (B, H_q, n_q, d_v), weights (B, H_q, n_q, n_k))`, head by head."""
    q, k, v = _f64(queries), _f64(keys), _f64(values)
    batch, h_q, n_q, _ = q.shape
    h_kv, n_k = k.shape[1], k.shape[2]
    if h_q % h_kv:
        raise ValueError("H_q must be a multiple of H_kv")
    group = h_q // h_kv
    allowed = None if mask is None else np.broadcast_to(np.asarray(mask, bool), (batch, h_q, n_q, n_k))
    output = np.zeros((batch, h_q, n_q, v.shape[-1]))
    weights = np.zeros((batch, h_q, n_q, n_k))
    for h in range(h_q):
        out_h, _, w_h = _attention_lse(q[:, h], k[:, h // group], v[:, h // group],
                                       None if allowed is None else allowed[:, h])
        output[:, h], weights[:, h] = out_h, w_h
    return output.astype(np.float32), weights.astype(np.float32)


def split_kv_decode(query, keys, values, num_splits: int):
    """`output (..., 1, d_v)`: scaled dot-product attention of one query over all keys. The oracle
    computes it whole; `num_splits` (chunks of the cache, Flash-Decoding) changes nothing in exact
    arithmetic and is accepted only to be checked (>= 1)."""
    if int(num_splits) < 1:
        raise ValueError("num_splits must be at least 1")
    output, _, _ = _attention_lse(query, keys, values)
    return output.astype(np.float32)


def paged_attention(query, key_pages, value_pages, block_table, lengths):
    """`output (B, 1, d_v)`: sequence b's keys are the rows of its pages, in block-table order, first
    `lengths[b]` only; scaled dot-product attention of its query over them; length 0 gives zeros."""
    q, kp, vp = _f64(query), _f64(key_pages), _f64(value_pages)
    table, lengths = np.asarray(block_table, np.int64), np.asarray(lengths, np.int64)
    batch, page_size = q.shape[0], kp.shape[1]
    output = np.zeros((batch, 1, vp.shape[-1]))
    for b in range(batch):
        n = int(lengths[b])
        if n == 0:
            continue
        pages = table[b, : -(-n // page_size)]                               # the pages holding n rows
        keys = np.concatenate([kp[p] for p in pages])[:n]                    # (n, d_k), in table order
        vals = np.concatenate([vp[p] for p in pages])[:n]                    # (n, d_v)
        output[b], _, _ = _attention_lse(q[b], keys, vals)
    return output.astype(np.float32)


def _sum_to(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient over the leading dimensions its input was broadcast along (as autograd does)."""
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def _flash_backward(queries, keys, values, output, lse, grad_output, allowed=None):
    """The backward formulas of FlashAttention-2 in float64, with `P = exp(S - lse)` from the given
    `lse` and `D = rowsum(dO * O)` from the given output (never recomputed): so a check may pass a
    subset of the keys (their columns of dK, dV are exact) or of the queries (their rows of dQ)."""
    q, k, v, o, do = map(_f64, (queries, keys, values, output, grad_output))
    lse = _f64(lse)[..., None]                                             # (..., n_q, 1)
    scale = 1 / np.sqrt(q.shape[-1])
    scores = q @ np.swapaxes(k, -1, -2) * scale                            # (..., n_q, n_k)
    visible = np.isfinite(lse) if allowed is None else np.isfinite(lse) & np.asarray(allowed, bool)
    with np.errstate(invalid="ignore", over="ignore"):
        p = np.where(visible, np.exp(scores - np.where(np.isfinite(lse), lse, 0.0)), 0.0)
    d = (do * o).sum(axis=-1, keepdims=True)                               # (..., n_q, 1)
    ds = p * (do @ np.swapaxes(v, -1, -2) - d)                             # (..., n_q, n_k)
    dq = ds @ k * scale
    dk = np.swapaxes(ds, -1, -2) @ q * scale
    dv = np.swapaxes(p, -1, -2) @ do
    return dq, dk, dv


def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    """`(grad_queries, grad_keys, grad_values)` of flash_attention's output, each shaped like its input
    (summed over the leading dimensions it was broadcast along). `block_size` changes nothing in exact
    arithmetic and is accepted only to be checked; a row with `lse = -inf` contributes nothing."""
    q, k = _f64(queries), _f64(keys)
    allowed = causal_allowed(q.shape[-2], k.shape[-2]) if causal else None
    grads = _flash_backward(queries, keys, values, output, lse, grad_output, allowed)
    shapes = (np.shape(queries), np.shape(keys), np.shape(values))
    return tuple(_sum_to(g, s).astype(np.float32) for g, s in zip(grads, shapes))
