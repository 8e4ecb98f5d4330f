"""Grading checks for chapter 02 (principles): scores, masks, masked softmax, attention.

Public checks (what `check("name")` runs in the notebook) use the worked examples of the exercise
notebook and basic shapes. Hidden checks compare with the oracle on random inputs and probe the
edges the contract fixes: extra leading batch dimensions, n_q != n_k, length 1, fully masked rows,
scores of +-1e4, broadcast masks, and properties that hold whatever the inputs.
"""
import numpy as np

from autograder.checks.api import (CheckFailure, assert_close, assert_close_or_hint, assert_shape, check, detail,
                                   returned)

EXAMPLE_QUERIES = np.array([[1, 0], [0, 1], [1, 1]], np.float32)        # (n_q=3, d_k=2)
EXAMPLE_KEYS = np.array([[1, 2], [3, -1]], np.float32)                  # (n_k=2, d_k=2)


def _normal(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _random_mask(rng, *shape, p_allowed=0.6) -> np.ndarray:
    return rng.random(shape) < p_allowed


def _random_parents(rng, n: int) -> np.ndarray:
    """A random tree on n nodes whose numbering is shuffled, so parents may come after children."""
    order = rng.permutation(n)                     # order[0] is the root
    parents = np.full(n, -1, np.int64)
    for rank in range(1, n):
        parents[order[rank]] = order[rng.integers(rank)]
    return parents


def _rows_sum_to_one(weights: np.ndarray, rows_with_keys: np.ndarray, what="weights") -> None:
    sums = weights.sum(axis=-1)
    off = rows_with_keys & ~np.isclose(sums, 1.0, atol=1e-5)
    if off.any():
        i = tuple(int(n) for n in np.argwhere(off)[0])
        raise CheckFailure(detail(f"{what}: a row does not sum to 1. Is the softmax taken over the last "
                                  "axis (the keys)?", f"the row at {i} sums to {sums[i]:.6g}."))


# --- dot_product_scores --------------------------------------------------------------------------

@check("dot_product_scores", public=True, fixed=True)
def test_dot_product_scores_worked_example(student, oracle, rng):
    """matches the worked example"""
    got = student.dot_product_scores(EXAMPLE_QUERIES, EXAMPLE_KEYS)
    assert_close(got, oracle.dot_product_scores(EXAMPLE_QUERIES, EXAMPLE_KEYS), what="scores")


@check("dot_product_scores", points=1, public=True)
def test_dot_product_scores_batched_shape(student, oracle, rng):
    """a batch of 2: (2, 3, 4) queries and (2, 5, 4) keys give (2, 3, 5) scores"""
    queries, keys = _normal(rng, 2, 3, 4), _normal(rng, 2, 5, 4)
    got = student.dot_product_scores(queries, keys)
    assert_shape(got, (2, 3, 5), what="scores")
    assert_close(got, oracle.dot_product_scores(queries, keys), what="scores")


@check("dot_product_scores", points=1)
def test_dot_product_scores_leading_dims(student, oracle, rng):
    """any number of leading batch dimensions"""
    queries, keys = _normal(rng, 2, 3, 4, 6), _normal(rng, 2, 3, 7, 6)
    assert_close(student.dot_product_scores(queries, keys), oracle.dot_product_scores(queries, keys),
                 what="scores")


@check("dot_product_scores", points=1)
def test_dot_product_scores_single_query_and_key(student, oracle, rng):
    """a single query and a single key give a (1, 1) score"""
    queries, keys = _normal(rng, 1, 5), _normal(rng, 1, 5)
    assert_close(student.dot_product_scores(queries, keys), oracle.dot_product_scores(queries, keys),
                 what="scores")


# --- scaled_dot_product_scores -------------------------------------------------------------------

@check("scaled_dot_product_scores", public=True, fixed=True)
def test_scaled_dot_product_scores_worked_example(student, oracle, rng):
    """matches the worked example (d_k = 4, so the scores are halved)"""
    queries = np.array([[1, 1, 1, 1], [2, 0, 0, 0]], np.float32)
    keys = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 4]], np.float32)
    assert_close(student.scaled_dot_product_scores(queries, keys),
                 oracle.scaled_dot_product_scores(queries, keys), what="scores")


@check("scaled_dot_product_scores", points=1)
def test_scaled_dot_product_scores_random(student, oracle, rng):
    """divides by sqrt(d_k) when n_q, n_k and d_k all differ"""
    queries, keys = _normal(rng, 2, 3, 9), _normal(rng, 2, 5, 9)
    assert_close(student.scaled_dot_product_scores(queries, keys),
                 oracle.scaled_dot_product_scores(queries, keys), what="scores")


@check("scaled_dot_product_scores", points=1, public=True)
def test_scaled_dot_product_scores_leading_dims(student, oracle, rng):
    """any number of leading batch dimensions, and a single key"""
    queries, keys = _normal(rng, 2, 2, 3, 16), _normal(rng, 2, 2, 1, 16)
    got = student.scaled_dot_product_scores(queries, keys)
    assert_shape(got, (2, 2, 3, 1), what="scores")
    assert_close(got, oracle.scaled_dot_product_scores(queries, keys), what="scores")


