"""Chapter 01 (background): the NumPy reference for its three exercises.

Each function follows `../shared/CONTRACT.md` ("01_background") word for word. Everything is computed
in float64 and cast to float32 at the end, so the reference is more accurate than any float32
submission it is compared with.
"""
from __future__ import annotations

import numpy as np


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64; exp(x - max) <= 1, so nothing overflows."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax(x) -> np.ndarray:
    """`(n,) -> (n,)`: `exp(x_i) / sum_j exp(x_j)`, stable for large inputs."""
    return _softmax(x).astype(np.float32)


def nadaraya_watson(queries, keys, values, bandwidth=1.0):
    """`(n_q,), (n_k,), (n_k,) -> (predictions (n_q,), weights (n_q, n_k))`, with weights the softmax
    over keys of `-(q - k)**2 / (2 * bandwidth**2)`."""
    q, k, v = (np.asarray(a, np.float64) for a in (queries, keys, values))
    h = float(bandwidth)
    weights = _softmax(-(q[:, None] - k[None, :]) ** 2 / (2 * h ** 2))   # (n_q, n_k)
    return (weights @ v).astype(np.float32), weights.astype(np.float32)


def attention_pool(query, keys, values):
    """`query (d,), keys (n, d), values (n, d_v) -> (context (d_v,), weights (n,))`: dot-product
    scores, softmax, weighted sum."""
    q, k, v = (np.asarray(a, np.float64) for a in (query, keys, values))
    weights = _softmax(k @ q)                                             # (n,)
    return (weights @ v).astype(np.float32), weights.astype(np.float32)
