"""The chapter-02 oracle against cases worked out by hand, and against properties of attention.

Every expected array below is derived in its comment, not copied from running the oracle.
"""
import math
import pkgutil
import re
import sys

import numpy as np
import pytest

import autograder.oracle
from autograder.chapters import chapters_with_exercises
from autograder.oracle import ch02_principles as oracle

T, F = True, False


def f32(x):
    return np.asarray(x, np.float32)


def assert_equal_f32(got, want, atol=1e-6):
    assert isinstance(got, np.ndarray) and got.dtype == np.float32, (type(got), getattr(got, "dtype", None))
    np.testing.assert_allclose(got, np.asarray(want, np.float64), rtol=1e-6, atol=atol)


def assert_mask(got, want):
    assert isinstance(got, np.ndarray) and got.dtype == bool, (type(got), getattr(got, "dtype", None))
    np.testing.assert_array_equal(got, np.asarray(want, bool))


# --- module names ----------------------------------------------------------------------------------

def test_oracle_modules_are_named_by_chapter_and_never_shadow_the_standard_library():
    """`oracle/math.py` or `oracle/code.py` would shadow `math` or `code` for a script run from there."""
    names = [m.name for m in pkgutil.iter_modules(autograder.oracle.__path__)]
    assert names
    for name in names:
        assert re.fullmatch(r"ch\d\d_[a-z0-9_]+", name), f"oracle/{name}.py: name it ch<NN_slug>"
        assert name not in sys.stdlib_module_names, f"oracle/{name}.py shadows the standard library"
    assert sorted(names) == sorted(r.oracle_module.rsplit(".", 1)[1] for r in chapters_with_exercises())


# --- hand-derived cases ----------------------------------------------------------------------------

def test_dot_product_scores_by_hand():
    queries = f32([[1, 0], [0, 1], [1, 1]])
    keys = f32([[1, 2], [3, -1]])
    # q0 = (1, 0): k0 -> 1, k1 -> 3;  q1 = (0, 1): 2, -1;  q2 = (1, 1): 1 + 2 = 3, 3 - 1 = 2
    assert_equal_f32(oracle.dot_product_scores(queries, keys), [[1, 3], [2, -1], [3, 2]])


def test_scaled_dot_product_scores_by_hand():
    queries = f32([[1, 1, 1, 1], [2, 0, 0, 0]])
    keys = f32([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 4]])
    # dot products [[1, 2, 4], [2, 2, 0]], divided by sqrt(4) = 2
    assert_equal_f32(oracle.scaled_dot_product_scores(queries, keys), [[0.5, 1, 2], [1, 1, 0]])


def test_additive_scores_by_hand():
    queries, keys = f32([[1, 0]]), f32([[0, 0, 0], [1, 0, 0]])
    W_q, W_k, w_v = f32([[1, -1], [0, 0]]), f32([[-1, 1], [0, 0], [0, 0]]), f32([1, -1])
    # q W_q = (1, -1). Key 0: k W_k = (0, 0) -> tanh(1) - tanh(-1) = 2 tanh(1).
    # Key 1: k W_k = (-1, 1) -> tanh(0) - tanh(0) = 0.
    assert_equal_f32(oracle.additive_scores(queries, keys, W_q, W_k, w_v), [[2 * math.tanh(1), 0]])


def test_general_scores_by_hand():
    queries = f32([[1, 2]])
    W = f32([[1, 0, 0], [0, 0, 1]])
    keys = f32([[1, 1, 1], [0, 5, 0], [1, 0, -1]])
    # q W = (1, 0, 2); with the keys: 1 + 0 + 2 = 3, 0, 1 - 2 = -1
    assert_equal_f32(oracle.general_scores(queries, keys, W), [[3, 0, -1]])


def test_masked_softmax_by_hand():
    scores = f32([[0, 0, 5], [1, 1, 1], [0, math.log(3), 7]])
    mask = np.array([[T, T, F], [T, T, T], [T, T, F]])
    # row 0: two equal allowed scores -> 1/2 each; row 1: three equal -> 1/3 each;
    # row 2: e^0 : e^ln3 = 1 : 3 -> 1/4, 3/4
    want = [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3], [0.25, 0.75, 0]]
    assert_equal_f32(oracle.masked_softmax(scores, mask), want)