# --- additive_scores -----------------------------------------------------------------------------

def _additive_example():
    queries = np.array([[1, 0]], np.float32)                         # (n_q=1, d_q=2)
    keys = np.array([[0, 0, 0], [1, 0, 0]], np.float32)              # (n_k=2, d_k=3)
    W_q = np.array([[1, -1], [0, 0]], np.float32)                    # (d_q=2, h=2)
    W_k = np.array([[-1, 1], [0, 0], [0, 0]], np.float32)            # (d_k=3, h=2)
    w_v = np.array([1, -1], np.float32)                              # (h=2,)
    return queries, keys, W_q, W_k, w_v


def _additive_random(rng, batch, n_q, n_k, d_q, d_k, h):
    return (_normal(rng, *batch, n_q, d_q), _normal(rng, *batch, n_k, d_k),
            _normal(rng, d_q, h), _normal(rng, d_k, h), _normal(rng, h))


@check("additive_scores", public=True, fixed=True)
def test_additive_scores_worked_example(student, oracle, rng):
    """matches the worked example"""
    args = _additive_example()
    assert_close(student.additive_scores(*args), oracle.additive_scores(*args), what="scores")


@check("additive_scores", points=1, public=True)
def test_additive_scores_shapes(student, oracle, rng):
    """queries and keys of different sizes: (2, 3, 4) and (2, 5, 6) with h = 7 give (2, 3, 5)"""
    args = _additive_random(rng, (2,), n_q=3, n_k=5, d_q=4, d_k=6, h=7)
    got = student.additive_scores(*args)
    assert_shape(got, (2, 3, 5), what="scores")
    assert_close(got, oracle.additive_scores(*args), what="scores")


@check("additive_scores", points=1)
def test_additive_scores_leading_dims(student, oracle, rng):
    """any number of leading batch dimensions"""
    args = _additive_random(rng, (2, 3), n_q=4, n_k=2, d_q=3, d_k=5, h=6)
    assert_close(student.additive_scores(*args), oracle.additive_scores(*args), what="scores")


@check("additive_scores", points=1)
def test_additive_scores_single_query_and_key(student, oracle, rng):
    """a single query and a single key, with h = 1"""
    args = _additive_random(rng, (), n_q=1, n_k=1, d_q=2, d_k=3, h=1)
    assert_close(student.additive_scores(*args), oracle.additive_scores(*args), what="scores")


# --- general_scores ------------------------------------------------------------------------------

@check("general_scores", public=True, fixed=True)
def test_general_scores_worked_example(student, oracle, rng):
    """matches the worked example"""
    queries = np.array([[1, 2]], np.float32)                         # (n_q=1, d_q=2)
    keys = np.array([[1, 1, 1], [0, 5, 0], [1, 0, -1]], np.float32)  # (n_k=3, d_k=3)
    W = np.array([[1, 0, 0], [0, 0, 1]], np.float32)                 # (d_q=2, d_k=3)
    assert_close(student.general_scores(queries, keys, W), oracle.general_scores(queries, keys, W),
                 what="scores")


@check("general_scores", points=1, public=True)
def test_general_scores_identity_is_dot_product(student, oracle, rng):
    """with W = I it gives the dot-product scores"""
    queries, keys = _normal(rng, 2, 3, 4), _normal(rng, 2, 5, 4)
    got = student.general_scores(queries, keys, np.eye(4, dtype=np.float32))
    assert_close(got, oracle.dot_product_scores(queries, keys), what="scores")


@check("general_scores", points=1)
def test_general_scores_square_W(student, oracle, rng):
    """a square, non-symmetric W is used as q W k^T, not q W^T k^T"""
    queries, keys, W = _normal(rng, 3, 4), _normal(rng, 6, 4), _normal(rng, 4, 4)
    assert_close(student.general_scores(queries, keys, W), oracle.general_scores(queries, keys, W),
                 what="scores")


@check("general_scores", points=1)
def test_general_scores_leading_dims(student, oracle, rng):
    """any number of leading batch dimensions, with d_q != d_k"""
    queries, keys, W = _normal(rng, 2, 3, 4, 5), _normal(rng, 2, 3, 2, 7), _normal(rng, 5, 7)
    got = student.general_scores(queries, keys, W)
    assert_shape(got, (2, 3, 4, 2), what="scores")
    assert_close(got, oracle.general_scores(queries, keys, W), what="scores")


# --- masked_softmax ------------------------------------------------------------------------------

@check("masked_softmax", public=True, fixed=True)
def test_masked_softmax_worked_example(student, oracle, rng):
    """matches the worked example"""
    scores = np.array([[0, 0, 5], [1, 1, 1]], np.float32)
    mask = np.array([[True, True, False], [True, True, True]])
    assert_close(student.masked_softmax(scores, mask), oracle.masked_softmax(scores, mask), what="weights")


