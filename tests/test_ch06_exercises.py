"""Chapter 06's checks tell right from wrong, and flash_attention's memory check catches exactly the
version that builds the n×n matrix.

- (Full marks for the masters and none for the untouched student views: test_every_chapter.py.)
- Each plausible mistake (a *mutant*: a merge without the rescale or NaN for two empty parts,
  attention without 1/sqrt(d_k), top-left instead of bottom-right causal alignment, an off-by-one
  window, relu + 1 instead of elu + 1, a cache that is not appended or appended in front, head
  h % H_kv instead of h // group, ...) fails at least one check of its exercise, and one of each,
  put together, loses points in every exercise through the real runner.
- Correct alternatives (loops, einsum, key blocks in reverse order, reshapes instead of repeats)
  pass every check.
- Memory: a flash_attention that materialises the scores (right values) loses exactly the memory
  check's points, with the check's message, through `run_checks` here and through a real graded
  run in the bubblewrap sandbox (both frameworks); the reference keeps them there too.
- decode_step's `(output, (keys, values))` crosses the sandbox's reply with its nested tuple.
"""
import warnings

import numpy as np
import pytest

import check_functions as shared
with warnings.catch_warnings():   # its marks (exercise, points, public) are registered for the grader only
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from autograder.checks import ch06_efficiency as checks  # noqa: F401
from autograder.chapters import chapter
from autograder.checks.runner import LocalBackend, StudentProxy, run_checks

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "06_efficiency"
EXERCISES = chapter(CHAPTER).exercises
FRAMEWORKS = ("torch", "tf")
MEMORY_CHECK = "flash_attention: " + checks.test_flash_memory.__doc__.strip().splitlines()[0]
BACKWARD_MEMORY_CHECK = "flash_attention_backward: " + checks.test_backward_memory.__doc__.strip().splitlines()[0]

checks_of, _master_namespace, namespace_with, failed_checks = shared.bound(CHAPTER)


def _results(namespace, framework, seed=0):
    with np.errstate(all="ignore"):
        results, _ = run_checks(CHAPTER, LocalBackend(dict(namespace), framework), framework, seed=seed)
    return results


_scores = shared.per_exercise


def test_the_memory_check_is_hidden_and_bounded():
    meta = shared.meta(checks.test_flash_memory)
    assert not meta.public and meta.memory_mb == checks.MEMORY_MB
    # its n: one float32 copy of the scores is twice the bound, and fits the chapter's memory thrice
    one_copy_mb = 4 * checks.MEMORY_N ** 2 / 2**20
    assert one_copy_mb >= 2 * checks.MEMORY_MB
    assert 3 * one_copy_mb < chapter(CHAPTER).limits.memory_mb


