"""Grading checks for chapter 06 (efficiency): merging softmax statistics, flash-style attention,
sliding-window masks, linear attention, a decoding step with a KV cache, grouped-query attention.

Public checks (what `check("name")` runs in the notebook) use the notebook's worked examples and a
shape. Hidden checks compare with the oracle on random inputs and probe what the contract fixes:
empty parts and rows with no visible key (never NaN), bottom-right causal alignment with
n_q < n_k and n_q > n_k, block sizes that do not divide n, leading dimensions, d_k != d_v, the
feature map on negative inputs, a whole sequence decoded step by step, the cache's order, the head
mapping h // (H_q // H_kv).

flash_attention's memory check (hidden) runs one 8192-token sequence under a per-call bound of
MEMORY_MB: block by block the call holds ~10-20 MiB, a version that materialises the score matrix
(256 MiB per copy) holds 0.7-1 GiB and loses exactly that check's points, with a message that says
why. It is hidden because `check()` in the student's own kernel measures the kernel's process,
where earlier work and glibc's default allocator settings blur a call's peak; graded workers fix
glibc's mmap threshold (workers.ALLOCATOR_ENV), so there the measure is the call's own.
Each failure's first line ends with a fixed hint; hidden inputs are never named in it.
"""

import numpy as np

from autograder.checks.api import CheckFailure, assert_close_or_hint, assert_shape, check, detail, returned


def _normal(rng, *shape, scale=1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _pair(got, what: str) -> tuple:
    if not isinstance(got, tuple) or len(got) != 2:
        kind = returned(got)
        raise CheckFailure(detail(f"expected a tuple {what}, got something else.", f"got {kind}"))
    return got


# --- merge_softmax_stats -------------------------------------------------------------------------

MERGE_OUT = ("m", "l")
MERGE_HINT = ("m = max(m1, m2); l = l1 * exp(m1 - m) + l2 * exp(m2 - m): each sum moved to the new "
              "maximum. Where both parts are empty (m = -inf), shift by 0 so that l = 0, not NaN.")


def _stats(rng, *shape):
    """(m, l) of random parts: l in [1, n] as a real part's sum of exp(s - max) is."""
    return _normal(rng, *shape, scale=3.0), (1.0 + 7.0 * rng.random(shape)).astype(np.float32)


@check("merge_softmax_stats", public=True, fixed=True)
def test_merge_worked_example(student, oracle, rng):
    """matches the worked example, with empty parts"""
    inf = np.inf
    args = (np.array([1, -inf, 2, -inf], np.float32), np.array([2, 0, 1, 0], np.float32),
            np.array([3, 0, -inf, -inf], np.float32), np.array([1, 1, 0, 0], np.float32))
    got = _pair(student.merge_softmax_stats(*args), "(m, l)")
    for g, name in zip(got, MERGE_OUT):
        assert_shape(g, (4,), what=name)
    assert_close_or_hint(got, oracle.merge_softmax_stats(*args), MERGE_OUT, MERGE_HINT)


@check("merge_softmax_stats", points=1, public=True)
def test_merge_shape(student, oracle, rng):
    """(2, 3) statistics give (2, 3) statistics"""
    args = (*_stats(rng, 2, 3), *_stats(rng, 2, 3))
    got = _pair(student.merge_softmax_stats(*args), "(m, l)")
    for g, name in zip(got, MERGE_OUT):
        assert_shape(g, (2, 3), what=name)
    assert_close_or_hint(got, oracle.merge_softmax_stats(*args), MERGE_OUT, MERGE_HINT)


@check("merge_softmax_stats", points=1)
def test_merge_rescales_both_sums(student, oracle, rng):
    """random parts with different maxima, leading dimensions: both sums rescaled to the new maximum"""
    args = (*_stats(rng, 3, 4, 5), *_stats(rng, 3, 4, 5))
    assert_close_or_hint(student.merge_softmax_stats(*args), oracle.merge_softmax_stats(*args), MERGE_OUT,
                         MERGE_HINT)


@check("merge_softmax_stats", points=1)
def test_merge_empty_parts(student, oracle, rng):
    """an empty part (-inf, 0) leaves the other unchanged; two empty parts give (-inf, 0), not NaN"""
    m1, l1 = _stats(rng, 6)
    m2, l2 = _stats(rng, 6)
    m1[[0, 2, 4]], l1[[0, 2, 4]] = -np.inf, 0.0
    m2[[1, 2, 5]], l2[[1, 2, 5]] = -np.inf, 0.0
    for args in ((m1, l1, m2, l2), (m2, l2, m1, l1)):
        assert_close_or_hint(student.merge_softmax_stats(*args), oracle.merge_softmax_stats(*args), MERGE_OUT,
                             MERGE_HINT)


@check("merge_softmax_stats", points=1)
def test_merge_equals_one_pass(student, oracle, rng):
    """folding the statistics of 5 chunks of a row (scores up to 1e4) gives its log-sum-exp"""
    scores = _normal(rng, 4, 20, scale=5.0)
    scores[1] += 1e4
    scores[2] -= 1e4
    m = np.full(4, -np.inf, np.float32)
    l = np.zeros(4, np.float32)
    for chunk in np.split(scores, 5, axis=-1):
        chunk_m = chunk.max(axis=-1)
        chunk_l = np.exp(chunk - chunk_m[:, None]).sum(axis=-1).astype(np.float32)
        got = _pair(student.merge_softmax_stats(m, l, chunk_m, chunk_l), "(m, l)")
        assert_close_or_hint(got, oracle.merge_softmax_stats(m, l, chunk_m, chunk_l), MERGE_OUT, MERGE_HINT)
        m, l = got
    lse = np.log(np.exp(scores.astype(np.float64) - scores.max(-1, keepdims=True)).sum(-1)) + scores.max(-1)
    assert_close_or_hint(m + np.log(l), lse.astype(np.float32), "m + log(l) after every chunk", MERGE_HINT,
                         rtol=1e-5, atol=1e-3)


# --- flash_attention ------------------------------------------------------------------------------

FLASH_OUT = ("output", "lse")
FLASH_HINT = ("per key block: s = q k^T / sqrt(d_k); m_new = max(m, rowmax(s)); p = exp(s - m_new); "
              "l = l * exp(m - m_new) + rowsum(p); acc = acc * exp(m - m_new) + p v; at the end "
              "output = acc / l and lse = m + log(l).")
CAUSAL_HINT = ("causal is bottom-right aligned: query i sees key j iff j <= i + (n_k - n_q), so the "
               "last query sees every key; rows that see no key get a zero output and lse = -inf.")
MEMORY_MB = 128
MEMORY_N, MEMORY_D = 8192, 32      # one copy of the (n, n) float32 scores: 256 MiB
MEMORY_HINT = ("flash_attention must never hold the whole (n_q, n_k) score matrix (or its weights or "
               "mask): keep only one block of keys' scores, (n_q, block_size), at a time.")


def _flash_example():
    queries = np.array([[1, 0], [0, 1]], np.float32)                               # (n_q=2, d_k=2)
    keys = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [0, 0]], np.float32)         # (n_k=5, d_k=2)
    values = np.array([[1], [2], [3], [4], [5]], np.float32)                       # (n_k=5, d_v=1)
    return queries, keys, values