def test_masked_softmax_without_mask_by_hand():
    # 1 : e : e^2 normalised
    z = 1 + math.e + math.e ** 2
    assert_equal_f32(oracle.masked_softmax(f32([[0, 1, 2]])), [[1 / z, math.e / z, math.e ** 2 / z]])
    assert_equal_f32(oracle.masked_softmax(f32([[0, 1, 2]]), None), [[1 / z, math.e / z, math.e ** 2 / z]])


def test_masked_softmax_fully_masked_rows_are_zero():
    scores = f32([[1, 2], [3, 4]])
    mask = np.array([[F, F], [T, F]])
    assert_equal_f32(oracle.masked_softmax(scores, mask), [[0, 0], [1, 0]])


def test_masked_softmax_large_scores_by_hand():
    scores = f32([[1e4, 1e4], [-1e4, -1e4 + 1], [1e4, -1e4], [-1e4, -1e4]])
    # equal scores -> 1/2 each (however large); a difference of 1 -> 1 : e; a difference of 2e4 -> 1, 0
    e = math.e
    want = [[0.5, 0.5], [1 / (1 + e), e / (1 + e)], [1, 0], [0.5, 0.5]]
    assert_equal_f32(oracle.masked_softmax(scores), want)
    # the masked +1e4 must not dominate: only the -1e4 key is allowed in row 2
    mask = np.array([[T, T], [T, T], [F, T], [F, F]])
    want = [[0.5, 0.5], [1 / (1 + e), e / (1 + e)], [0, 1], [0, 0]]
    assert_equal_f32(oracle.masked_softmax(scores, mask), want)


def test_padding_mask_by_hand():
    assert_mask(oracle.padding_mask(np.array([1, 3]), 4), [[[T, F, F, F]], [[T, T, T, F]]])
    assert_mask(oracle.padding_mask(np.array([0, 2]), 2), [[[F, F]], [[T, T]]])
    assert_mask(oracle.padding_mask([2], 3), [[[T, T, F]]])


def test_causal_mask_by_hand():
    assert_mask(oracle.causal_mask(3), [[T, F, F], [T, T, F], [T, T, T]])
    # n_q = 2, n_k = 4: j <= i + 2
    assert_mask(oracle.causal_mask(2, 4), [[T, T, T, F], [T, T, T, T]])
    # n_q = 4, n_k = 2: j <= i - 2, so queries 0 and 1 see nothing
    assert_mask(oracle.causal_mask(4, 2), [[F, F], [F, F], [T, F], [T, T]])
    assert_mask(oracle.causal_mask(1), [[T]])
    assert_mask(oracle.causal_mask(1, 3), [[T, T, T]])


def test_tree_mask_by_hand():
    # 0 is the root, 1 and 2 its children, 3 the child of 1
    assert_mask(oracle.tree_mask(np.array([-1, 0, 0, 1])),
                [[T, F, F, F], [T, T, F, F], [T, F, T, F], [T, T, F, T]])
    # the root is node 2; 0's parent is 2, 1's parent is 0: ancestors of 1 are 0 and 2
    assert_mask(oracle.tree_mask([2, 0, -1]), [[T, F, T], [T, T, T], [F, F, T]])
    assert_mask(oracle.tree_mask([-1]), [[T]])


def test_tree_mask_rejects_a_cycle():
    with pytest.raises(ValueError):
        oracle.tree_mask([1, 0])
    with pytest.raises(ValueError):
        oracle.tree_mask([-1, 5])