# (exercise, framework, what the mistake is, the mistaken definition)
MUTANTS = [
    ("merge_softmax_stats", "torch", "sums added without the rescale", """
def merge_softmax_stats(m1, l1, m2, l2):
    return torch.maximum(m1, m2), l1 + l2
"""),
    ("merge_softmax_stats", "tf", "sums added without the rescale", """
def merge_softmax_stats(m1, l1, m2, l2):
    return tf.maximum(m1, m2), l1 + l2
"""),
    ("merge_softmax_stats", "torch", "NaN for two empty parts (no shift by 0)", """
def merge_softmax_stats(m1, l1, m2, l2):
    m = torch.maximum(m1, m2)
    return m, l1 * torch.exp(m1 - m) + l2 * torch.exp(m2 - m)
"""),
    ("merge_softmax_stats", "tf", "NaN for two empty parts (no shift by 0)", """
def merge_softmax_stats(m1, l1, m2, l2):
    m = tf.maximum(m1, m2)
    return m, l1 * tf.exp(m1 - m) + l2 * tf.exp(m2 - m)
"""),
    ("merge_softmax_stats", "torch", "only the first sum rescaled", """
def merge_softmax_stats(m1, l1, m2, l2):
    m = torch.maximum(m1, m2)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return m, l1 * torch.exp(m1 - shift) + l2
"""),
    ("merge_softmax_stats", "torch", "rescaled the wrong way: exp(m - m1)", """
def merge_softmax_stats(m1, l1, m2, l2):
    m = torch.maximum(m1, m2)
    shift = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    return m, torch.nan_to_num(l1 * torch.exp(shift - m1)) + torch.nan_to_num(l2 * torch.exp(shift - m2))
"""),
    ("flash_attention", "torch", "no 1/sqrt(d_k) scale", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    return reference_flash(queries * math.sqrt(queries.shape[-1]), keys, values, block_size, causal)
"""),
    ("flash_attention", "tf", "no 1/sqrt(d_k) scale", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    return reference_flash(queries * math.sqrt(queries.shape[-1]), keys, values, block_size, causal)
"""),
    ("flash_attention", "torch", "causal aligned top-left (j <= i) instead of bottom-right", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    n_q, n_k = queries.shape[-2], keys.shape[-2]
    if not causal or n_q == n_k:
        return reference_flash(queries, keys, values, block_size, causal)
    if n_q < n_k:            # row i sees keys 0..i: the square causal case on the first n_q keys
        return reference_flash(queries, keys[..., :n_q, :], values[..., :n_q, :], block_size, True)
    top = reference_flash(queries[..., :n_k, :], keys, values, block_size, True)
    rest = reference_flash(queries[..., n_k:, :], keys, values, block_size)   # later rows see every key
    return torch.cat([top[0], rest[0]], -2), torch.cat([top[1], rest[1]], -1)
"""),
    ("flash_attention", "tf", "causal aligned top-left (j <= i) instead of bottom-right", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    n_q, n_k = queries.shape[-2], keys.shape[-2]
    if not causal or n_q == n_k:
        return reference_flash(queries, keys, values, block_size, causal)
    if n_q < n_k:            # row i sees keys 0..i: the square causal case on the first n_q keys
        return reference_flash(queries, keys[..., :n_q, :], values[..., :n_q, :], block_size, True)
    top = reference_flash(queries[..., :n_k, :], keys, values, block_size, True)
    rest = reference_flash(queries[..., n_k:, :], keys, values, block_size)   # later rows see every key
    return tf.concat([top[0], rest[0]], -2), tf.concat([top[1], rest[1]], -1)
"""),
    ("flash_attention", "torch", "the running output not rescaled when the maximum grows", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    q = queries / math.sqrt(queries.shape[-1])
    n_k = keys.shape[-2]
    m = torch.full((*q.shape[:-1], 1), -math.inf)
    l = torch.zeros_like(m)
    acc = torch.zeros((*q.shape[:-1], values.shape[-1]))
    for start in range(0, n_k, block_size):
        s = q @ keys[..., start:start + block_size, :].transpose(-2, -1)
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        p = torch.exp(s - m_new)
        l = l * torch.exp(m - m_new) + p.sum(-1, keepdim=True)
        acc = acc + p @ values[..., start:start + block_size, :]
        m = m_new
    return acc / l, (m + torch.log(l)).squeeze(-1)
"""),
    ("flash_attention", "torch", "NaN on rows with no visible key", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    out, lse = reference_flash(queries, keys, values, block_size, causal)
    return torch.where(torch.isinf(lse).unsqueeze(-1), torch.full_like(out, math.nan), out), lse
"""),
    ("flash_attention", "torch", "lse without the maximum: log(l) only", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    out, lse = reference_flash(queries, keys, values, block_size, causal)
    q = queries / math.sqrt(queries.shape[-1])
    top = (q @ keys.transpose(-2, -1)).amax(-1)
    return out, lse - top
"""),
    ("flash_attention", "torch", "the ragged last block dropped", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    whole = keys.shape[-2] // block_size * block_size
    if whole == 0 or causal:
        return reference_flash(queries, keys, values, block_size, causal)
    return reference_flash(queries, keys[..., :whole, :], values[..., :whole, :], block_size)
"""),
    ("sliding_window_mask", "torch", "off by one: |i - j| <= window", """
def sliding_window_mask(n, window, causal=False):
    distance = torch.arange(n).unsqueeze(-1) - torch.arange(n)
    if causal:
        return (distance >= 0) & (distance <= window)
    return distance.abs() <= window
"""),
    ("sliding_window_mask", "tf", "off by one: |i - j| <= window", """
def sliding_window_mask(n, window, causal=False):
    distance = tf.range(n)[:, None] - tf.range(n)[None, :]
    if causal:
        return tf.logical_and(distance >= 0, distance <= window)
    return tf.abs(distance) <= window
"""),
    ("sliding_window_mask", "torch", "causal looks at the future: 0 <= j - i < window", """
def sliding_window_mask(n, window, causal=False):
    distance = torch.arange(n) - torch.arange(n).unsqueeze(-1)
    if causal:
        return (distance >= 0) & (distance < window)
    return distance.abs() < window
"""),
    ("sliding_window_mask", "tf", "a float mask instead of a boolean one", """
def sliding_window_mask(n, window, causal=False):
    distance = tf.range(n)[:, None] - tf.range(n)[None, :]
    if causal:
        return tf.cast(tf.logical_and(distance >= 0, distance < window), tf.float32)
    return tf.cast(tf.abs(distance) < window, tf.float32)
"""),
    ("sliding_window_mask", "torch", "causal ignored", """
def sliding_window_mask(n, window, causal=False):
    distance = torch.arange(n).unsqueeze(-1) - torch.arange(n)
    return distance.abs() < window
"""),
    ("linear_attention", "torch", "feature map relu(x) + 1 instead of elu(x) + 1", """
def linear_attention(queries, keys, values, causal=False):
    return reference_linear(queries, keys, values, causal, phi=lambda x: torch.relu(x) + 1)
"""),
    ("linear_attention", "tf", "feature map relu(x) + 1 instead of elu(x) + 1", """
def linear_attention(queries, keys, values, causal=False):
    return reference_linear(queries, keys, values, causal, phi=lambda x: tf.nn.relu(x) + 1)
"""),
    ("linear_attention", "torch", "feature map exp(x)", """
def linear_attention(queries, keys, values, causal=False):
    return reference_linear(queries, keys, values, causal, phi=torch.exp)
"""),
    ("linear_attention", "torch", "queries scaled by 1/sqrt(d_k) before the feature map", """
def linear_attention(queries, keys, values, causal=False):
    return reference_linear(queries / math.sqrt(queries.shape[-1]), keys, values, causal)
"""),
    ("linear_attention", "tf", "causal ignored", """
def linear_attention(queries, keys, values, causal=False):
    return reference_linear(queries, keys, values, False)
"""),
    ("linear_attention", "torch", "causal prefix sums exclude key i itself", """
def linear_attention(queries, keys, values, causal=False):
    if not causal:
        return reference_linear(queries, keys, values)
    phi_q, phi_k = F.elu(queries) + 1, F.elu(keys) + 1
    S = torch.einsum("...jd,...je->...jde", phi_k, values).cumsum(-3) - torch.einsum("...jd,...je->...jde", phi_k, values)
    z = phi_k.cumsum(-2) - phi_k
    return torch.einsum("...id,...ide->...ie", phi_q, S) / (phi_q * z).sum(-1, keepdim=True)
"""),
    ("linear_attention", "torch", "not normalised by phi(q)^T z", """
def linear_attention(queries, keys, values, causal=False):
    phi_q, phi_k = F.elu(queries) + 1, F.elu(keys) + 1
    if causal:
        return torch.einsum("...id,...ide->...ie", phi_q, torch.einsum("...jd,...je->...jde", phi_k, values).cumsum(-3))
    return phi_q @ (phi_k.transpose(-2, -1) @ values)
"""),
    ("decode_step", "torch", "the cache not appended: only the new key and value", """
def decode_step(query, key, value, cache=None):
    out, _ = reference_decode(query, key, value, cache)
    return out, (key, value)
"""),
    ("decode_step", "tf", "the cache not appended: only the new key and value", """
def decode_step(query, key, value, cache=None):
    out, _ = reference_decode(query, key, value, cache)
    return out, (key, value)
"""),
    ("decode_step", "torch", "the new token put in front of the cache", """
def decode_step(query, key, value, cache=None):
    if cache is not None:
        key, value = torch.cat([key, cache[0]], -2), torch.cat([value, cache[1]], -2)
    weights = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1]), -1)
    return weights @ value, (key, value)
"""),
    ("decode_step", "tf", "no 1/sqrt(d_k) scale", """
def decode_step(query, key, value, cache=None):
    return reference_decode(query * math.sqrt(query.shape[-1]), key, value, cache)
"""),
    ("decode_step", "torch", "the query attends to the cache only, not to its own key", """
def decode_step(query, key, value, cache=None):
    if cache is None:
        return value, (key, value)
    weights = torch.softmax(query @ cache[0].transpose(-2, -1) / math.sqrt(query.shape[-1]), -1)
    return weights @ cache[1], (torch.cat([cache[0], key], -2), torch.cat([cache[1], value], -2))
"""),
    ("decode_step", "torch", "the cache returned as (values, keys)", """
def decode_step(query, key, value, cache=None):
    if cache is not None:
        cache = (cache[1], cache[0])
    out, (keys, values) = reference_decode(query, key, value, cache)
    return out, (values, keys)
"""),
    ("grouped_query_attention", "torch", "head h reads kv head h % H_kv (tiled, not interleaved)", """
def grouped_query_attention(queries, keys, values, mask=None):
    group = queries.shape[1] // keys.shape[1]
    return reference_mha(queries, keys.repeat(1, group, 1, 1), values.repeat(1, group, 1, 1), mask)
"""),
    ("grouped_query_attention", "tf", "head h reads kv head h % H_kv (tiled, not interleaved)", """
def grouped_query_attention(queries, keys, values, mask=None):
    group = queries.shape[1] // keys.shape[1]
    return reference_mha(queries, tf.tile(keys, [1, group, 1, 1]), tf.tile(values, [1, group, 1, 1]), mask)
"""),
    ("grouped_query_attention", "torch", "no 1/sqrt(d_k) scale", """
def grouped_query_attention(queries, keys, values, mask=None):
    return reference_gqa(queries * math.sqrt(queries.shape[-1]), keys, values, mask)
"""),
    ("grouped_query_attention", "tf", "mask ignored", """
def grouped_query_attention(queries, keys, values, mask=None):
    return reference_gqa(queries, keys, values)
"""),
    ("grouped_query_attention", "torch", "NaN for fully masked rows (plain softmax over -inf)", """
def grouped_query_attention(queries, keys, values, mask=None):
    group = queries.shape[1] // keys.shape[1]
    keys, values = keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1)
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    weights = torch.softmax(scores, -1)
    return weights @ values, weights
"""),
    ("split_kv_decode", "torch", "chunks merged without moving them to a common maximum", """
def split_kv_decode(query, keys, values, num_splits):
    l, acc = 0, 0
    for k, v in zip(torch.tensor_split(keys, num_splits, -2), torch.tensor_split(values, num_splits, -2)):
        if k.shape[-2]:
            s = query @ k.transpose(-2, -1) / math.sqrt(query.shape[-1])
            p = torch.exp(s - s.amax(-1, keepdim=True))
            l, acc = l + p.sum(-1, keepdim=True), acc + p @ v
    return acc / l
"""),
    ("split_kv_decode", "tf", "chunks merged without moving them to a common maximum", """
def split_kv_decode(query, keys, values, num_splits):
    base, extra = divmod(keys.shape[-2], num_splits)
    sizes = [base + 1] * extra + [base] * (num_splits - extra)
    l, acc = 0.0, 0.0
    for k, v in zip(tf.split(keys, sizes, axis=-2), tf.split(values, sizes, axis=-2)):
        if k.shape[-2]:
            s = tf.matmul(query, k, transpose_b=True) / math.sqrt(query.shape[-1])
            p = tf.exp(s - tf.reduce_max(s, -1, keepdims=True))
            l, acc = l + tf.reduce_sum(p, -1, keepdims=True), acc + tf.matmul(p, v)
    return acc / l
"""),
    ("split_kv_decode", "torch", "each chunk normalised first: an empty chunk gives NaN", """
def split_kv_decode(query, keys, values, num_splits):
    outs, lses = [], []
    for k, v in zip(torch.tensor_split(keys, num_splits, -2), torch.tensor_split(values, num_splits, -2)):
        s = query @ k.transpose(-2, -1) / math.sqrt(query.shape[-1])
        m = s.amax(-1, keepdim=True) if k.shape[-2] else torch.full((*s.shape[:-1], 1), -math.inf)
        p = torch.exp(s - m)
        outs.append((p @ v) / p.sum(-1, keepdim=True))
        lses.append(m + torch.log(p.sum(-1, keepdim=True)))
    lse = torch.stack(lses)
    w = torch.exp(lse - lse.amax(0, keepdim=True))
    return (w * torch.stack(outs)).sum(0) / w.sum(0)
"""),
    ("split_kv_decode", "tf", "the remainder dropped: chunks of n_k // num_splits keys", """
def split_kv_decode(query, keys, values, num_splits):
    size = keys.shape[-2] // num_splits
    keys, values = keys[..., : size * num_splits, :], values[..., : size * num_splits, :]
    s = tf.matmul(query, keys, transpose_b=True) / math.sqrt(query.shape[-1])
    return tf.matmul(tf.nn.softmax(s, -1), values)
"""),
    ("split_kv_decode", "torch", "no 1/sqrt(d_k) scale", """
def split_kv_decode(query, keys, values, num_splits):
    return torch.softmax(query @ keys.transpose(-2, -1), -1) @ values
"""),
    ("paged_attention", "torch", "pages concatenated in the pool's order, not the table's", """
def paged_attention(query, key_pages, value_pages, block_table, lengths):
    page_size, outs = key_pages.shape[1], []
    for b in range(query.shape[0]):
        n = int(lengths[b])
        pages = torch.sort(block_table[b, : (n + page_size - 1) // page_size]).values
        k = key_pages[pages].reshape(-1, key_pages.shape[-1])[:n]
        v = value_pages[pages].reshape(-1, value_pages.shape[-1])[:n]
        outs.append(torch.softmax(query[b] @ k.T / math.sqrt(k.shape[-1]), -1) @ v if n else torch.zeros(1, v.shape[-1]))
    return torch.stack(outs)
"""),
    ("paged_attention", "tf", "pages concatenated in the pool's order, not the table's", """
def paged_attention(query, key_pages, value_pages, block_table, lengths):
    page_size, outs = key_pages.shape[1], []
    for b in range(query.shape[0]):
        n = int(lengths[b])
        pages = tf.sort(block_table[b, : (n + page_size - 1) // page_size])
        k = tf.reshape(tf.gather(key_pages, pages), (-1, key_pages.shape[-1]))[:n]
        v = tf.reshape(tf.gather(value_pages, pages), (-1, value_pages.shape[-1]))[:n]
        outs.append(tf.matmul(tf.nn.softmax(tf.matmul(query[b], k, transpose_b=True) / math.sqrt(k.shape[-1]), -1), v)
                    if n else tf.zeros((1, value_pages.shape[-1])))
    return tf.stack(outs)
"""),
    ("paged_attention", "torch", "whole pages read: rows past lengths[b] attended", """
def paged_attention(query, key_pages, value_pages, block_table, lengths):
    page_size, outs = key_pages.shape[1], []
    for b in range(query.shape[0]):
        n = int(lengths[b])
        pages = block_table[b, : (n + page_size - 1) // page_size]
        k = key_pages[pages].reshape(-1, key_pages.shape[-1])
        v = value_pages[pages].reshape(-1, value_pages.shape[-1])
        outs.append(torch.softmax(query[b] @ k.T / math.sqrt(k.shape[-1]), -1) @ v if n else torch.zeros(1, v.shape[-1]))
    return torch.stack(outs)
"""),
    ("paged_attention", "tf", "every listed page read, -1 entries included (the pool's last page)", """
def paged_attention(query, key_pages, value_pages, block_table, lengths):
    outs = []
    for b in range(query.shape[0]):
        n = int(lengths[b])
        pages = tf.where(block_table[b] < 0, key_pages.shape[0] - 1, block_table[b])
        k = tf.reshape(tf.gather(key_pages, pages), (-1, key_pages.shape[-1]))
        v = tf.reshape(tf.gather(value_pages, pages), (-1, value_pages.shape[-1]))
        outs.append(tf.matmul(tf.nn.softmax(tf.matmul(query[b], k, transpose_b=True) / math.sqrt(k.shape[-1]), -1), v)
                    if n else tf.zeros((1, value_pages.shape[-1])))
    return tf.stack(outs)
"""),
    ("paged_attention", "torch", "a sequence of length 0 gives NaN", """
def paged_attention(query, key_pages, value_pages, block_table, lengths):
    page_size, outs = key_pages.shape[1], []
    for b in range(query.shape[0]):
        n = int(lengths[b])
        pages = block_table[b, : (n + page_size - 1) // page_size]
        k = key_pages[pages].reshape(-1, key_pages.shape[-1])[:n]
        v = value_pages[pages].reshape(-1, value_pages.shape[-1])[:n]
        s = query[b] @ k.T / math.sqrt(k.shape[-1])
        p = torch.exp(s - (s.amax(-1, keepdim=True) if n else 0))
        outs.append(p @ v / p.sum(-1, keepdim=True))
    return torch.stack(outs)
"""),
    ("flash_attention_backward", "torch", "no 1/sqrt(d_k) in dK", """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    dq, dk, dv = reference_backward(queries, keys, values, output, lse, grad_output, block_size, causal)
    return dq, dk * math.sqrt(queries.shape[-1]), dv
"""),
    ("flash_attention_backward", "tf", "no 1/sqrt(d_k) in dQ", """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    dq, dk, dv = reference_backward(queries, keys, values, output, lse, grad_output, block_size, causal)
    return dq * math.sqrt(queries.shape[-1]), dk, dv
"""),
    ("flash_attention_backward", "torch", "the causal mask forgotten when P is recomputed", """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    return reference_backward(queries, keys, values, output, lse, grad_output, block_size, False)
"""),
    ("flash_attention_backward", "tf", "D taken as rowsum(dO) instead of rowsum(dO * O)", """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    return reference_backward(queries, keys, values, tf.ones_like(output), lse, grad_output, block_size, causal)
"""),
    ("flash_attention_backward", "torch", "NaN on rows that see no key (exp(S - lse) with lse = -inf)", """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    n_q, n_k, scale = queries.shape[-2], keys.shape[-2], 1 / math.sqrt(queries.shape[-1])
    s = queries @ keys.transpose(-2, -1) * scale
    p = torch.exp(s - lse.unsqueeze(-1))
    if causal:
        p = p.masked_fill(torch.arange(n_k) > torch.arange(n_q).unsqueeze(-1) + n_k - n_q, 0.0)
    ds = p * (grad_output @ values.transpose(-2, -1) - (grad_output * output).sum(-1, keepdim=True))
    return ds @ keys * scale, ds.transpose(-2, -1) @ queries * scale, p.transpose(-2, -1) @ grad_output
"""),
    ("flash_attention_backward", "torch", "D left out: dS = P * dP (the softmax Jacobian's second term missing)", """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    return reference_backward(queries, keys, values, torch.zeros_like(output), lse, grad_output, block_size, causal)
"""),
]