def _qkv(rng, batch, n_q, n_k, d_k, d_v, scale=1.0):
    return (_normal(rng, *batch, n_q, d_k, scale=scale), _normal(rng, *batch, n_k, d_k, scale=scale),
            _normal(rng, *batch, n_k, d_v))


def _flash(student, oracle, args, hint=FLASH_HINT, **kwargs):
    got = _pair(student.flash_attention(*args, **kwargs), "(output, lse)")
    want = oracle.flash_attention(*args, **kwargs)
    for g, w, name in zip(got, want, FLASH_OUT):
        assert_shape(g, w.shape, what=name)
    assert_close_or_hint(got, want, FLASH_OUT, hint, atol=2e-5, rtol=2e-4)


@check("flash_attention", public=True, fixed=True)
def test_flash_worked_example(student, oracle, rng):
    """matches the worked example, without and with causal, block_size=2"""
    _flash(student, oracle, _flash_example(), block_size=2)
    _flash(student, oracle, _flash_example(), CAUSAL_HINT, block_size=2, causal=True)


@check("flash_attention", points=1, public=True)
def test_flash_shapes(student, oracle, rng):
    """(2, 3, 8, 4) queries, (2, 3, 10, 4) keys, (2, 3, 10, 6) values give (2, 3, 8, 6) and (2, 3, 8)"""
    _flash(student, oracle, _qkv(rng, (2, 3), n_q=8, n_k=10, d_k=4, d_v=6), block_size=4)


@check("flash_attention", points=1)
def test_flash_ragged_blocks(student, oracle, rng):
    """random inputs, n_q != n_k, d_k != d_v, blocks that do not divide n_k, the default block size"""
    _flash(student, oracle, _qkv(rng, (2,), n_q=9, n_k=23, d_k=8, d_v=5), block_size=5)
    _flash(student, oracle, _qkv(rng, (2, 2), n_q=70, n_k=150, d_k=16, d_v=8))
    _flash(student, oracle, _qkv(rng, (), n_q=6, n_k=11, d_k=3, d_v=2), block_size=1)
    _flash(student, oracle, _qkv(rng, (3,), n_q=6, n_k=11, d_k=3, d_v=2), block_size=64)


@check("flash_attention", points=1)
def test_flash_causal(student, oracle, rng):
    """causal, bottom-right aligned: n_q == n_k and n_q < n_k, blocks that do not divide n"""
    _flash(student, oracle, _qkv(rng, (2,), n_q=13, n_k=13, d_k=4, d_v=3), CAUSAL_HINT, block_size=4, causal=True)
    _flash(student, oracle, _qkv(rng, (2, 2), n_q=5, n_k=17, d_k=4, d_v=6), CAUSAL_HINT, block_size=3,
           causal=True)
    _flash(student, oracle, _qkv(rng, (), n_q=1, n_k=9, d_k=4, d_v=2), CAUSAL_HINT, block_size=4, causal=True)