@check("masked_softmax", points=1)
def test_masked_softmax_without_mask(student, oracle, rng):
    """without a mask it is the softmax over the last axis"""
    scores = _normal(rng, 2, 3, 5)
    got = student.masked_softmax(scores)
    assert_shape(got, (2, 3, 5), what="weights")
    _rows_sum_to_one(got, np.ones((2, 3), bool))
    assert_close(got, oracle.masked_softmax(scores), what="weights")


@check("masked_softmax", points=1, public=True)
def test_masked_softmax_fully_masked_rows(student, oracle, rng):
    """fully masked rows give zeros, not NaN"""
    scores = _normal(rng, 2, 3, 4)
    mask = np.ones((2, 3, 4), bool)
    mask[:, 1] = False
    mask[1, 2] = False
    assert_close(student.masked_softmax(scores, mask), oracle.masked_softmax(scores, mask), what="weights")


@check("masked_softmax", points=1)
def test_masked_softmax_large_scores(student, oracle, rng):
    """stays finite and exact at scores of +-1e4"""
    scores = np.array([[1e4, 1e4 - 1, 1e4 - 2, -1e4],
                       [-1e4, -1e4 + 1, -1e4 + 0.5, -1e4 + 3],
                       [1e4, -1e4, 0, 5e3]], np.float32)
    mask = np.array([[True, True, True, True],
                     [True, True, True, False],
                     [False, True, True, True]])
    assert_close(student.masked_softmax(scores), oracle.masked_softmax(scores), what="weights")
    assert_close(student.masked_softmax(scores, mask), oracle.masked_softmax(scores, mask), what="weights")


@check("masked_softmax", points=1)
def test_masked_softmax_broadcast_mask(student, oracle, rng):
    """a (batch, 1, n_k) mask applies to every query"""
    scores = _normal(rng, 3, 4, 5)
    mask = _random_mask(rng, 3, 1, 5)
    mask[:, 0, 0] = True
    mask[2] = False                                                  # one batch with no keys at all
    assert_close(student.masked_softmax(scores, mask), oracle.masked_softmax(scores, mask), what="weights")


@check("masked_softmax", points=1)
def test_masked_softmax_random(student, oracle, rng):
    """random scores and masks with extra batch dimensions"""
    scores = 3 * _normal(rng, 2, 3, 4, 6)
    mask = _random_mask(rng, 2, 3, 4, 6)
    assert_close(student.masked_softmax(scores, mask), oracle.masked_softmax(scores, mask), what="weights")


@check("masked_softmax", points=1)
def test_masked_softmax_masked_keys_get_nothing(student, oracle, rng):
    """masked keys get weight exactly 0, however large their score; the others share it by softmax"""
    scores = _normal(rng, 4, 7)
    mask = _random_mask(rng, 4, 7, p_allowed=0.5)
    mask[:, 0] = True
    scores[~mask] = 1e4                                              # a tempting score behind the mask
    got = student.masked_softmax(scores, mask)
    assert_shape(got, (4, 7), what="weights")
    if np.isnan(got).any() or (got[~mask] != 0).any():
        raise CheckFailure("weights: a masked key got a non-zero weight (or NaN). Masked keys must get "
                           "exactly 0, whatever their score; True in the mask means 'may attend'.")
    _rows_sum_to_one(got, np.ones(4, bool))
    # Unmasked scores are within a few units of each other, so no row may put all its weight on one
    # key (an argmax is not a softmax).
    assert_close(got, oracle.masked_softmax(scores, mask), what="weights")


# --- padding_mask --------------------------------------------------------------------------------

@check("padding_mask", public=True, fixed=True)
def test_padding_mask_worked_example(student, oracle, rng):
    """matches the worked example"""
    valid_lens = np.array([1, 3])
    assert_close(student.padding_mask(valid_lens, 4), oracle.padding_mask(valid_lens, 4), what="mask")


@check("padding_mask", points=1)
def test_padding_mask_extremes(student, oracle, rng):
    """valid_len 0 masks every key and valid_len n_k none"""
    valid_lens = np.array([0, 5, 2])
    assert_close(student.padding_mask(valid_lens, 5), oracle.padding_mask(valid_lens, 5), what="mask")


@check("padding_mask", points=1, public=True)
def test_padding_mask_random(student, oracle, rng):
    """random lengths give a bool (batch, 1, n_k) mask"""
    valid_lens = rng.integers(0, 9, size=6)
    got = student.padding_mask(valid_lens, 8)
    assert_shape(got, (6, 1, 8), what="mask")
    assert_close(got, oracle.padding_mask(valid_lens, 8), what="mask")


@check("padding_mask", points=1)
def test_padding_mask_single(student, oracle, rng):
    """a batch of one with a single key"""
    valid_lens = np.array([1])
    assert_close(student.padding_mask(valid_lens, 1), oracle.padding_mask(valid_lens, 1), what="mask")


# --- causal_mask ---------------------------------------------------------------------------------

@check("causal_mask", public=True, fixed=True)
def test_causal_mask_worked_example(student, oracle, rng):
    """matches the worked examples: causal_mask(3) and causal_mask(2, 4)"""
    assert_close(student.causal_mask(3), oracle.causal_mask(3), what="causal_mask(3)")
    assert_close(student.causal_mask(2, 4), oracle.causal_mask(2, 4), what="causal_mask(2, 4)")