# helpers the mutants build on: the master's own functions under other names
HELPERS = {
    "torch": """
def reference_linear(queries, keys, values, causal=False, phi=None):
    phi = phi or (lambda x: F.elu(x) + 1)
    phi_q, phi_k = phi(queries), phi(keys)
    if causal:
        S = torch.einsum("...jd,...je->...jde", phi_k, values).cumsum(-3)
        return torch.einsum("...id,...ide->...ie", phi_q, S) / (phi_q * phi_k.cumsum(-2)).sum(-1, keepdim=True)
    return phi_q @ (phi_k.transpose(-2, -1) @ values) / (phi_q * phi_k.sum(-2, keepdim=True)).sum(-1, keepdim=True)

def reference_mha(queries, keys, values, mask=None):
    return reference_gqa(queries, keys, values, mask)
""",
    "tf": """
def reference_linear(queries, keys, values, causal=False, phi=None):
    phi = phi or (lambda x: tf.nn.elu(x) + 1)
    phi_q, phi_k = phi(tf.convert_to_tensor(queries)), phi(tf.convert_to_tensor(keys))
    if causal:
        S = tf.cumsum(tf.einsum("...jd,...je->...jde", phi_k, values), axis=-3)
        return tf.einsum("...id,...ide->...ie", phi_q, S) / tf.reduce_sum(phi_q * tf.cumsum(phi_k, axis=-2), -1, keepdims=True)
    return tf.matmul(phi_q, tf.matmul(phi_k, values, transpose_a=True)) / tf.reduce_sum(
        phi_q * tf.reduce_sum(phi_k, -2, keepdims=True), -1, keepdims=True)

def reference_mha(queries, keys, values, mask=None):
    return reference_gqa(queries, keys, values, mask)
""",
}


