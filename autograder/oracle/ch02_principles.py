"""Chapter 02 (principles): the NumPy reference for its thirteen exercises.

Each function follows `../shared/CONTRACT.md` word for word:
- queries `(..., n_q, d_k)`, keys `(..., n_k, d_k)`, values `(..., n_k, d_v)`, scores and weights
  `(..., n_q, n_k)`, with any number of leading batch dimensions (NumPy broadcasting rules);
- masks are boolean, broadcastable to the scores, and `True` means "may attend";
- a row whose keys are all masked gets all-zero weights and a zero output, never NaN.

Everything is computed in float64 and cast to float32 at the end, so the reference is more accurate
than any float32 submission it is compared with. Masks come back as bool arrays.
"""
from __future__ import annotations

import numpy as np


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _transpose_last_two(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


# The float64 versions do the work; the public functions only cast their result.

def _dot_product_scores(queries, keys) -> np.ndarray:
    # (..., n_q, d_k) x (..., d_k, n_k) -> (..., n_q, n_k)
    return np.matmul(_f64(queries), _transpose_last_two(_f64(keys)))


def _scaled_dot_product_scores(queries, keys) -> np.ndarray:
    d_k = np.shape(keys)[-1]
    return _dot_product_scores(queries, keys) / np.sqrt(d_k)


def _masked_softmax(scores, mask=None) -> np.ndarray:
    scores = _f64(scores)
    if mask is None:
        allowed = np.ones(scores.shape, dtype=bool)
    else:
        allowed = np.broadcast_to(np.asarray(mask, dtype=bool), scores.shape)
    any_allowed = allowed.any(axis=-1, keepdims=True)                 # (..., n_q, 1)
    # The largest allowed score of each row; 0 for a row with no allowed key (it is never used).
    row_max = np.where(allowed, scores, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
    row_max = np.where(any_allowed, row_max, 0.0)
    # exp(s - max) <= 1 for allowed keys, so nothing overflows even at scores of 1e4.
    exps = np.where(allowed, np.exp(np.where(allowed, scores - row_max, 0.0)), 0.0)
    totals = exps.sum(axis=-1, keepdims=True)                         # >= 1 where any_allowed
    return np.where(any_allowed, exps / np.where(any_allowed, totals, 1.0), 0.0)


def dot_product_scores(queries, keys) -> np.ndarray:
    """`scores[..., i, j] = q_i . k_j`: `(..., n_q, d_k), (..., n_k, d_k) -> (..., n_q, n_k)`."""
    return _dot_product_scores(queries, keys).astype(np.float32)


def scaled_dot_product_scores(queries, keys) -> np.ndarray:
    """The dot-product scores divided by `sqrt(d_k)`."""
    return _scaled_dot_product_scores(queries, keys).astype(np.float32)


def additive_scores(queries, keys, W_q, W_k, w_v) -> np.ndarray:
    """`scores[..., i, j] = w_v . tanh(q_i W_q + k_j W_k)`.

    Shapes: queries `(..., n_q, d_q)`, keys `(..., n_k, d_k)`, `W_q (d_q, h)`, `W_k (d_k, h)`,
    `w_v (h,)` -> `(..., n_q, n_k)`.
    """
    projected_q = np.matmul(_f64(queries), _f64(W_q))                 # (..., n_q, h)
    projected_k = np.matmul(_f64(keys), _f64(W_k))                    # (..., n_k, h)
    # Every (query, key) pair: (..., n_q, 1, h) + (..., 1, n_k, h) -> (..., n_q, n_k, h)
    hidden = np.tanh(projected_q[..., :, None, :] + projected_k[..., None, :, :])
    return np.matmul(hidden, _f64(w_v)).astype(np.float32)            # (..., n_q, n_k)


def general_scores(queries, keys, W) -> np.ndarray:
    """Luong's "general" score `q W k^T`: `W (d_q, d_k)` -> `(..., n_q, n_k)`."""
    projected_q = np.matmul(_f64(queries), _f64(W))                   # (..., n_q, d_k)
    return _dot_product_scores(projected_q, keys).astype(np.float32)


def masked_softmax(scores, mask=None) -> np.ndarray:
    """Softmax over the last axis, over the keys the mask allows (`True` = may attend).

    Masked keys get weight 0; a row with no allowed key gets all zeros. `mask` is broadcast to the
    shape of `scores`, which is also the shape of the result.
    """
    return _masked_softmax(scores, mask).astype(np.float32)


def padding_mask(valid_lens, n_k: int) -> np.ndarray:
    """`valid_lens (batch,)` -> bool `(batch, 1, n_k)`, True where the key index < valid_len."""
    valid_lens = np.asarray(valid_lens)
    key_index = np.arange(n_k)
    return key_index[None, None, :] < valid_lens[:, None, None]


def causal_mask(n_q: int, n_k: int | None = None) -> np.ndarray:
    """Bool `(n_q, n_k)`: query i may attend to key j iff `j <= i + (n_k - n_q)` (bottom-right)."""
    if n_k is None:
        n_k = n_q
    allowed = np.zeros((n_q, n_k), dtype=bool)
    for i in range(n_q):
        for j in range(n_k):
            allowed[i, j] = j <= i + (n_k - n_q)
    return allowed


def tree_mask(parents) -> np.ndarray:
    """Bool `(n, n)`: node i may attend to j iff j is i or an ancestor of i (`parents[root] = -1`)."""
    parents = [int(p) for p in np.asarray(parents).reshape(-1)]
    n = len(parents)
    allowed = np.zeros((n, n), dtype=bool)
    for i in range(n):
        node, steps = i, 0
        while node != -1:
            if not 0 <= node < n or steps > n:
                raise ValueError(f"parents does not describe a tree (node {i}'s ancestry)")
            allowed[i, node] = True
            node, steps = parents[node], steps + 1
    return allowed


def scaled_dot_product_attention(queries, keys, values, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """`softmax(q k^T / sqrt(d_k), masked) v` -> `(output (..., n_q, d_v), weights (..., n_q, n_k))`."""
    weights = _masked_softmax(_scaled_dot_product_scores(queries, keys), mask)   # (..., n_q, n_k)
    output = np.matmul(weights, _f64(values))                          # (..., n_q, d_v)
    return output.astype(np.float32), weights.astype(np.float32)


# --- the second edition: exercises that combine the pieces ------------------------------------------
# Written from the contract's sentences, index by index where that is clearest, not from the
# masters' vectorised code.

def segment_mask(segment_ids) -> np.ndarray:
    """Packed sequences: `segment_ids (..., n)` int -> bool `(..., n, n)`.

    `mask[..., i, j]` is True iff `segment_ids[..., i] == segment_ids[..., j] >= 0`; a negative id
    marks padding, which attends to nothing and is attended to by nothing.
    """
    ids = np.asarray(segment_ids)
    n = ids.shape[-1]
    flat = ids.reshape(-1, n)                                          # (batch, n), batch = prod(...)
    allowed = np.zeros((flat.shape[0], n, n), dtype=bool)
    for b in range(flat.shape[0]):
        for i in range(n):
            for j in range(n):
                allowed[b, i, j] = flat[b, i] == flat[b, j] and flat[b, j] >= 0
    return allowed.reshape(ids.shape + (n,))


def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt: int, n_src: int) -> tuple[np.ndarray, np.ndarray]:
    """The two masks of a decoder layer, full shapes, bool.

    `self_mask (batch, n_tgt, n_tgt)`: `[b, i, j] = j <= i and j < tgt_valid_lens[b]`;
    `cross_mask (batch, n_tgt, n_src)`: `[b, i, j] = j < src_valid_lens[b]`.
    """
    tgt = [int(n) for n in np.asarray(tgt_valid_lens).reshape(-1)]
    src = [int(n) for n in np.asarray(src_valid_lens).reshape(-1)]
    if len(tgt) != len(src):
        raise ValueError(f"{len(tgt)} target lengths but {len(src)} source lengths")
    self_mask = np.zeros((len(tgt), n_tgt, n_tgt), dtype=bool)
    cross_mask = np.zeros((len(src), n_tgt, n_src), dtype=bool)
    for b in range(len(tgt)):
        for i in range(n_tgt):
            for j in range(n_tgt):
                self_mask[b, i, j] = j <= i and j < tgt[b]
            for j in range(n_src):
                cross_mask[b, i, j] = j < src[b]
    return self_mask, cross_mask


def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None) -> tuple[np.ndarray, np.ndarray]:
    """One decoder step of sequential (Bahdanau) attention.

    `state (batch, d_q)`, `encoder_outputs (batch, n, d_k)` (keys and values at once), `W_q (d_q, h)`,
    `W_k (d_k, h)`, `w_v (h,)`, `valid_lens (batch,)` or None -> `(context (batch, d_k), weights
    (batch, n))`: additive scores, a softmax over the first `valid_lens[b]` positions (all zeros when
    that is 0), and the weighted sum of the encoder outputs.
    """
    state, outputs = _f64(state), _f64(encoder_outputs)
    batch, n, _ = outputs.shape
    projected_state = state @ _f64(W_q)                                # (batch, h)
    projected_outputs = outputs @ _f64(W_k)                           # (batch, n, h)
    hidden = np.tanh(projected_state[:, None, :] + projected_outputs)  # (batch, n, h)
    scores = hidden @ _f64(w_v)                                        # (batch, n)
    lens = np.full(batch, n) if valid_lens is None else np.asarray(valid_lens).reshape(-1)
    allowed = np.arange(n)[None, :] < lens[:, None]                    # (batch, n)
    weights = _masked_softmax(scores, allowed)                         # (batch, n)
    context = np.einsum("bn,bnd->bd", weights, outputs)                # (batch, d_k)
    return context.astype(np.float32), weights.astype(np.float32)


def attention_pooling(inputs, query, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Parallel attention: pool `inputs (..., n, d)` with one learned `query (d,)`.

    Scores `inputs . query / sqrt(d)`, a masked softmax over the n positions (`mask (..., n)`,
    True = may attend), and the weighted sum -> `(pooled (..., d), weights (..., n))`. A row whose
    positions are all masked pools to zeros.
    """
    inputs, query = _f64(inputs), _f64(query)
    d = inputs.shape[-1]
    scores = (inputs @ query) / np.sqrt(d)                             # (..., n)
    weights = _masked_softmax(scores, mask)                            # (..., n)
    pooled = (weights[..., :, None] * inputs).sum(axis=-2)             # (..., d)
    return pooled.astype(np.float32), weights.astype(np.float32)