@check("causal_mask", public=True, fixed=True)
def test_causal_mask_square(student, oracle, rng):
    """a square mask is the lower triangle, diagonal included"""
    assert_close(student.causal_mask(6, 6), oracle.causal_mask(6, 6), what="causal_mask(6, 6)")
    assert_close(student.causal_mask(6, None), oracle.causal_mask(6), what="causal_mask(6, None)")


@check("causal_mask", points=1)
def test_causal_mask_fewer_queries(student, oracle, rng):
    """n_q < n_k is aligned to the bottom right, as with a KV cache"""
    for n_q, n_k in [(1, 5), (3, 7)]:
        assert_close(student.causal_mask(n_q, n_k), oracle.causal_mask(n_q, n_k),
                     what=f"causal_mask({n_q}, {n_k})")


@check("causal_mask", points=1)
def test_causal_mask_more_queries(student, oracle, rng):
    """n_q > n_k: the first queries see no key at all"""
    assert_close(student.causal_mask(5, 2), oracle.causal_mask(5, 2), what="causal_mask(5, 2)")


@check("causal_mask", points=1)
def test_causal_mask_one(student, oracle, rng):
    """a single query and key"""
    assert_close(student.causal_mask(1), oracle.causal_mask(1), what="causal_mask(1)")


# --- tree_mask -----------------------------------------------------------------------------------

@check("tree_mask", public=True, fixed=True)
def test_tree_mask_worked_example(student, oracle, rng):
    """matches the worked example"""
    parents = np.array([-1, 0, 0, 1])
    assert_close(student.tree_mask(parents), oracle.tree_mask(parents), what="mask")


@check("tree_mask", public=True, fixed=True)
def test_tree_mask_chain(student, oracle, rng):
    """a chain: every node sees all its ancestors, not only its parent"""
    parents = np.array([-1, 0, 1, 2, 3, 4])
    assert_close(student.tree_mask(parents), oracle.tree_mask(parents), what="mask")


@check("tree_mask", points=1)
def test_tree_mask_single_node(student, oracle, rng):
    """a tree of one node sees itself"""
    parents = np.array([-1])
    assert_close(student.tree_mask(parents), oracle.tree_mask(parents), what="mask")


@check("tree_mask", points=1)
def test_tree_mask_random_trees(student, oracle, rng):
    """random trees, numbered in any order (a parent may come after its child)"""
    for n in (5, 9):
        parents = _random_parents(rng, n)
        # The parents are hidden inputs: the message names the tree's size, never its shape.
        assert_close(student.tree_mask(parents), oracle.tree_mask(parents), what=f"mask of a random {n}-node tree")


# --- scaled_dot_product_attention ----------------------------------------------------------------

def _attention_example():
    queries = np.array([[0, 0, 0, 0], [1, 2, 3, 4]], np.float32)              # (n_q=2, d_k=4)
    keys = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], np.float32)   # (n_k=3, d_k=4)
    values = np.array([[1, 0], [0, 1], [2, 2]], np.float32)                   # (n_k=3, d_v=2)
    mask = np.array([[True, True, True], [False, True, False]])               # (n_q=2, n_k=3)
    return queries, keys, values, mask


ATTENTION_OUT = ("output", "weights")


def _same_attention(student, oracle, *args) -> None:
    assert_close(student.scaled_dot_product_attention(*args), oracle.scaled_dot_product_attention(*args),
                 what=ATTENTION_OUT)


def _output_and_weights(got):
    if not isinstance(got, tuple) or len(got) != 2:
        raise CheckFailure("expected a tuple (output, weights), got "
                           + f"{returned(got)}.")
    return got


@check("scaled_dot_product_attention", public=True, fixed=True)
def test_scaled_dot_product_attention_worked_example(student, oracle, rng):
    """matches the worked example"""
    _same_attention(student, oracle, *_attention_example())


@check("scaled_dot_product_attention", points=1, public=True)
def test_scaled_dot_product_attention_shapes(student, oracle, rng):
    """returns (output, weights) of shapes (2, 3, 6) and (2, 3, 5) without a mask"""
    queries, keys, values = _normal(rng, 2, 3, 4), _normal(rng, 2, 5, 4), _normal(rng, 2, 5, 6)
    got = _output_and_weights(student.scaled_dot_product_attention(queries, keys, values))
    assert_shape(got[0], (2, 3, 6), what="output")
    assert_shape(got[1], (2, 3, 5), what="weights")
    assert_close(got, oracle.scaled_dot_product_attention(queries, keys, values), what=ATTENTION_OUT)


@check("scaled_dot_product_attention", points=1)
def test_scaled_dot_product_attention_random(student, oracle, rng):
    """random inputs with extra batch dimensions, n_q != n_k and d_v != d_k, and a random mask"""
    queries, keys, values = _normal(rng, 2, 3, 4, 8), _normal(rng, 2, 3, 6, 8), _normal(rng, 2, 3, 6, 5)
    mask = _random_mask(rng, 2, 3, 4, 6)
    _same_attention(student, oracle, queries, keys, values, mask)