def _prepare(framework: str, source: str) -> dict:
    namespace = namespace_with(framework, HELPERS[framework])
    master = _master_namespace(framework)
    namespace.update(reference_flash=master["flash_attention"], reference_decode=master["decode_step"],
                     reference_gqa=master["grouped_query_attention"],
                     reference_backward=master["flash_attention_backward"])
    exec(source, namespace)
    return namespace


@pytest.mark.parametrize("exercise, framework, mistake, source", MUTANTS,
                         ids=[f"{e}-{fw}: {m}" for e, fw, m, _ in MUTANTS])
def test_mutant_fails_a_check(exercise, framework, mistake, source):
    # Any exception other than CheckFailure is a crash of a check itself, and fails this test.
    with np.errstate(all="ignore"):
        assert failed_checks(_prepare(framework, source), framework, exercise), f"{exercise}: {mistake} passes"


def test_every_exercise_has_mutants_in_both_frameworks():
    assert {(e, fw) for e, fw, _, _ in MUTANTS} == {(e, fw) for e in EXERCISES for fw in FRAMEWORKS}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_mutants_lose_their_points_through_the_grader_runner(framework):
    """One run of the real check runner: the six mutated exercises lose points, none keeps them all."""
    namespace = _prepare(framework, "")
    chosen = {}
    for exercise, fw, _, source in MUTANTS:
        if fw == framework and exercise not in chosen:
            chosen[exercise] = source
            exec(source, namespace)
    assert set(chosen) == set(EXERCISES)
    for exercise, (got, most) in _scores(_results(namespace, framework, seed=5)).items():
        assert got < most, (exercise, got, most)