@check("flash_attention", points=1)
def test_flash_causal_rows_without_keys(student, oracle, rng):
    """causal with n_q > n_k: the first n_q - n_k rows see no key and give zeros and lse = -inf"""
    _flash(student, oracle, _qkv(rng, (2,), n_q=12, n_k=5, d_k=4, d_v=3), CAUSAL_HINT, block_size=2, causal=True)
    _flash(student, oracle, _qkv(rng, (), n_q=7, n_k=4, d_k=2, d_v=2), CAUSAL_HINT, block_size=3, causal=True)


@check("flash_attention", points=1)
def test_flash_large_scores(student, oracle, rng):
    """scores in the hundreds, whose row maximum changes from block to block: no overflow, no NaN"""
    _flash(student, oracle, _qkv(rng, (2,), n_q=6, n_k=20, d_k=16, d_v=4, scale=8.0), block_size=3)
    _flash(student, oracle, _qkv(rng, (2,), n_q=20, n_k=20, d_k=16, d_v=4, scale=8.0), CAUSAL_HINT, block_size=6,
           causal=True)


@check("flash_attention", points=2, memory_mb=MEMORY_MB, memory_hint=MEMORY_HINT)
def test_flash_memory(student, oracle, rng):
    """a sequence of 8192 tokens without ever holding its 8192 x 8192 scores, with and without causal"""
    queries, keys, values = _qkv(rng, (), n_q=MEMORY_N, n_k=MEMORY_N, d_k=MEMORY_D, d_v=MEMORY_D)
    rows = np.sort(rng.choice(MEMORY_N, size=48, replace=False))
    # blocks of 512: a loop over query and key blocks visits (n / 512)^2 = 256 tiles, which keeps
    # the check within seconds on a busy 2-core machine; all 8192 queries against one block of
    # 512 keys is 16 MiB per copy, well inside the bound
    for causal in (False, True):
        got = _pair(student.flash_attention(queries, keys, values, block_size=512, causal=causal), "(output, lse)")
        for g, name, shape in zip(got, FLASH_OUT, ((MEMORY_N, MEMORY_D), (MEMORY_N,))):
            assert_shape(g, shape, what=name)
        # the oracle on the sampled rows only: row i sees keys 0..i when causal (n_q == n_k)
        want_out = np.zeros((len(rows), MEMORY_D), np.float32)
        want_lse = np.zeros(len(rows), np.float32)
        for index, i in enumerate(rows):
            last = i + 1 if causal else MEMORY_N
            out, lse = oracle.flash_attention(queries[i:i + 1], keys[:last], values[:last])
            want_out[index], want_lse[index] = out[0], lse[0]
        assert_close_or_hint((got[0][rows], got[1][rows]), (want_out, want_lse), FLASH_OUT,
                             CAUSAL_HINT if causal else FLASH_HINT, atol=2e-5, rtol=2e-4)


# --- sliding_window_mask --------------------------------------------------------------------------

WINDOW_HINT = ("True iff |i - j| < window (each side), or 0 <= i - j < window when causal (itself and "
               "the window - 1 tokens before it); a bool (n, n) tensor.")


def _window(student, oracle, n, window, causal):
    got = student.sliding_window_mask(n, window, causal=causal)
    assert_shape(got, (n, n), what="mask")
    assert_close_or_hint(got, oracle.sliding_window_mask(n, window, causal=causal), "mask", WINDOW_HINT)


@check("sliding_window_mask", public=True, fixed=True)
def test_window_worked_example(student, oracle, rng):
    """matches the worked example: n = 5, window = 2"""
    _window(student, oracle, 5, 2, causal=False)


@check("sliding_window_mask", public=True, fixed=True)
def test_window_causal_example(student, oracle, rng):
    """matches the worked example with causal=True"""
    _window(student, oracle, 5, 2, causal=True)


@check("sliding_window_mask", points=1)
def test_window_edges(student, oracle, rng):
    """window 1 (the diagonal), a window as long as the sequence, and one longer"""
    for n, window in ((6, 1), (6, 6), (4, 9), (1, 1)):
        for causal in (False, True):
            _window(student, oracle, n, window, causal)


@check("sliding_window_mask", points=1)
def test_window_random_sizes(student, oracle, rng):
    """larger masks with random windows, with and without causal"""
    for n, window in ((37, int(rng.integers(2, 9))), (64, int(rng.integers(9, 30)))):
        for causal in (False, True):
            _window(student, oracle, n, window, causal)


# --- linear_attention -----------------------------------------------------------------------------

LINEAR_HINT = ("phi(x) = elu(x) + 1 on queries and keys, no 1/sqrt(d_k); out_i = phi(q_i)^T S / "
               "phi(q_i)^T z with S = sum_j phi(k_j) v_j^T and z = sum_j phi(k_j).")
LINEAR_CAUSAL_HINT = ("causal: S_i and z_i are prefix sums over keys j <= i, key i itself included "
                      "(cumulative sums along the sequence).")


def _linear(student, oracle, args, hint=LINEAR_HINT, **kwargs):
    got = student.linear_attention(*args, **kwargs)
    want = oracle.linear_attention(*args, **kwargs)
    assert_shape(got, want.shape, what="output")
    assert_close_or_hint(got, want, "output", hint, atol=2e-5, rtol=2e-4)


@check("linear_attention", public=True, fixed=True)
def test_linear_worked_example(student, oracle, rng):
    """matches the worked example"""
    args = (np.zeros((1, 2), np.float32), np.array([[1, 0], [-1, 0]], np.float32), np.array([[1], [3]], np.float32))
    _linear(student, oracle, args)