@check("scaled_dot_product_attention", points=1)
def test_scaled_dot_product_attention_padding_mask(student, oracle, rng):
    """a (batch, 1, n_k) padding mask, with one sequence of length 0"""
    queries, keys, values = _normal(rng, 3, 4, 8), _normal(rng, 3, 5, 8), _normal(rng, 3, 5, 2)
    mask = oracle.padding_mask(np.array([5, 2, 0]), 5)
    _same_attention(student, oracle, queries, keys, values, mask)


@check("scaled_dot_product_attention", points=1)
def test_scaled_dot_product_attention_fully_masked(student, oracle, rng):
    """a causal mask with n_q > n_k: the queries that see no key get zero output, not NaN"""
    queries, keys, values = _normal(rng, 2, 5, 4), _normal(rng, 2, 3, 4), _normal(rng, 2, 3, 3)
    _same_attention(student, oracle, queries, keys, values, oracle.causal_mask(5, 3))


@check("scaled_dot_product_attention", points=1)
def test_scaled_dot_product_attention_large_scores(student, oracle, rng):
    """stays finite at scores of 2e4: each query picks its matching key"""
    keys = 200 * np.eye(4, dtype=np.float32)                         # scores q.k / sqrt(4) = 2e4 or 0
    queries = keys[[2, 0, 3]]
    values = _normal(rng, 4, 3)
    _same_attention(student, oracle, queries, keys, values)


@check("scaled_dot_product_attention", points=1)
def test_scaled_dot_product_attention_permutation(student, oracle, rng):
    """shuffling the keys and values together leaves the output unchanged; the output follows the values"""
    queries, keys, values = _normal(rng, 2, 3, 4), _normal(rng, 2, 6, 4), _normal(rng, 2, 6, 5)
    perm = rng.permutation(6)
    output, weights = _output_and_weights(student.scaled_dot_product_attention(queries, keys, values))
    _rows_sum_to_one(weights, np.ones((2, 3), bool))
    # The weights sum to one, so shifting every value by 1 shifts every output by 1: an output that
    # ignores the values (all zeros, say) cannot pass.
    shifted, _ = _output_and_weights(student.scaled_dot_product_attention(queries, keys, values + 1))
    assert_close(shifted, output + 1, what="output when every value is 1 larger")
    shuffled_output, shuffled_weights = _output_and_weights(
        student.scaled_dot_product_attention(queries, keys[:, perm], values[:, perm]))
    assert_close(shuffled_output, output, what="output for the shuffled keys and values")
    assert_close(shuffled_weights, weights[..., perm], what="weights for the shuffled keys")


# ==================================================================================================
# The second edition's exercises, which combine the pieces above: segment_mask, decoder_masks,
# bahdanau_step, attention_pooling. Each failure's first line (all a student sees of a hidden
# check) ends with a fixed hint about the likely mistake; hidden inputs are never named in it.
# ==================================================================================================

_same_or_hint = assert_close_or_hint


def _pair(got, names: tuple[str, str]):
    if not isinstance(got, tuple) or len(got) != 2:
        kind = returned(got)
        raise CheckFailure(f"expected a tuple ({', '.join(names)}), got something else.\ngot {kind}.")
    return got


def _same_pair(student, oracle, exercise: str, args: tuple, what: tuple[str, str], hint: str):
    """Call an exercise that returns a pair on both sides and compare; returns the student's pair."""
    got = _pair(getattr(student, exercise)(*args), what)
    _same_or_hint(got, getattr(oracle, exercise)(*args), what, hint)
    return got


# --- segment_mask --------------------------------------------------------------------------------

SEGMENT_HINT = ("entry [..., i, j] is True iff ids[..., i] == ids[..., j] and that id is >= 0: compare "
                "a (..., n, 1) view of the ids with a (..., 1, n) view, then drop the negative ids.")


def _same_segment_mask(student, oracle, segment_ids, hint=SEGMENT_HINT, what="mask") -> None:
    _same_or_hint(student.segment_mask(segment_ids), oracle.segment_mask(segment_ids), what, hint)


@check("segment_mask", public=True, fixed=True)
def test_segment_mask_worked_example(student, oracle, rng):
    """matches the worked example: segment_mask([0, 0, 1, -1])"""
    _same_segment_mask(student, oracle, np.array([0, 0, 1, -1]), what="segment_mask([0, 0, 1, -1])")


@check("segment_mask", points=1, public=True)
def test_segment_mask_batched_shape(student, oracle, rng):
    """a (2, 6) batch of ids gives a (2, 6, 6) mask"""
    ids = rng.integers(-1, 3, size=(2, 6))
    got = student.segment_mask(ids)
    assert_shape(got, (2, 6, 6), what="mask")
    _same_or_hint(got, oracle.segment_mask(ids), "mask",
                  "each row of the batch gets its own (n, n) mask; index the last axis only.")