def test_attention_by_hand():
    queries = f32([[0, 0, 0, 0], [1, 2, 3, 4]])
    keys = f32([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    values = f32([[1, 0], [0, 1], [2, 2]])
    mask = np.array([[T, T, T], [F, T, F]])
    # query 0: all scores 0 -> weights 1/3 each -> mean of the values (1, 1)
    # query 1: only key 1 allowed -> weights (0, 1, 0) -> values[1] = (0, 1)
    output, weights = oracle.scaled_dot_product_attention(queries, keys, values, mask)
    assert_equal_f32(weights, [[1 / 3, 1 / 3, 1 / 3], [0, 1, 0]])
    assert_equal_f32(output, [[1, 1], [0, 1]])


def test_attention_two_keys_by_hand():
    # d_k = 1: scores q k / 1. Query 1 against keys 0 and ln 3: weights 1/4, 3/4.
    queries, keys, values = f32([[1]]), f32([[0], [math.log(3)]]), f32([[4, 0], [0, 8]])
    output, weights = oracle.scaled_dot_product_attention(queries, keys, values)
    assert_equal_f32(weights, [[0.25, 0.75]])
    assert_equal_f32(output, [[1, 6]])


def test_fully_masked_query_gets_zero_output():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in [(3, 2), (2, 2), (2, 5)])
    # causal_mask(3, 2): j <= i - 1, so query 0 sees nothing, query 1 only key 0, query 2 both
    output, weights = oracle.scaled_dot_product_attention(q, k, v, oracle.causal_mask(3, 2))
    assert_equal_f32(weights[:2], [[0, 0], [1, 0]])
    np.testing.assert_allclose(weights[2].sum(), 1, rtol=1e-6)
    np.testing.assert_array_equal(output[0], 0)
    np.testing.assert_allclose(output[1], v[0], rtol=1e-6)
    assert np.isfinite(output).all()


# --- properties ------------------------------------------------------------------------------------

@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def test_results_are_float32_and_masks_bool(rng):
    q, k, v = (rng.standard_normal(s) for s in [(2, 3, 4), (2, 5, 4), (2, 5, 6)])   # float64 in
    W_q, W_k, w_v = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    for value in [oracle.dot_product_scores(q, k), oracle.scaled_dot_product_scores(q, k),
                  oracle.additive_scores(q, k, W_q, W_k, w_v), oracle.general_scores(q, k, np.eye(4)),
                  oracle.masked_softmax(q), *oracle.scaled_dot_product_attention(q, k, v)]:
        assert value.dtype == np.float32
    for value in [oracle.padding_mask(np.array([1, 2]), 3), oracle.causal_mask(2, 3), oracle.tree_mask([-1, 0])]:
        assert value.dtype == bool


def test_leading_batch_dims_are_independent(rng):
    """Each batch element of a (2, 3, ...) call equals the call on that element alone."""
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in [(2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7)])
    mask = rng.random((2, 3, 4, 6)) < 0.5
    W_q, W_k, w_v = rng.standard_normal((5, 8)), rng.standard_normal((5, 8)), rng.standard_normal(8)
    W = rng.standard_normal((5, 5))
    output, weights = oracle.scaled_dot_product_attention(q, k, v, mask)
    assert output.shape == (2, 3, 4, 7) and weights.shape == (2, 3, 4, 6)
    for a in range(2):
        for b in range(3):
            one = (q[a, b], k[a, b])
            np.testing.assert_allclose(oracle.dot_product_scores(q, k)[a, b], oracle.dot_product_scores(*one), rtol=1e-6)
            np.testing.assert_allclose(oracle.additive_scores(q, k, W_q, W_k, w_v)[a, b],
                                       oracle.additive_scores(*one, W_q, W_k, w_v), rtol=1e-6)
            np.testing.assert_allclose(oracle.general_scores(q, k, W)[a, b], oracle.general_scores(*one, W), rtol=1e-6)
            o, w = oracle.scaled_dot_product_attention(q[a, b], k[a, b], v[a, b], mask[a, b])
            np.testing.assert_allclose(output[a, b], o, rtol=1e-6)
            np.testing.assert_allclose(weights[a, b], w, rtol=1e-6)