@check("linear_attention", points=1, public=True)
def test_linear_shapes(student, oracle, rng):
    """(2, 5, 4) queries, (2, 7, 4) keys, (2, 7, 3) values give a (2, 5, 3) output"""
    _linear(student, oracle, _qkv(rng, (2,), n_q=5, n_k=7, d_k=4, d_v=3))


@check("linear_attention", points=1)
def test_linear_general(student, oracle, rng):
    """random inputs with two leading dimensions, n_q != n_k, d_k != d_v, and d_k = 64"""
    _linear(student, oracle, _qkv(rng, (2, 3), n_q=9, n_k=14, d_k=6, d_v=5))
    _linear(student, oracle, _qkv(rng, (2,), n_q=4, n_k=6, d_k=64, d_v=2))


@check("linear_attention", points=1)
def test_linear_causal(student, oracle, rng):
    """causal prefix sums: row i sums over keys 0..i, with leading dimensions"""
    _linear(student, oracle, _qkv(rng, (2, 2), n_q=11, n_k=11, d_k=5, d_v=3), LINEAR_CAUSAL_HINT, causal=True)
    _linear(student, oracle, _qkv(rng, (), n_q=1, n_k=1, d_k=3, d_v=2), LINEAR_CAUSAL_HINT, causal=True)


@check("linear_attention", points=1)
def test_linear_feature_map(student, oracle, rng):
    """the feature map on both signs: large negative and positive queries and keys"""
    queries, keys, values = _qkv(rng, (2,), n_q=6, n_k=8, d_k=4, d_v=3, scale=3.0)
    _linear(student, oracle, (queries, keys, values), "phi(x) = elu(x) + 1: x + 1 for x > 0, exp(x) for x <= 0.")
    _linear(student, oracle, (-np.abs(queries), -np.abs(keys), values),
            "phi(x) = elu(x) + 1: x + 1 for x > 0, exp(x) for x <= 0.")


# --- decode_step ----------------------------------------------------------------------------------

DECODE_HINT = ("append the new key and value at the end of the cache (oldest first), then attend the "
               "query to all t + 1 keys: softmax(q K^T / sqrt(d_k)) V.")


def _decode_run(student, oracle, queries, keys, values, cache=None, hint=DECODE_HINT):
    """Decode every position in turn, feeding back the cache each step returns; compare each step."""
    want_cache = cache
    outputs = []
    for t in range(queries.shape[-2]):
        step = (queries[..., t:t + 1, :], keys[..., t:t + 1, :], values[..., t:t + 1, :])
        got = _pair(student.decode_step(*step, cache), "(output, (keys, values))")
        want_out, want_cache = oracle.decode_step(*step, want_cache)
        output, cache = got
        assert_shape(output, want_out.shape, what=f"output of step {t}")
        cache = _pair(cache, "(keys, values) as the cache")
        for g, w, name in zip(cache, want_cache, ("cached keys", "cached values")):
            assert_shape(g, w.shape, what=f"{name} after step {t}")
        assert_close_or_hint(cache, want_cache, ("cached keys", "cached values"), DECODE_HINT)
        assert_close_or_hint(output, want_out, f"output of step {t}", hint)
        outputs.append(output)
    return np.concatenate(outputs, axis=-2)


@check("decode_step", public=True, fixed=True)
def test_decode_worked_example(student, oracle, rng):
    """matches the worked example: a first step without a cache, then a second step"""
    queries = np.array([[1, 0], [0, 2]], np.float32)
    keys = np.array([[1, 0], [0, 1]], np.float32)
    values = np.array([[2], [4]], np.float32)
    _decode_run(student, oracle, queries, keys, values)


@check("decode_step", points=1, public=True)
def test_decode_shapes(student, oracle, rng):
    """three steps with (2, 1, 4) queries and keys, (2, 1, 3) values: the cache grows to (2, 3, 4), (2, 3, 3)"""
    _decode_run(student, oracle, *_qkv(rng, (2,), n_q=3, n_k=3, d_k=4, d_v=3))


@check("decode_step", points=2)
def test_decode_whole_sequence_is_causal_attention(student, oracle, rng):
    """decoding 12 tokens step by step equals causal self-attention over them (leading dimensions, d_k != d_v)"""
    queries, keys, values = _qkv(rng, (2, 3), n_q=12, n_k=12, d_k=8, d_v=5)
    stacked = _decode_run(student, oracle, queries, keys, values)
    full, _ = oracle.flash_attention(queries, keys, values, causal=True)
    assert_close_or_hint(stacked, full, "outputs stacked over the steps", DECODE_HINT, atol=2e-5, rtol=2e-4)


@check("decode_step", points=1)
def test_decode_from_a_prefilled_cache(student, oracle, rng):
    """continuing from a cache of 6 tokens (a prompt) for 4 more steps"""
    queries, keys, values = _qkv(rng, (2,), n_q=10, n_k=10, d_k=4, d_v=6)
    prompt = (keys[..., :6, :], values[..., :6, :])
    _decode_run(student, oracle, queries[..., 6:, :], keys[..., 6:, :], values[..., 6:, :], cache=prompt)