@check("segment_mask", points=1)
def test_segment_mask_padding_sees_nothing(student, oracle, rng):
    """padding (any negative id) attends to nothing and is attended to by nothing, even padding with the same id"""
    _same_segment_mask(student, oracle, np.array([-1, -1, 3, -2, -2, 3]),
                       "a negative id is padding, not a sequence: its row and its column are all False, "
                       "even where two padding tokens share the same id.")


@check("segment_mask", points=1)
def test_segment_mask_unsorted_ids(student, oracle, rng):
    """ids need not be sorted, consecutive or start at 0"""
    _same_segment_mask(student, oracle, np.array([7, 2, 7, 0, 2, -5]),
                       "compare the ids for equality; don't assume that a sequence's tokens are adjacent "
                       "or that the ids count 0, 1, 2, ...")


@check("segment_mask", points=1)
def test_segment_mask_leading_dims(student, oracle, rng):
    """any number of leading batch dimensions: (2, 3, 5) ids give a (2, 3, 5, 5) mask"""
    ids = rng.integers(-2, 3, size=(2, 3, 5))
    got = student.segment_mask(ids)
    assert_shape(got, (2, 3, 5, 5), what="mask")
    _same_or_hint(got, oracle.segment_mask(ids), "mask",
                  "compare along the last axis only, so that every leading dimension is kept.")


@check("segment_mask", points=1)
def test_segment_mask_tiny(student, oracle, rng):
    """a single token, and a row made only of padding"""
    _same_segment_mask(student, oracle, np.array([[4]]))
    _same_segment_mask(student, oracle, np.array([[-1, -1, -1]]))


# --- decoder_masks -------------------------------------------------------------------------------

DECODER_OUT = ("self_mask", "cross_mask")


def _same_decoder_masks(student, oracle, tgt, src, n_tgt, n_src, hint, what=DECODER_OUT) -> None:
    _same_pair(student, oracle, "decoder_masks", (tgt, src, n_tgt, n_src), what, hint)


@check("decoder_masks", public=True, fixed=True)
def test_decoder_masks_worked_example(student, oracle, rng):
    """matches the worked example: decoder_masks([2, 3], [1, 2], 3, 2)"""
    _same_decoder_masks(student, oracle, np.array([2, 3]), np.array([1, 2]), 3, 2,
                        "the self mask is causal and hides the padded target keys; the cross mask hides "
                        "the padded source keys, the same way for every target token.",
                        what=tuple(f"{name} of decoder_masks([2, 3], [1, 2], 3, 2)" for name in DECODER_OUT))


@check("decoder_masks", points=1, public=True)
def test_decoder_masks_full_shapes(student, oracle, rng):
    """full shapes: (3, 4, 4) and (3, 4, 6) for a batch of 3, n_tgt = 4, n_src = 6"""
    tgt, src = rng.integers(1, 5, size=3), rng.integers(1, 7, size=3)
    self_mask, cross_mask = _pair(student.decoder_masks(tgt, src, 4, 6), DECODER_OUT)
    assert_shape(self_mask, (3, 4, 4), what="self_mask")
    assert_shape(cross_mask, (3, 4, 6), what="cross_mask")
    _same_or_hint((self_mask, cross_mask), oracle.decoder_masks(tgt, src, 4, 6), DECODER_OUT,
                  "the self mask is over target keys, the cross mask over source keys.")


@check("decoder_masks", points=1)
def test_decoder_masks_empty_and_full_lengths(student, oracle, rng):
    """valid lengths of 0 mask everything, full lengths nothing but the future"""
    _same_decoder_masks(student, oracle, np.array([0, 5, 3]), np.array([7, 0, 7]), 5, 7,
                        "a valid length of 0 leaves no key at all; a valid length of n leaves every key "
                        "(for the self mask: every key up to the query's own position).")


@check("decoder_masks", points=1)
def test_decoder_masks_cross_attention_is_not_causal(student, oracle, rng):
    """cross-attention is not causal: every target token sees every real source token, for n_tgt > n_src and n_tgt < n_src"""
    hint = ("causality belongs to the self mask only: the whole source is known before decoding starts, "
            "so cross_mask[b, i, j] depends on j and src_valid_lens[b], not on i.")
    _same_decoder_masks(student, oracle, np.array([6, 4]), np.array([2, 1]), 6, 2, hint)
    _same_decoder_masks(student, oracle, np.array([2, 1]), np.array([7, 5]), 2, 7, hint)


@check("decoder_masks", points=1)
def test_decoder_masks_padding_on_the_key_axis(student, oracle, rng):
    """padded target tokens are hidden as keys (columns), yet still see the real tokens before them"""
    _same_decoder_masks(student, oracle, np.array([1, 3]), np.array([2, 2]), 4, 2,
                        "self_mask[b, i, j] = j <= i and j < tgt_valid_lens[b]: padding hides column j, the "
                        "key; a padded query row i still sees the real tokens. The padding mask's axis of "
                        "size 1 is the query axis.")


@check("decoder_masks", points=1)
def test_decoder_masks_random(student, oracle, rng):
    """a random batch of 5, with n_tgt != n_src"""
    tgt, src = rng.integers(0, 6, size=5), rng.integers(0, 4, size=5)
    _same_decoder_masks(student, oracle, tgt, src, 5, 3,
                        "check each sequence's lengths: tgt_valid_lens for the self mask, src_valid_lens "
                        "for the cross mask.")