def test_scores_against_explicit_sums(rng):
    q, k = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    W_q, W_k, w_v, W = (rng.standard_normal(s) for s in [(4, 2), (4, 2), (2,), (4, 4)])
    dot = np.array([[sum(q[i, c] * k[j, c] for c in range(4)) for j in range(5)] for i in range(3)])
    additive = np.array([[sum(w_v[u] * math.tanh(sum(q[i, c] * W_q[c, u] + k[j, c] * W_k[c, u] for c in range(4)))
                              for u in range(2)) for j in range(5)] for i in range(3)])
    general = np.array([[sum(q[i, a] * W[a, b] * k[j, b] for a in range(4) for b in range(4))
                         for j in range(5)] for i in range(3)])
    np.testing.assert_allclose(oracle.dot_product_scores(q, k), dot, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(oracle.scaled_dot_product_scores(q, k), dot / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(oracle.additive_scores(q, k, W_q, W_k, w_v), additive, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(oracle.general_scores(q, k, W), general, rtol=1e-5, atol=1e-6)


def test_softmax_rows_sum_to_one_and_masked_keys_are_zero(rng):
    scores = 5 * rng.standard_normal((4, 6, 7))
    mask = rng.random((4, 6, 7)) < 0.4
    weights = oracle.masked_softmax(scores, mask)
    has_keys = mask.any(-1)
    assert (~has_keys).any() and has_keys.any()          # both kinds of row are exercised
    np.testing.assert_allclose(weights.sum(-1)[has_keys], 1, rtol=1e-6)
    np.testing.assert_array_equal(weights.sum(-1)[~has_keys], 0)
    np.testing.assert_array_equal(weights[~mask], 0)
    assert (weights[mask] >= 0).all()


def test_softmax_is_shift_invariant(rng):
    scores = rng.standard_normal((3, 5))
    mask = rng.random((3, 5)) < 0.7
    for shift in (1e4, -1e4, 300.0):
        np.testing.assert_allclose(oracle.masked_softmax(scores + shift, mask), oracle.masked_softmax(scores, mask),
                                   atol=1e-6)


def test_softmax_matches_the_textbook_formula_where_unmasked(rng):
    scores = rng.standard_normal((3, 5))
    want = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    np.testing.assert_allclose(oracle.masked_softmax(scores), want, rtol=1e-6)
    # a mask removes keys: the same as the softmax over the remaining keys only
    mask = np.array([T, F, T, T, F])
    sub = np.exp(scores[:, mask]) / np.exp(scores[:, mask]).sum(-1, keepdims=True)
    np.testing.assert_allclose(oracle.masked_softmax(scores, mask)[:, mask], sub, rtol=1e-6)


def test_mask_broadcasting_equals_explicit_mask(rng):
    scores = rng.standard_normal((3, 4, 5))
    mask = rng.random((3, 1, 5)) < 0.6
    np.testing.assert_array_equal(oracle.masked_softmax(scores, mask),
                                  oracle.masked_softmax(scores, np.broadcast_to(mask, (3, 4, 5)).copy()))
    with pytest.raises(ValueError):   # a mask must broadcast to the scores, not the other way round
        oracle.masked_softmax(scores[0], mask)


def test_attention_is_permutation_equivariant(rng):
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 6, 5))
    mask = rng.random((2, 3, 6)) < 0.6
    perm = rng.permutation(6)
    output, weights = oracle.scaled_dot_product_attention(q, k, v, mask)
    shuffled_output, shuffled_weights = oracle.scaled_dot_product_attention(q, k[:, perm], v[:, perm], mask[..., perm])
    np.testing.assert_allclose(shuffled_output, output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shuffled_weights, weights[..., perm], rtol=1e-6)
    # and a query permutation permutes the rows of both results
    qperm = rng.permutation(3)
    out_q, w_q = oracle.scaled_dot_product_attention(q[:, qperm], k, v, mask[:, qperm])
    np.testing.assert_allclose(out_q, output[:, qperm], rtol=1e-6)
    np.testing.assert_allclose(w_q, weights[:, qperm], rtol=1e-6)


def test_causal_mask_matches_definition_and_tril(rng):
    for n_q, n_k in [(1, 1), (3, 3), (2, 6), (6, 2), (5, 5)]:
        mask = oracle.causal_mask(n_q, n_k)
        assert mask.shape == (n_q, n_k)
        np.testing.assert_array_equal(mask, np.tril(np.ones((n_q, n_k), bool), k=n_k - n_q))
    np.testing.assert_array_equal(oracle.causal_mask(4), oracle.causal_mask(4, 4))


def test_tree_mask_of_a_chain_is_causal():
    np.testing.assert_array_equal(oracle.tree_mask([-1, 0, 1, 2, 3]), oracle.causal_mask(5))


def test_tree_mask_is_transitive(rng):
    order = rng.permutation(12)
    parents = np.full(12, -1)
    for rank in range(1, 12):
        parents[order[rank]] = order[rng.integers(rank)]
    mask = oracle.tree_mask(parents)
    root = order[0]
    assert mask[:, root].all()                            # everyone sees the root
    assert mask.diagonal().all()
    for i in range(12):
        if parents[i] >= 0:                               # i sees its parent and everything its parent sees
            assert mask[i, parents[i]]
            np.testing.assert_array_equal(mask[i] & ~np.eye(12, dtype=bool)[i], mask[parents[i]])


def test_padding_mask_matches_causal_style_definition(rng):
    lens = rng.integers(0, 7, size=5)
    mask = oracle.padding_mask(lens, 6)
    assert mask.shape == (5, 1, 6)
    np.testing.assert_array_equal(mask.sum(-1)[:, 0], lens)
    for b, n in enumerate(lens):
        np.testing.assert_array_equal(mask[b, 0], np.arange(6) < n)


# --- the second edition's exercises: by hand, then properties ---------------------------------------

def test_segment_mask_by_hand():
    # two packed sequences (ids 0 and 1) and a padding slot (-1)
    assert_mask(oracle.segment_mask(np.array([0, 0, 1, -1])),
                [[T, T, F, F], [T, T, F, F], [F, F, T, F], [F, F, F, F]])
    # the same negative id twice is still padding: padding never attends, not even to itself
    assert_mask(oracle.segment_mask([-2, -2, 3]), [[F, F, F], [F, F, F], [F, F, T]])
    # leading batch dimensions: (2, 1, 2) ids -> (2, 1, 2, 2) masks
    got = oracle.segment_mask(np.array([[[5, 5]], [[5, -1]]]))
    assert_mask(got, [[[[T, T], [T, T]]], [[[T, F], [F, F]]]])


def test_decoder_masks_by_hand():
    # batch 0: 2 of 3 target tokens, 1 of 2 source tokens; batch 1: no target token, 2 source tokens
    self_mask, cross_mask = oracle.decoder_masks(np.array([2, 0]), np.array([1, 2]), 3, 2)
    # j <= i and j < 2: row 2 sees keys 0, 1 but not its own padded position 2
    assert_mask(self_mask[0], [[T, F, F], [T, T, F], [T, T, F]])
    assert_mask(self_mask[1], np.zeros((3, 3), bool))              # valid length 0: nothing
    assert_mask(cross_mask[0], [[T, F]] * 3)                        # every target row sees the source's 1 token
    assert_mask(cross_mask[1], [[T, T]] * 3)
    assert self_mask.shape == (2, 3, 3) and cross_mask.shape == (2, 3, 2)


def test_bahdanau_step_by_hand():
    # d_q = 1, d_k = 2, h = 1: score_j = w_v tanh(s W_q + e_j W_k)
    state = f32([[0.0]])                                            # (batch=1, d_q=1): s W_q = 0
    outputs = f32([[[0, 0], [1, 0], [0, 1]]])                       # (1, n=3, d_k=2)
    W_q, W_k, w_v = f32([[1]]), f32([[1], [0]]), f32([math.log(3) / math.tanh(1)])
    # scores: w_v tanh(0) = 0, w_v tanh(1) = ln 3, w_v tanh(0) = 0 -> weights 1 : 3 : 1 over 5
    context, weights = oracle.bahdanau_step(state, outputs, W_q, W_k, w_v)
    assert_equal_f32(weights, [[0.2, 0.6, 0.2]])
    assert_equal_f32(context, [[0.6, 0.2]])                         # 0.6 (1, 0) + 0.2 (0, 1)
    # valid_lens = 2 drops position 2: weights 1 : 3 over 4; valid_lens = 0: zeros
    context, weights = oracle.bahdanau_step(np.concatenate([state, state]), np.concatenate([outputs, outputs]),
                                            W_q, W_k, w_v, np.array([2, 0]))
    assert_equal_f32(weights, [[0.25, 0.75, 0], [0, 0, 0]])
    assert_equal_f32(context, [[0.75, 0], [0, 0]])


def test_attention_pooling_by_hand():
    # d = 4, so scores are inputs . query / 2; query (2, 0, 0, 0) makes score_j = inputs[j, 0]
    inputs = f32([[0, 1, 0, 0], [math.log(3), 0, 1, 0]])           # (n=2, d=4)
    query = f32([2, 0, 0, 0])
    pooled, weights = oracle.attention_pooling(inputs, query)
    assert_equal_f32(weights, [0.25, 0.75])                         # e^0 : e^ln3 = 1 : 3
    assert_equal_f32(pooled, [0.75 * math.log(3), 0.25, 0.75, 0])
    pooled, weights = oracle.attention_pooling(np.stack([inputs, inputs]), query, np.array([[F, T], [F, F]]))
    assert_equal_f32(weights, [[0, 1], [0, 0]])                     # a fully masked row: zeros
    assert_equal_f32(pooled, [inputs[1], [0, 0, 0, 0]])


def test_bahdanau_step_is_additive_attention_with_one_query(rng):
    """One decoder step = the chapter's pieces: additive scores, padding mask, masked softmax, sum."""
    state, outputs = rng.standard_normal((3, 4)), rng.standard_normal((3, 5, 6))
    W_q, W_k, w_v = rng.standard_normal((4, 7)), rng.standard_normal((6, 7)), 1e4 * rng.standard_normal(7)
    lens = np.array([5, 0, 2])
    context, weights = oracle.bahdanau_step(state, outputs, W_q, W_k, w_v, lens)
    scores = oracle.additive_scores(state[:, None, :], outputs, W_q, W_k, w_v)      # (3, 1, 5)
    want = oracle.masked_softmax(scores, oracle.padding_mask(lens, 5))[:, 0]         # (3, 5)
    assert np.isfinite(context).all() and np.isfinite(weights).all()               # scores of ~1e4
    # float32 scores of ~1e4 carry an absolute error of ~1e-3, which exp turns into ~1e-3 relative
    np.testing.assert_allclose(weights, want, atol=5e-3)
    np.testing.assert_allclose(weights.sum(-1), [1, 0, 1], rtol=1e-6)
    assert (weights[2, 2:] == 0).all()
    np.testing.assert_allclose(context, np.einsum("bn,bnd->bd", weights, outputs), rtol=1e-5, atol=1e-6)


def test_attention_pooling_is_attention_with_one_query(rng):
    inputs, query = rng.standard_normal((2, 3, 5, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    mask = rng.random((2, 3, 5)) < 0.5
    mask[1, 2] = False
    pooled, weights = oracle.attention_pooling(inputs, query, mask)
    out, w = oracle.scaled_dot_product_attention(query[None, :], inputs, inputs, mask[..., None, :])
    np.testing.assert_allclose(pooled, out[..., 0, :], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights, w[..., 0, :], rtol=1e-5, atol=1e-6)
    assert (pooled[1, 2] == 0).all() and (weights[1, 2] == 0).all()


def test_segment_mask_is_symmetric_and_blocks_packed_sequences(rng):
    lengths = [3, 1, 4]
    ids = np.concatenate([np.full(n, s) for s, n in enumerate(lengths)] + [np.full(2, -1)])   # (10,)
    mask = oracle.segment_mask(ids)
    np.testing.assert_array_equal(mask, mask.T)
    want = np.zeros((10, 10), bool)
    start = 0
    for n in lengths:                                    # one all-True block per packed sequence
        want[start:start + n, start:start + n] = True
        start += n
    np.testing.assert_array_equal(mask, want)
    # ids shuffled with the positions: the mask is permuted the same way
    perm = rng.permutation(10)
    np.testing.assert_array_equal(oracle.segment_mask(ids[perm]), mask[np.ix_(perm, perm)])


def test_decoder_self_mask_is_causal_and_padding(rng):
    tgt, src = rng.integers(0, 7, size=5), rng.integers(0, 4, size=5)
    self_mask, cross_mask = oracle.decoder_masks(tgt, src, 6, 3)
    np.testing.assert_array_equal(self_mask, oracle.causal_mask(6) & oracle.padding_mask(tgt, 6))
    np.testing.assert_array_equal(cross_mask, np.broadcast_to(oracle.padding_mask(src, 3), (5, 6, 3)))