@check("decode_step", points=1)
def test_decode_scale(student, oracle, rng):
    """d_k = 64 and large values: the 1/sqrt(d_k) scale"""
    _decode_run(student, oracle, *_qkv(rng, (2,), n_q=4, n_k=4, d_k=64, d_v=2, scale=2.0),
                hint="the scores are q K^T / sqrt(d_k).")


# --- grouped_query_attention ----------------------------------------------------------------------

GQA_OUT = ("output", "weights")
GQA_HINT = ("query head h uses key/value head h // (H_q // H_kv): consecutive query heads share one kv "
            "head (repeat_interleave, not tile); scores scaled by 1/sqrt(d_k).")
GQA_MASK_HINT = ("masked scores get weight 0; a fully masked row gets zero weights and a zero output, not "
                 "NaN (shift by 0 where the row maximum is -inf).")


def _gqa_inputs(rng, batch, h_q, h_kv, n_q, n_k, d_k, d_v):
    return (_normal(rng, batch, h_q, n_q, d_k), _normal(rng, batch, h_kv, n_k, d_k), _normal(rng, batch, h_kv, n_k, d_v))


def _gqa(student, oracle, args, mask=None, hint=GQA_HINT):
    kwargs = {} if mask is None else {"mask": mask}
    got = _pair(student.grouped_query_attention(*args, **kwargs), "(output, weights)")
    want = oracle.grouped_query_attention(*args, mask=mask)
    for g, w, name in zip(got, want, GQA_OUT):
        assert_shape(g, w.shape, what=name)
    assert_close_or_hint(got, want, GQA_OUT, hint, atol=2e-5, rtol=2e-4)


@check("grouped_query_attention", points=1, public=True)
def test_gqa_worked_example(student, oracle, rng):
    """the worked example: kv head 0's values are 1, kv head 1's are 2; H_q = 4 reads 1, 1, 2, 2"""
    queries, keys, _ = _gqa_inputs(rng, 1, 4, 2, 3, 5, 4, 2)
    values = np.stack([np.ones((5, 2)), 2 * np.ones((5, 2))])[None].astype(np.float32)   # (1, 2, 5, 2)
    _gqa(student, oracle, (queries, keys, values))


@check("grouped_query_attention", points=1, public=True)
def test_gqa_shapes(student, oracle, rng):
    """(2, 4, 3, 8) queries with (2, 2, 5, 8) keys and (2, 2, 5, 6) values give (2, 4, 3, 6) and (2, 4, 3, 5)"""
    _gqa(student, oracle, _gqa_inputs(rng, 2, 4, 2, 3, 5, 8, 6))


@check("grouped_query_attention", points=1)
def test_gqa_head_mapping(student, oracle, rng):
    """8 query heads over 2 and over 4 kv heads, random inputs"""
    _gqa(student, oracle, _gqa_inputs(rng, 2, 8, 2, 4, 6, 5, 3))
    _gqa(student, oracle, _gqa_inputs(rng, 1, 8, 4, 3, 7, 4, 4))


@check("grouped_query_attention", points=1)
def test_gqa_multi_query_and_multi_head(student, oracle, rng):
    """H_kv = 1 (multi-query) and H_kv = H_q (ordinary multi-head)"""
    _gqa(student, oracle, _gqa_inputs(rng, 2, 6, 1, 4, 5, 4, 3))
    _gqa(student, oracle, _gqa_inputs(rng, 2, 3, 3, 4, 5, 4, 3))


@check("grouped_query_attention", points=1)
def test_gqa_mask(student, oracle, rng):
    """a broadcast (B, 1, n_q, n_k) mask with fully masked rows, and a causal (n_q, n_k) mask"""
    args = _gqa_inputs(rng, 2, 4, 2, 5, 6, 4, 3)
    mask = rng.random((2, 1, 5, 6)) < 0.6
    mask[0, 0, 1] = False
    mask[1, 0, 4] = False
    _gqa(student, oracle, args, mask, GQA_MASK_HINT)
    causal = np.arange(6)[None, :] <= np.arange(5)[:, None] + 1          # bottom-right, (5, 6)
    _gqa(student, oracle, args, causal, GQA_MASK_HINT)


@check("grouped_query_attention", points=1)
def test_gqa_scale(student, oracle, rng):
    """d_k = 64: the scores are divided by sqrt(d_k)"""
    args = _gqa_inputs(rng, 1, 4, 1, 3, 6, 64, 2)
    _gqa(student, oracle, args, hint="the scores are Q K^T / sqrt(d_k), with d_k the queries' last size.")


# --- split_kv_decode -------------------------------------------------------------------------------

SPLIT_HINT = ("cut the n_k keys into num_splits contiguous chunks (sizes differ by at most one); per chunk "
              "keep its maximum m, its sum l = sum exp(s - m) and its unnormalised output sum exp(s - m) v; "
              "merge chunks by moving each to the common maximum (multiply l and the output by exp(m - m_new)), "
              "divide by l at the end.")
EMPTY_CHUNK_HINT = ("with num_splits > n_k some chunks are empty: their part is (m = -inf, l = 0, output 0) and "
                    "must leave the others unchanged, not give NaN (shift by 0 where both maxima are -inf).")