# --- bahdanau_step -------------------------------------------------------------------------------

BAHDANAU_OUT = ("context", "weights")
BAHDANAU_HINT = ("additive scores of the state (with a query axis of size 1) against every encoder output, "
                 "a softmax over the n positions that leaves out those at or after valid_lens[b], then "
                 "the weighted sum of the encoder outputs; drop the axis of size 1 from both results.")


def _bahdanau_example():
    state = np.array([[0]], np.float32)                                  # (batch=1, d_q=1)
    outputs = np.array([[[0, 0], [1, 0], [0, 1]]], np.float32)           # (batch=1, n=3, d_k=2)
    W_q, W_k = np.array([[1]], np.float32), np.array([[1], [0]], np.float32)
    w_v = np.array([np.log(3) / np.tanh(1)], np.float32)                 # scores 0, ln 3, 0
    return state, outputs, W_q, W_k, w_v


def _bahdanau_random(rng, batch, n, d_q, d_k, h):
    return (_normal(rng, batch, d_q), _normal(rng, batch, n, d_k), _normal(rng, d_q, h), _normal(rng, d_k, h),
            _normal(rng, h))


def _same_bahdanau(student, oracle, args, hint=BAHDANAU_HINT):
    return _same_pair(student, oracle, "bahdanau_step", args, BAHDANAU_OUT, hint)


@check("bahdanau_step", public=True, fixed=True)
def test_bahdanau_step_worked_example(student, oracle, rng):
    """matches the worked example, without and with valid_lens = [2]"""
    args = _bahdanau_example()
    _same_bahdanau(student, oracle, args)
    _same_bahdanau(student, oracle, (*args, np.array([2])),
                   "with valid_lens = [2] only the first 2 positions share the weight: mask the padded "
                   "positions before the softmax, as exercise 6's mask does.")


@check("bahdanau_step", points=1, public=True)
def test_bahdanau_step_shapes(student, oracle, rng):
    """a batch of 2, n = 5, d_q = 3, d_k = 4, h = 6: context (2, 4) and weights (2, 5)"""
    args = (*_bahdanau_random(rng, 2, 5, 3, 4, 6), np.array([5, 3]))
    context, weights = _pair(student.bahdanau_step(*args), BAHDANAU_OUT)
    assert_shape(context, (2, 4), what="context")
    assert_shape(weights, (2, 5), what="weights")
    _same_or_hint((context, weights), oracle.bahdanau_step(*args), BAHDANAU_OUT, BAHDANAU_HINT)


@check("bahdanau_step", points=1)
def test_bahdanau_step_empty_and_full_lengths(student, oracle, rng):
    """a valid length of 0 gives zero weights and a zero context, never NaN; a full length masks nothing"""
    args = (*_bahdanau_random(rng, 3, 4, 2, 3, 5), np.array([0, 4, 1]))
    _same_bahdanau(student, oracle, args,
                   "a sequence of valid length 0 has no position to attend to: its weights and its context "
                   "are zeros (your masked_softmax handles fully masked rows).")


@check("bahdanau_step", points=1)
def test_bahdanau_step_large_scores(student, oracle, rng):
    """stays finite and exact at scores of +-1e4 (a large w_v)"""
    # tanh(+-30) and tanh(0) are exactly +-1 and 0 in float32, so every score below is exact:
    # w_v . (+-1 | 0, +-1 | 0, +-1 | 0) with w_v = (1e4, -1e4, 2).
    state = np.zeros((2, 1), np.float32)                                 # (batch=2, d_q=1): projects to 0
    outputs = np.array([[[1, 0, 0], [1, 0, 1], [1, 0, -1], [0, -1, 1]],  # scores 1e4, 1e4+2, 1e4-2, 1e4+2
                        [[-1, 0, 0], [-1, 0, 1], [0, 1, 0], [-1, 0, -1]]],   # -1e4, -1e4+2, -1e4, -1e4-2
                       np.float32)                                       # (batch=2, n=4, d_k=3)
    W_q, W_k = np.ones((1, 3), np.float32), 30 * np.eye(3, dtype=np.float32)
    w_v = np.array([1e4, -1e4, 2], np.float32)
    hint = ("exp(1e4) overflows and exp(-1e4) underflows to 0: the softmax must subtract each row's "
            "maximum allowed score, as your masked_softmax does.")
    _same_bahdanau(student, oracle, (state, outputs, W_q, W_k, w_v), hint)
    _same_bahdanau(student, oracle, (state, outputs, W_q, W_k, w_v, np.array([1, 3])), hint)