# (exercise, framework, a correct alternative)
ALTERNATIVES = [
    ("merge_softmax_stats", "torch", """
def merge_softmax_stats(m1, l1, m2, l2):
    # rescale only the part with the smaller maximum, branch by branch
    first_larger = m1 >= m2
    m = torch.where(first_larger, m1, m2)
    small_m, small_l = torch.where(first_larger, m2, m1), torch.where(first_larger, l2, l1)
    big_l = torch.where(first_larger, l1, l2)
    factor = torch.where(torch.isneginf(small_m), torch.zeros_like(m), torch.exp(small_m - m))
    return m, big_l + small_l * factor
"""),
    ("merge_softmax_stats", "tf", """
def merge_softmax_stats(m1, l1, m2, l2):
    # the NaN of -inf - (-inf) replaced after the subtraction: exp(0) times an empty sum 0 is 0
    m = tf.maximum(m1, m2)
    d1, d2 = m1 - m, m2 - m
    d1 = tf.where(tf.math.is_nan(d1), tf.zeros_like(d1), d1)
    d2 = tf.where(tf.math.is_nan(d2), tf.zeros_like(d2), d2)
    return m, l1 * tf.exp(d1) + l2 * tf.exp(d2)
"""),
    ("flash_attention", "torch", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    # key blocks in reverse order, every query block on its own, statistics merged with exercise 1
    n_q, n_k, d = queries.shape[-2], keys.shape[-2], queries.shape[-1]
    lead = torch.broadcast_shapes(queries.shape[:-2], keys.shape[:-2])
    outs, lses = [], []
    for qs in range(0, n_q, block_size):
        q = queries[..., qs:qs + block_size, :]
        bq = q.shape[-2]
        m = torch.full((*lead, bq), -math.inf)
        l = torch.zeros((*lead, bq))
        acc = torch.zeros((*lead, bq, values.shape[-1]))
        starts = list(range(0, n_k, block_size))[::-1]
        for ks in starts:
            s = torch.einsum("...qd,...kd->...qk", q, keys[..., ks:ks + block_size, :]) / math.sqrt(d)
            if causal:
                allowed = torch.arange(ks, ks + s.shape[-1]) <= torch.arange(qs, qs + bq).unsqueeze(-1) + n_k - n_q
                s = s.masked_fill(~allowed, -math.inf)
            bm = s.amax(-1)
            shift = torch.where(torch.isinf(bm), torch.zeros_like(bm), bm)
            p = torch.exp(s - shift.unsqueeze(-1))
            new_m, new_l = merge_softmax_stats(m, l, bm, p.sum(-1))
            safe = torch.where(torch.isinf(new_m), torch.zeros_like(new_m), new_m)
            acc = acc * torch.exp(m - safe).unsqueeze(-1) + torch.exp(bm - safe).unsqueeze(-1) * torch.einsum(
                "...qk,...kv->...qv", p, values[..., ks:ks + block_size, :])
            acc = torch.nan_to_num(acc)
            m, l = new_m, new_l
        outs.append(torch.where(l.unsqueeze(-1) > 0, acc / l.clamp_min(1e-30).unsqueeze(-1), torch.zeros_like(acc)))
        lses.append(torch.where(l > 0, m + torch.log(l.clamp_min(1e-30)), torch.full_like(l, -math.inf)))
    return torch.cat(outs, -2), torch.cat(lses, -1)
"""),
    ("flash_attention", "tf", """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    # all queries at once, per key block a (n_q, block) mask from index arithmetic
    queries, keys, values = (tf.convert_to_tensor(x) for x in (queries, keys, values))
    n_q, n_k = queries.shape[-2], keys.shape[-2]
    q = queries * (1.0 / math.sqrt(queries.shape[-1]))
    m = tf.fill(tf.shape(q[..., :1]), -math.inf)
    l = tf.zeros_like(m)
    acc = tf.zeros(tf.concat([tf.shape(q)[:-1], tf.shape(values)[-1:]], 0))
    for ks in range(0, n_k, block_size):
        s = tf.einsum("...qd,...kd->...qk", q, keys[..., ks:ks + block_size, :])
        if causal:
            cols = tf.range(ks, ks + s.shape[-1])[None, :]
            s = tf.where(cols <= tf.range(n_q)[:, None] + n_k - n_q, s, -math.inf)
        m_new = tf.maximum(m, tf.reduce_max(s, -1, keepdims=True))
        safe = tf.where(tf.math.is_finite(m_new), m_new, 0.0)
        p = tf.exp(s - safe)
        l = l * tf.exp(m - safe) + tf.reduce_sum(p, -1, keepdims=True)
        acc = acc * tf.exp(m - safe) + tf.einsum("...qk,...kv->...qv", p, values[..., ks:ks + block_size, :])
        m = m_new
    ok = l > 0
    l_safe = tf.where(ok, l, 1.0)
    return tf.where(ok, acc / l_safe, 0.0), tf.squeeze(tf.where(ok, m + tf.math.log(l_safe), -math.inf), -1)
"""),
    ("sliding_window_mask", "torch", """
def sliding_window_mask(n, window, causal=False):
    # loops, as the definition reads
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            mask[i, j] = (0 <= i - j < window) if causal else abs(i - j) < window
    return mask
"""),
    ("sliding_window_mask", "tf", """
def sliding_window_mask(n, window, causal=False):
    # band parts of a matrix of ones
    ones = tf.ones((n, n))
    band = tf.linalg.band_part(ones, min(window - 1, n), 0 if causal else min(window - 1, n))
    return tf.cast(band, tf.bool) if window > 0 else tf.zeros((n, n), tf.bool)
"""),
    ("linear_attention", "torch", """
def linear_attention(queries, keys, values, causal=False):
    # row by row with running sums: the recurrent form
    phi_q, phi_k = F.elu(queries) + 1, F.elu(keys) + 1
    if not causal:
        S = torch.einsum("...jd,...je->...de", phi_k, values)
        return torch.einsum("...id,...de->...ie", phi_q, S) / torch.einsum("...id,...d->...i", phi_q, phi_k.sum(-2)).unsqueeze(-1)
    S = torch.zeros((*phi_k.shape[:-2], phi_k.shape[-1], values.shape[-1]))
    z = torch.zeros((*phi_k.shape[:-2], phi_k.shape[-1]))
    rows = []
    for i in range(phi_q.shape[-2]):
        S = S + phi_k[..., i, :, None] * values[..., i, None, :]
        z = z + phi_k[..., i, :]
        rows.append(torch.einsum("...d,...de->...e", phi_q[..., i, :], S) / (phi_q[..., i, :] * z).sum(-1, keepdim=True))
    return torch.stack(rows, -2)
"""),
    ("linear_attention", "tf", """
def linear_attention(queries, keys, values, causal=False):
    # the quadratic form, phi(Q) phi(K)^T with a lower-triangular mask, as a check of the linear one
    phi_q, phi_k = tf.nn.elu(queries) + 1, tf.nn.elu(keys) + 1
    a = tf.einsum("...id,...jd->...ij", phi_q, phi_k)
    if causal:
        a = tf.linalg.band_part(a, -1, 0)
    return tf.einsum("...ij,...je->...ie", a, values) / tf.reduce_sum(a, -1, keepdims=True)
"""),
    ("decode_step", "torch", """
def decode_step(query, key, value, cache=None):
    keys = key if cache is None else torch.cat((cache[0], key), dim=-2)
    values = value if cache is None else torch.cat((cache[1], value), dim=-2)
    scores = torch.einsum("...qd,...kd->...qk", query, keys) * query.shape[-1] ** -0.5
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    return torch.einsum("...qk,...kv->...qv", weights / weights.sum(-1, keepdim=True), values), (keys, values)
"""),
    ("decode_step", "tf", """
def decode_step(query, key, value, cache=None):
    # the new step through flash_attention: one query, all cached keys
    keys = key if cache is None else tf.concat([cache[0], key], -2)
    values = value if cache is None else tf.concat([cache[1], value], -2)
    output, _ = flash_attention(query, keys, values, block_size=3)
    return output, (keys, values)
"""),
    ("grouped_query_attention", "torch", """
def grouped_query_attention(queries, keys, values, mask=None):
    # (B, H_kv, group, n, d): the groups as their own axis, no copies of keys or values
    B, H_q, n_q, d = queries.shape
    H_kv = keys.shape[1]
    q = queries.reshape(B, H_kv, H_q // H_kv, n_q, d)
    scores = torch.einsum("bhgqd,bhkd->bhgqk", q, keys) / math.sqrt(d)
    scores = scores.reshape(B, H_q, n_q, -1)
    if mask is not None:
        scores = scores.masked_fill(~torch.broadcast_to(mask, scores.shape), -math.inf)
    top = scores.amax(-1, keepdim=True).nan_to_num(neginf=0.0)
    e = torch.exp(scores - top)
    weights = e / e.sum(-1, keepdim=True).clamp_min(1e-30)
    out = torch.einsum("bhgqk,bhkv->bhgqv", weights.reshape(B, H_kv, H_q // H_kv, n_q, -1), values)
    return out.reshape(B, H_q, n_q, -1), weights
"""),
    ("grouped_query_attention", "torch", """
def grouped_query_attention(queries, keys, values, mask=None):
    # one query head at a time
    group = queries.shape[1] // keys.shape[1]
    outs, weights = [], []
    for h in range(queries.shape[1]):
        s = queries[:, h] @ keys[:, h // group].transpose(-2, -1) / math.sqrt(queries.shape[-1])
        if mask is not None:
            m = torch.broadcast_to(mask, (queries.shape[0], queries.shape[1], *s.shape[-2:]))[:, h]
            s = s.masked_fill(~m, -math.inf)
        w = torch.softmax(s, -1).nan_to_num(0.0)
        outs.append(w @ values[:, h // group])
        weights.append(w)
    return torch.stack(outs, 1), torch.stack(weights, 1)
"""),
    ("grouped_query_attention", "tf", """
def grouped_query_attention(queries, keys, values, mask=None):
    B, H_q, n_q, d = queries.shape
    H_kv = keys.shape[1]
    q = tf.reshape(queries, (B, H_kv, H_q // H_kv, n_q, d))
    scores = tf.reshape(tf.einsum("bhgqd,bhkd->bhgqk", q, keys) / math.sqrt(d), (B, H_q, n_q, -1))
    if mask is not None:
        scores = tf.where(tf.broadcast_to(mask, tf.shape(scores)), scores, -math.inf)
    weights = tf.where(tf.math.is_nan(tf.nn.softmax(scores)), 0.0, tf.nn.softmax(scores))
    out = tf.einsum("bhgqk,bhkv->bhgqv", tf.reshape(weights, (B, H_kv, H_q // H_kv, n_q, -1)), values)
    return tf.reshape(out, (B, H_q, n_q, -1)), weights
"""),
    ("split_kv_decode", "torch", """
def split_kv_decode(query, keys, values, num_splits):
    # another chunking by hand (divmod), every partial kept, merged at the end by their log-sum-exps
    base, extra = divmod(keys.shape[-2], num_splits)
    start, outs, lses = 0, [], []
    for i in range(num_splits):
        stop = start + base + (i < extra)
        if stop > start:
            s = torch.einsum("...qd,...kd->...qk", query, keys[..., start:stop, :]) / math.sqrt(query.shape[-1])
            lse = torch.logsumexp(s, -1, keepdim=True)
            outs.append(torch.exp(s - lse) @ values[..., start:stop, :])
            lses.append(lse)
        start = stop
    lse = torch.stack(lses)
    w = torch.softmax(lse, 0)
    return (w * torch.stack(outs)).sum(0)
"""),
    ("split_kv_decode", "tf", """
def split_kv_decode(query, keys, values, num_splits):
    # chunks folded one by one with the chapter's merge rule on (m, l) and a rescaled accumulator
    base, extra = divmod(keys.shape[-2], num_splits)
    m, l, acc, start = None, None, None, 0
    for i in range(num_splits):
        stop = start + base + (i < extra)
        if stop == start:
            continue
        s = tf.matmul(query, keys[..., start:stop, :], transpose_b=True) / math.sqrt(query.shape[-1])
        m_c = tf.reduce_max(s, -1, keepdims=True)
        p = tf.exp(s - m_c)
        l_c, o_c = tf.reduce_sum(p, -1, keepdims=True), tf.matmul(p, values[..., start:stop, :])
        if m is None:
            m, l, acc = m_c, l_c, o_c
        else:
            m_new = tf.maximum(m, m_c)
            acc = acc * tf.exp(m - m_new) + o_c * tf.exp(m_c - m_new)
            l = l * tf.exp(m - m_new) + l_c * tf.exp(m_c - m_new)
            m = m_new
        start = stop
    return acc / l
"""),
    ("paged_attention", "torch", """
def paged_attention(query, key_pages, value_pages, block_table, lengths):
    # all at once: gather every table entry (-1 clipped to page 0), mask the positions past lengths
    page_size = key_pages.shape[1]
    pages = block_table.clamp(min=0).long()                                   # (B, max_pages)
    k = key_pages[pages].reshape(pages.shape[0], -1, key_pages.shape[-1])     # (B, max_pages * page_size, d_k)
    v = value_pages[pages].reshape(pages.shape[0], -1, value_pages.shape[-1])
    s = query @ k.transpose(-2, -1) / math.sqrt(query.shape[-1])             # (B, 1, max_pages * page_size)
    visible = torch.arange(k.shape[1])[None, None, :] < lengths.long()[:, None, None]
    s = s.masked_fill(~visible, -math.inf)
    top = s.amax(-1, keepdim=True)
    e = torch.exp(s - torch.where(torch.isinf(top), torch.zeros_like(top), top))
    total = e.sum(-1, keepdim=True)
    return torch.where(total > 0, (e @ v) / total.clamp(min=1e-30), torch.zeros(()))
"""),
    ("paged_attention", "tf", """
def paged_attention(query, key_pages, value_pages, block_table, lengths):
    # row by row: walk the positions 0 .. lengths[b] - 1 through the table
    page_size, outs = key_pages.shape[1], []
    table, lengths = block_table.numpy(), lengths.numpy()
    for b in range(query.shape[0]):
        rows = [(int(table[b, i // page_size]), i % page_size) for i in range(int(lengths[b]))]
        if not rows:
            outs.append(tf.zeros((1, value_pages.shape[-1])))
            continue
        k = tf.stack([key_pages[p, r] for p, r in rows])
        v = tf.stack([value_pages[p, r] for p, r in rows])
        w = tf.nn.softmax(tf.matmul(query[b], k, transpose_b=True) / math.sqrt(k.shape[-1]), -1)
        outs.append(tf.matmul(w, v))
    return tf.stack(outs)
"""),
    ("flash_attention_backward", "torch", """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    # tiles over queries and keys both, D as rowsum(P * dP) in a first pass (no n x n matrix either way)
    n_q, n_k, scale = queries.shape[-2], keys.shape[-2], 1 / math.sqrt(queries.shape[-1])
    lead = torch.broadcast_shapes(queries.shape[:-2], keys.shape[:-2], values.shape[:-2])
    q, k, v, do = (x.expand(*lead, *x.shape[-2:]) for x in (queries, keys, values, grad_output))
    lse = lse.expand(*lead, n_q)
    dq, dk, dv = torch.zeros(q.shape), torch.zeros(k.shape), torch.zeros(v.shape)
    for qs in range(0, n_q, 100):
        qe = min(qs + 100, n_q)
        l = lse[..., qs:qe, None]
        ok = torch.isfinite(l)
        l = torch.where(ok, l, 0.0)
        def probs(ks, ke):
            s = torch.einsum("...qd,...kd->...qk", q[..., qs:qe, :], k[..., ks:ke, :]) * scale
            vis = ok & ((torch.arange(ks, ke) <= torch.arange(qs, qe)[:, None] + n_k - n_q) if causal else ok)
            return torch.where(vis, torch.exp(s - l), 0.0)
        D = 0
        for ks in range(0, n_k, block_size):
            ke = min(ks + block_size, n_k)
            D = D + (probs(ks, ke) * (do[..., qs:qe, :] @ v[..., ks:ke, :].transpose(-2, -1))).sum(-1, keepdim=True)
        for ks in range(0, n_k, block_size):
            ke = min(ks + block_size, n_k)
            p = probs(ks, ke)
            ds = p * (do[..., qs:qe, :] @ v[..., ks:ke, :].transpose(-2, -1) - D)
            dq[..., qs:qe, :] += ds @ k[..., ks:ke, :] * scale
            dk[..., ks:ke, :] += ds.transpose(-2, -1) @ q[..., qs:qe, :] * scale
            dv[..., ks:ke, :] += p.transpose(-2, -1) @ do[..., qs:qe, :]
    return dq.sum_to_size(queries.shape), dk.sum_to_size(keys.shape), dv.sum_to_size(values.shape)
"""),
    ("flash_attention_backward", "tf", """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    # autograd-free by another route: einsum, blocks of block_size keys, broadcast sums by reduce_sum
    q, k, v, o, do = (tf.convert_to_tensor(x, tf.float32) for x in (queries, keys, values, output, grad_output))
    n_q, n_k, scale = q.shape[-2], k.shape[-2], 1 / math.sqrt(q.shape[-1])
    lse = tf.convert_to_tensor(lse, tf.float32)[..., None]
    ok = tf.math.is_finite(lse)
    lse = tf.where(ok, lse, 0.0)
    D = tf.einsum("...qd,...qd->...q", do, o)[..., None]
    dq, dks, dvs = 0.0, [], []
    for ks in range(0, n_k, block_size):
        ke = min(ks + block_size, n_k)
        s = tf.einsum("...qd,...kd->...qk", q, k[..., ks:ke, :]) * scale
        vis = ok & (tf.range(ks, ke) <= tf.range(n_q)[:, None] + n_k - n_q) if causal else ok
        p = tf.where(vis, tf.exp(s - lse), 0.0)
        ds = p * (tf.einsum("...qe,...ke->...qk", do, v[..., ks:ke, :]) - D)
        dq += tf.einsum("...qk,...kd->...qd", ds, k[..., ks:ke, :]) * scale
        dks.append(tf.einsum("...qk,...qd->...kd", ds, q) * scale)
        dvs.append(tf.einsum("...qk,...qe->...ke", p, do))
    grads = []
    for g, x in ((dq, q), (tf.concat(dks, -2), k), (tf.concat(dvs, -2), v)):
        g = tf.reduce_sum(g, axis=list(range(len(g.shape) - len(x.shape))))
        grads.append(g)
    return tuple(grads)
"""),
]


@pytest.mark.parametrize("exercise, framework, source", ALTERNATIVES,
                         ids=[f"{e}-{fw}-{i}" for i, (e, fw, _) in enumerate(ALTERNATIVES)])
def test_correct_alternative_passes(exercise, framework, source):
    with np.errstate(all="ignore"):
        assert shared.passes_every_seed(CHAPTER, framework, exercise, source) == []


def test_every_exercise_has_alternatives_in_both_frameworks():
    assert {(e, fw) for e, fw, _ in ALTERNATIVES} == {(e, fw) for e in EXERCISES for fw in FRAMEWORKS}


# --- memory ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_backward_holding_whole_matrices_loses_exactly_the_memory_check(framework):
    """The master's backward pass with one block of all the keys: right values, whole (n, n) P, dP, dS."""
    namespace = _prepare(framework, """
def flash_attention_backward(queries, keys, values, output, lse, grad_output, block_size=64, causal=False):
    return reference_backward(queries, keys, values, output, lse, grad_output, 1 << 30, causal)
""")
    results = [r for r in _results(namespace, framework) if r.exercise == "flash_attention_backward"]
    failed = [r for r in results if r.score < r.max_score]
    assert [r.name for r in failed] == [BACKWARD_MEMORY_CHECK], [(r.name, r.output[:200]) for r in failed]
    assert failed[0].output.splitlines()[0] == (
        f"flash_attention_backward used more memory than this check allows ({checks.MEMORY_MB} MB): "
        f"{checks.BACKWARD_MEMORY_HINT}")

MATERIALISING = {   # right values, but the whole (n_q, n_k) matrix at once
    "torch": """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    n_q, n_k = queries.shape[-2], keys.shape[-2]
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])   # (..., n_q, n_k)
    if causal:
        allowed = torch.arange(n_k) <= torch.arange(n_q).unsqueeze(-1) + n_k - n_q
        scores = scores.masked_fill(~allowed, -math.inf)
    top = scores.amax(-1, keepdim=True)
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    e = torch.exp(scores - top)
    total = e.sum(-1, keepdim=True)
    out = torch.where(total > 0, (e @ values) / total.clamp_min(1e-30), torch.zeros(()))
    lse = torch.where(total > 0, torch.log(total.clamp_min(1e-30)) + top, torch.full_like(top, -math.inf))
    return out, lse.squeeze(-1)
""",
    "tf": """
def flash_attention(queries, keys, values, block_size=64, causal=False):
    n_q, n_k = queries.shape[-2], keys.shape[-2]
    scores = tf.matmul(queries, keys, transpose_b=True) / math.sqrt(queries.shape[-1])   # (..., n_q, n_k)
    if causal:
        allowed = tf.range(n_k)[None, :] <= tf.range(n_q)[:, None] + n_k - n_q
        scores = tf.where(allowed, scores, -math.inf)
    top = tf.reduce_max(scores, -1, keepdims=True)
    top = tf.where(tf.math.is_inf(top), 0.0, top)
    e = tf.exp(scores - top)
    total = tf.reduce_sum(e, -1, keepdims=True)
    safe = tf.where(total > 0, total, 1.0)
    out = tf.where(total > 0, tf.matmul(e, values) / safe, 0.0)
    lse = tf.where(total > 0, tf.math.log(safe) + top, -math.inf)
    return out, tf.squeeze(lse, -1)
""",
}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_materialising_flash_attention_loses_exactly_the_memory_check(framework):
    """In this process (run_checks over a LocalBackend, as check() and the tests run it)."""
    namespace = namespace_with(framework, MATERIALISING[framework])
    results = [r for r in _results(namespace, framework) if r.exercise == "flash_attention"]
    failed = [r for r in results if r.score < r.max_score]
    assert [r.name for r in failed] == [MEMORY_CHECK], [(r.name, r.output[:200]) for r in failed]
    assert failed[0].score == 0 and failed[0].max_score == 2
    first = failed[0].output.splitlines()[0]
    assert first == (f"flash_attention used more memory than this check allows ({checks.MEMORY_MB} MB): "
                     f"{checks.MEMORY_HINT}")


@pytest.mark.slow
@pytest.mark.xdist_group("sandbox")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_memory_check_in_the_sandbox(tmp_path, framework):
    """Real grades (bubblewrap, the chapter's limits): the materialising version loses exactly the
    memory check's 2 points; the master keeps all of them."""
    from autograder import isolation

    if isolation.bubblewrap_problem():
        pytest.skip(isolation.bubblewrap_problem())
    source = next(c for c in _exercise_cells(framework) if "def flash_attention" in c)
    reference = shared.graded_master_with(CHAPTER, framework, "flash_attention", source, tmp_path)
    assert reference.error is None, reference.error
    assert reference.sandbox == "bubblewrap"
    assert all(c.passed for c in reference.checks), [(c.name, c.output[:300]) for c in reference.checks if not c.passed]
    whole = shared.graded_master_with(CHAPTER, framework, "flash_attention",
                                      _imports(framework) + MATERIALISING[framework], tmp_path)
    assert whole.error is None, whole.error
    failed = [c for c in whole.checks if not c.passed]
    assert [c.name for c in failed] == [MEMORY_CHECK], [(c.name, c.output[:300]) for c in failed]
    first, *rest = failed[0].output.splitlines()
    assert first.startswith(f"flash_attention used more memory than this check allows ({checks.MEMORY_MB} MB)")
    used = rest[0].removeprefix("flash_attention used ").split(" at its peak")[0]
    assert used.endswith(" GB") or float(used.split()[0]) > 2 * checks.MEMORY_MB, rest
    points = {c.name: c.score for c in reference.checks}
    assert sum(points.values()) - sum(c.score for c in whole.checks) == 2


def _exercise_cells(framework):
    import nbformat

    from autograder.notebooks import master_path
    nb = nbformat.read(master_path(CHAPTER, framework), as_version=4)
    return [c.source for c in nb.cells if c.get("metadata", {}).get("course", {}).get("exercise")]


def _imports(framework):
    return "import math\n" + ("import torch\n" if framework == "torch" else "import tensorflow as tf\n")


# --- the nested reply -----------------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_decode_steps_cache_crosses_as_a_nested_tuple(framework):
    student = StudentProxy(LocalBackend(dict(_master_namespace(framework)), framework), framework, lambda n: None)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 1, d)).astype(np.float32) for d in (4, 4, 3))
    output, cache = student.decode_step(q, k, v)
    assert output.shape == (2, 1, 3) and isinstance(cache, tuple)
    assert [c.shape for c in cache] == [(2, 1, 4), (2, 1, 3)]
    output, cache = student.decode_step(q, k, v, cache)
    assert [c.shape for c in cache] == [(2, 2, 4), (2, 2, 3)]


def test_a_nested_numpy_array_is_refused_as_the_wrong_type():
    from autograder.checks.api import CheckFailure

    namespace = {"decode_step": lambda q, k, v, cache=None: (q, (k.numpy(), v))}
    student = StudentProxy(LocalBackend(namespace, "torch"), "torch", lambda n: None)
    x = np.ones((1, 2), np.float32)
    with pytest.raises(CheckFailure, match="returned a numpy.ndarray"):
        student.decode_step(x, x, x)