def _split(student, oracle, query, keys, values, num_splits, hint=SPLIT_HINT):
    got = student.split_kv_decode(query, keys, values, num_splits)
    want = oracle.split_kv_decode(query, keys, values, num_splits)
    assert_shape(got, want.shape)
    assert_close_or_hint(got, want, "output", hint, atol=2e-5, rtol=2e-4)


@check("split_kv_decode", public=True, fixed=True)
def test_split_worked_example(student, oracle, rng):
    """matches the worked example: one query over 5 keys in 2 chunks"""
    query = np.array([[1, 0]], np.float32)
    keys = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [0, 0]], np.float32)
    values = np.array([[1], [2], [3], [4], [5]], np.float32)
    _split(student, oracle, query, keys, values, 2)


@check("split_kv_decode", points=1, public=True)
def test_split_shape(student, oracle, rng):
    """a (2, 3, 1, 4) query over (2, 3, 10, 4) keys and (2, 3, 10, 6) values, 3 chunks, gives (2, 3, 1, 6)"""
    _split(student, oracle, _normal(rng, 2, 3, 1, 4), _normal(rng, 2, 3, 10, 4), _normal(rng, 2, 3, 10, 6), 3)


@check("split_kv_decode", points=2)
def test_split_rescales_each_chunk(student, oracle, rng):
    """chunks whose maxima differ by far (one chunk's scores near +30, another's near -30): every partial
    sum and output moved to the common maximum"""
    query, keys = _normal(rng, 2, 1, 8), _normal(rng, 2, 24, 8)
    norm = np.linalg.norm(query, axis=-1, keepdims=True)                  # (2, 1, 1)
    shift = (30.0 * np.sqrt(8) / norm) * (query / norm)                   # q . shift / sqrt(8) = 30
    keys[:, 8:16] += shift[:, 0][:, None, :]
    keys[:, 16:] -= shift[:, 0][:, None, :]
    values = _normal(rng, 2, 24, 5)
    for splits in (3, 4, 5):
        _split(student, oracle, query, keys, values, splits)


@check("split_kv_decode", points=1)
def test_split_more_chunks_than_keys(student, oracle, rng):
    """num_splits = 7 over 4 keys (three empty chunks) and num_splits = 1: no NaN, the same output"""
    query, keys, values = _normal(rng, 3, 1, 4), _normal(rng, 3, 4, 4), _normal(rng, 3, 4, 2)
    _split(student, oracle, query, keys, values, 7, EMPTY_CHUNK_HINT)
    _split(student, oracle, query, keys, values, 1)


@check("split_kv_decode", points=1)
def test_split_long_cache_large_scores(student, oracle, rng):
    """a 1000-key cache in 8 chunks (sizes 125), then 7 chunks (sizes 143 and 142), scores of about 1e3"""
    query, keys, values = _normal(rng, 1, 16, scale=8.0), _normal(rng, 1000, 16, scale=8.0), _normal(rng, 1000, 3)
    for splits in (8, 7):
        _split(student, oracle, query, keys, values, splits)


# --- paged_attention ---------------------------------------------------------------------------------

PAGED_HINT = ("sequence b's keys are key_pages[block_table[b, 0]], key_pages[block_table[b, 1]], ... "
              "concatenated in the table's order, then only the first lengths[b] rows; attend its query to "
              "them (scores scaled by 1/sqrt(d_k)).")
PAGED_LENGTH_HINT = ("rows past lengths[b] (the tail of its last page, and pages after it, and -1 entries) "
                     "are not sequence b's: never read them; a sequence of length 0 gives zeros, not NaN.")


def _pool(rng, pages, page_size, d_k, d_v):
    """A shared pool of random key and value pages: (pages, page_size, d_k), (pages, page_size, d_v)."""
    return _normal(rng, pages, page_size, d_k), _normal(rng, pages, page_size, d_v)


def _paged(student, oracle, query, key_pages, value_pages, table, lengths, hint=PAGED_HINT):
    table, lengths = np.asarray(table, np.int64), np.asarray(lengths, np.int64)
    got = student.paged_attention(query, key_pages, value_pages, table, lengths)
    want = oracle.paged_attention(query, key_pages, value_pages, table, lengths)
    assert_shape(got, want.shape)
    assert_close_or_hint(got, want, "output", hint, atol=2e-5, rtol=2e-4)


@check("paged_attention", public=True, fixed=True)
def test_paged_worked_example(student, oracle, rng):
    """matches the worked example: two sequences in a pool of 4 pages of 2 rows"""
    key_pages = np.array([[[1, 0], [0, 1]], [[1, 1], [0, 0]], [[2, 0], [0, 2]], [[-1, 0], [0, -1]]], np.float32)
    value_pages = np.array([[[1], [2]], [[3], [4]], [[5], [6]], [[7], [8]]], np.float32)
    query = np.array([[[1, 0]], [[0, 1]]], np.float32)
    _paged(student, oracle, query, key_pages, value_pages, [[2, 0], [1, -1]], [3, 2])