@check("bahdanau_step", points=1)
def test_bahdanau_step_padding_is_ignored(student, oracle, rng):
    """padded positions change nothing, whatever they hold; the weights of the valid positions sum to 1"""
    state, outputs, W_q, W_k, w_v = _bahdanau_random(rng, 3, 6, 4, 5, 7)
    lens = np.array([6, 2, 4])
    context, weights = _same_bahdanau(student, oracle, (state, outputs, W_q, W_k, w_v, lens))
    _rows_sum_to_one(weights, np.ones(3, bool))
    changed = outputs.copy()
    for b, n in enumerate(lens):
        changed[b, n:] = 100 * _normal(rng, 6 - n, 5)                    # new content behind the padding
    again = _pair(student.bahdanau_step(state, changed, W_q, W_k, w_v, lens), BAHDANAU_OUT)
    _same_or_hint(again, (context, weights), tuple(f"{name} after changing padded positions" for name in BAHDANAU_OUT),
                  "positions at or after valid_lens[b] are padding: they must get weight exactly 0, so their "
                  "content cannot reach the context.")


@check("bahdanau_step", points=1)
def test_bahdanau_step_random(student, oracle, rng):
    """random inputs with d_q != d_k, without valid_lens"""
    _same_bahdanau(student, oracle, _bahdanau_random(rng, 4, 7, 3, 5, 2))


# --- attention_pooling ---------------------------------------------------------------------------

POOLING_OUT = ("pooled", "weights")
POOLING_HINT = ("scores are inputs . query / sqrt(d), a masked softmax over the n positions, then the "
                "weighted sum of the inputs: scaled dot-product attention with a single query, shared by "
                "every sequence.")


def _same_pooling(student, oracle, args, hint=POOLING_HINT):
    return _same_pair(student, oracle, "attention_pooling", args, POOLING_OUT, hint)


@check("attention_pooling", public=True, fixed=True)
def test_attention_pooling_worked_example(student, oracle, rng):
    """matches the worked example: no mask, mask [True, False], mask [False, False]"""
    inputs = np.array([[0, 1, 0, 0], [np.log(3), 0, 1, 0]], np.float32)   # (n=2, d=4)
    query = np.array([2, 0, 0, 0], np.float32)
    _same_pooling(student, oracle, (inputs, query))
    _same_pooling(student, oracle, (inputs, query, np.array([True, False])))
    _same_pooling(student, oracle, (inputs, query, np.array([False, False])),
                  "a sequence whose positions are all masked pools to zeros, never NaN.")


@check("attention_pooling", points=1, public=True)
def test_attention_pooling_shapes(student, oracle, rng):
    """(2, 5, 8) inputs, an (8,) query and a (2, 5) mask give (2, 8) pooled and (2, 5) weights"""
    inputs, query, mask = _normal(rng, 2, 5, 8), _normal(rng, 8), _random_mask(rng, 2, 5)
    mask[:, 0] = True
    pooled, weights = _pair(student.attention_pooling(inputs, query, mask), POOLING_OUT)
    assert_shape(pooled, (2, 8), what="pooled")
    assert_shape(weights, (2, 5), what="weights")
    _same_or_hint((pooled, weights), oracle.attention_pooling(inputs, query, mask), POOLING_OUT, POOLING_HINT)


@check("attention_pooling", points=1)
def test_attention_pooling_leading_dims(student, oracle, rng):
    """any number of leading batch dimensions, with a random mask"""
    inputs, query, mask = _normal(rng, 2, 3, 4, 6), _normal(rng, 6), _random_mask(rng, 2, 3, 4)
    _same_pooling(student, oracle, (inputs, query, mask),
                  "keep every leading dimension: the query and the mask need an axis of size 1 where the "
                  "query axis goes, just before the last axis of the scores.")


@check("attention_pooling", points=1)
def test_attention_pooling_fully_masked_row(student, oracle, rng):
    """a fully masked sequence pools to zeros, never NaN, and the others are unaffected"""
    inputs, query = _normal(rng, 3, 4, 5), _normal(rng, 5)
    mask = np.array([[True, False, True, True], [False] * 4, [False, False, False, True]])
    _same_pooling(student, oracle, (inputs, query, mask),
                  "a sequence with no unmasked position gets all-zero weights and a zero pooled vector.")


@check("attention_pooling", points=1)
def test_attention_pooling_scale(student, oracle, rng):
    """without a mask, divides the scores by sqrt(d) (d = 16)"""
    inputs, query = 2 * _normal(rng, 6, 16), _normal(rng, 16)
    _same_pooling(student, oracle, (inputs, query),
                  "the scores are inputs . query / sqrt(d), with d the size of the last axis: "
                  "the scaled dot product of exercise 2.")


@check("attention_pooling", points=1)
def test_attention_pooling_masked_positions_get_nothing(student, oracle, rng):
    """masked positions get weight exactly 0, however large their score; the other weights sum to 1"""
    inputs, query = _normal(rng, 4, 6, 3), np.ones(3, np.float32)
    mask = _random_mask(rng, 4, 6, p_allowed=0.5)
    mask[:, 0] = True
    inputs[~mask] = 50.0                                                 # a tempting score behind the mask
    pooled, weights = _same_pooling(student, oracle, (inputs, query, mask),
                                    "mask the scores before the softmax: True in the mask means "
                                    "'this position counts'.")
    _rows_sum_to_one(weights, np.ones(4, bool))