@check("paged_attention", points=1, public=True)
def test_paged_shape(student, oracle, rng):
    """3 sequences, a pool of 6 pages of 4 rows, d_k = 8, d_v = 5: (3, 1, 5)"""
    key_pages, value_pages = _pool(rng, 6, 4, 8, 5)
    _paged(student, oracle, _normal(rng, 3, 1, 8), key_pages, value_pages,
           [[0, 1], [2, 3], [4, 5]], [8, 8, 8])


@check("paged_attention", points=2)
def test_paged_table_order(student, oracle, rng):
    """pages listed out of the pool's order ([4, 1, 3]) and shared between sequences (a common prompt):
    keys concatenated in the table's order, not the pool's"""
    key_pages, value_pages = _pool(rng, 6, 4, 6, 3)
    query = _normal(rng, 3, 1, 6, scale=2.0)
    table = [[4, 1, 3], [4, 1, 0], [5, 2, 1]]
    _paged(student, oracle, query, key_pages, value_pages, table, [12, 12, 12])


@check("paged_attention", points=2)
def test_paged_lengths(student, oracle, rng):
    """lengths that end inside a page, tables listing more pages than the length needs, -1 entries, a
    sequence of length 0; every unused row holds large values"""
    key_pages, value_pages = _pool(rng, 8, 4, 4, 2)
    table = np.array([[3, 5, 6, -1], [0, 7, 2, 4], [1, -1, -1, -1], [6, -1, -1, -1]])
    lengths = np.array([9, 5, 3, 0])
    used = np.zeros((8, 4), bool)
    for b, n in enumerate(lengths):
        for i in range(int(n)):
            used[table[b, i // 4], i % 4] = True
    key_pages[~used] = 40.0                                               # stale rows: large scores if read
    value_pages[~used] = 1e3
    _paged(student, oracle, _normal(rng, 4, 1, 4), key_pages, value_pages, table, lengths, PAGED_LENGTH_HINT)


@check("paged_attention", points=1)
def test_paged_scale(student, oracle, rng):
    """d_k = 64 and one page of 16 rows per sequence: scores divided by sqrt(d_k)"""
    key_pages, value_pages = _pool(rng, 3, 16, 64, 2)
    _paged(student, oracle, _normal(rng, 2, 1, 64, scale=2.0), key_pages, value_pages, [[2], [0]], [16, 11],
           "the scores are q k^T / sqrt(d_k), with d_k the query's last size.")


# --- flash_attention_backward ----------------------------------------------------------------------

BACKWARD_OUT = ("grad_queries", "grad_keys", "grad_values")
BACKWARD_HINT = ("per key block, from the saved lse: P = exp(S - lse) with S = Q K^T / sqrt(d_k); D = rowsum(dO * O) "
                 "once; dV += P^T dO; dS = P * (dO V^T - D); dQ += dS K / sqrt(d_k); dK = dS^T Q / sqrt(d_k).")
BACKWARD_CAUSAL_HINT = ("recompute P with the same bottom-right causal mask as the forward pass (P = 0 where query i "
                        "may not see key j); rows with lse = -inf see no key: they contribute nothing, never NaN.")
BACKWARD_MEMORY_HINT = ("flash_attention_backward must never hold a whole (n_q, n_k) matrix (P, dP or dS): "
                        "recompute one block of keys' probabilities, (n_q, block_size), at a time.")
BACKWARD_MEMORY_N, BACKWARD_BLOCK = 8192, 256   # per copy: 8192 x 256 floats = 8 MiB; the whole matrix: 256 MiB


def _triple(got) -> tuple:
    if not isinstance(got, tuple) or len(got) != 3:
        kind = f"a tuple of {len(got)}" if isinstance(got, tuple) else "a single value"
        raise CheckFailure(detail("expected a tuple (grad_queries, grad_keys, grad_values), got something else.",
                                  f"got {kind}"))
    return got


def _backward_inputs(oracle, rng, batch, n_q, n_k, d_k, d_v, causal=False, scale=1.0, kv_batch=None):
    """Queries, keys, values (keys and values over `kv_batch` leading dims, default `batch`), the
    forward pass's output and lse from the oracle, and a random upstream gradient."""
    kv = batch if kv_batch is None else kv_batch
    q = _normal(rng, *batch, n_q, d_k, scale=scale)
    k, v = _normal(rng, *kv, n_k, d_k, scale=scale), _normal(rng, *kv, n_k, d_v)
    out, lse = oracle.flash_attention(q, k, v, causal=causal)
    return q, k, v, out, lse, _normal(rng, *out.shape)


def _backward(student, oracle, args, hint=BACKWARD_HINT, **kwargs):
    got = _triple(student.flash_attention_backward(*args, **kwargs))
    want = oracle.flash_attention_backward(*args, **kwargs)
    for g, w, name in zip(got, want, BACKWARD_OUT):
        assert_shape(g, w.shape, what=name)
    assert_close_or_hint(got, want, BACKWARD_OUT, hint, atol=5e-5, rtol=5e-4)


def _backward_example(oracle):
    q = np.array([[1, 0], [0, 2]], np.float32)
    k = np.array([[1, 1], [0, -1], [2, 0]], np.float32)
    v = np.array([[1], [0], [-1]], np.float32)
    out, lse = oracle.flash_attention(q, k, v)
    return q, k, v, out, lse, np.ones((2, 1), np.float32)


@check("flash_attention_backward", public=True, fixed=True)
def test_backward_worked_example(student, oracle, rng):
    """matches the worked example (chapter 03's attention_backward example, block_size=2)"""
    _backward(student, oracle, _backward_example(oracle), block_size=2)


@check("flash_attention_backward", points=1, public=True)
def test_backward_shapes(student, oracle, rng):
    """(2, 3, 8, 4) queries, (2, 3, 10, 4) keys, (2, 3, 10, 6) values: gradients shaped like them"""
    _backward(student, oracle, _backward_inputs(oracle, rng, (2, 3), 8, 10, 4, 6), block_size=4)


@check("flash_attention_backward", points=2)
def test_backward_random_blocks(student, oracle, rng):
    """random inputs, n_q != n_k, d_k != d_v, blocks that do not divide n_k, the default block size"""
    _backward(student, oracle, _backward_inputs(oracle, rng, (2,), 9, 23, 8, 5), block_size=5)
    _backward(student, oracle, _backward_inputs(oracle, rng, (2, 2), 70, 150, 16, 8))
    _backward(student, oracle, _backward_inputs(oracle, rng, (), 6, 11, 3, 2), block_size=1)


@check("flash_attention_backward", points=2)
def test_backward_causal(student, oracle, rng):
    """causal, bottom-right aligned: n_q == n_k, n_q < n_k, and n_q > n_k with rows that see no key"""
    for n_q, n_k, block in ((13, 13, 4), (5, 17, 3), (12, 5, 2)):
        args = _backward_inputs(oracle, rng, (2,), n_q, n_k, 4, 3, causal=True)
        _backward(student, oracle, args, BACKWARD_CAUSAL_HINT, block_size=block, causal=True)


@check("flash_attention_backward", points=1)
def test_backward_scale(student, oracle, rng):
    """d_k = 64, scores in the tens: 1/sqrt(d_k) in dQ and in dK"""
    _backward(student, oracle, _backward_inputs(oracle, rng, (2,), 6, 20, 64, 4, scale=2.0), block_size=8,
              hint="both dQ = dS K / sqrt(d_k) and dK = dS^T Q / sqrt(d_k) carry the scale of the scores.")


@check("flash_attention_backward", points=1)
def test_backward_broadcast_keys(student, oracle, rng):
    """keys and values shared by a batch of 3 query sets (broadcast): their gradients summed over it"""
    _backward(student, oracle, _backward_inputs(oracle, rng, (3,), 7, 9, 4, 2, kv_batch=()), block_size=4,
              hint="an input broadcast over a leading dimension gets its gradient summed over it, as autograd "
                   "does: grad_keys has the keys' shape.")


@check("flash_attention_backward", points=2, memory_mb=MEMORY_MB, memory_hint=BACKWARD_MEMORY_HINT)
def test_backward_memory(student, oracle, rng):
    """the gradients of a sequence of 8192 tokens without ever holding an 8192 x 8192 matrix, with and without causal"""
    n, d = BACKWARD_MEMORY_N, MEMORY_D
    q, k, v = _qkv(rng, (), n_q=n, n_k=n, d_k=d, d_v=d)
    grad_out = _normal(rng, n, d)
    rows = np.sort(rng.choice(n, size=32, replace=False))
    for causal in (False, True):
        out, lse = _flash_rows(oracle, q, k, v, causal)
        got = _triple(student.flash_attention_backward(q, k, v, out, lse, grad_out, block_size=BACKWARD_BLOCK,
                                                       causal=causal))
        for g, name in zip(got, BACKWARD_OUT):
            assert_shape(g, (n, d), what=name)
        # dQ's sampled rows need only their own rows; dK's and dV's sampled rows only their own keys
        allowed_rows = (np.arange(n)[None, :] <= rows[:, None]) if causal else None
        want_dq = oracle._flash_backward(q[rows], k, v, out[rows], lse[rows], grad_out[rows], allowed_rows)[0]
        allowed_cols = (rows[None, :] <= np.arange(n)[:, None]) if causal else None
        _, want_dk, want_dv = oracle._flash_backward(q, k[rows], v[rows], out, lse, grad_out, allowed_cols)
        got_rows = tuple(np.asarray(g)[rows] for g in got)
        assert_close_or_hint(got_rows, tuple(w.astype(np.float32) for w in (want_dq, want_dk, want_dv)),
                             BACKWARD_OUT, BACKWARD_CAUSAL_HINT if causal else BACKWARD_HINT, atol=5e-5, rtol=5e-4)


def _flash_rows(oracle, q, k, v, causal, rows_per_call=512):
    """The oracle's forward pass of a long sequence, a block of queries at a time (the trusted side's
    memory stays small): row i sees keys 0..i when causal (n_q == n_k)."""
    out, lse = np.zeros((q.shape[0], v.shape[-1]), np.float32), np.zeros(q.shape[0], np.float32)
    for start in range(0, q.shape[0], rows_per_call):
        stop = start + rows_per_call
        if causal:   # bottom-right alignment over keys 0..stop-1: row i sees keys 0..i
            o, l = oracle.flash_attention(q[start:stop], k[:stop], v[:stop], causal=True)
        else:
            o, l = oracle.flash_attention(q[start:stop], k, v)
        out[start:stop], lse[start:stop] = o, l
    return out, lse
