"""Grading checks for chapter 04 (code): splitting and merging heads, and four layers that equal the
frameworks' own (multi-head attention, additive attention, the encoder and the decoder block).

The layers are built on the student's side with the contract's arguments (`student.new(...)`), the
grader's weights are loaded into the attributes the contract names (maths layout; sub-layers by
their attribute path, "attention.w_q"), and the outputs are compared with the oracle's, which holds
the same weights.

Public checks (what `check("name")` runs in the notebook): a worked example or a small random case
with its shapes. Hidden checks probe what the contract fixes: extra leading dimensions, head order,
T_q != T_k with keys and values that differ, masks of every usual shape (True = may attend) with
query rows whose keys are all masked (zero weights, never NaN), layers without biases, both norm
orders, inputs of small magnitude (where LayerNorm's epsilon shows), and the decoder's two masks.
Each failure's first line ends with a fixed hint; hidden inputs are never named in it.
"""
import numpy as np

from autograder.checks.api import CheckFailure, assert_close_or_hint, assert_shape, check, returned

BLOCK_TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}   # float32 through three matmuls, a softmax and a norm


def _normal(rng, *shape, scale=1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _linear(rng, d_in, d_out, bias=True, bias_scale=0.3) -> dict:
    """A Linear's weights in the maths layout; kernel ~ N(0, 1.5^2 / d_in) so that scores are O(1)
    but far from uniform (a missing or wrong scale shows)."""
    params = {"kernel": _normal(rng, d_in, d_out, scale=1.5 / np.sqrt(d_in))}
    if bias:
        params["bias"] = _normal(rng, d_out, scale=bias_scale)
    return params


def _mha(rng, d, bias=True, bias_scale=0.3) -> dict:
    return {name: _linear(rng, d, d, bias, bias_scale) for name in ("w_q", "w_k", "w_v", "w_o")}


def _norm(rng, d) -> dict:
    return {"scale": (1 + _normal(rng, d, scale=0.3)).astype(np.float32), "offset": _normal(rng, d, scale=0.2)}


def _encoder_weights(rng, d, d_ff, bias_scale=0.3) -> dict:
    return {"attention": _mha(rng, d, bias_scale=bias_scale), "ffn_in": _linear(rng, d, d_ff),
            "ffn_out": _linear(rng, d_ff, d), "norm1": _norm(rng, d), "norm2": _norm(rng, d)}


def _decoder_weights(rng, d, d_ff, bias_scale=0.3) -> dict:
    return {"self_attention": _mha(rng, d, bias_scale=bias_scale),
            "cross_attention": _mha(rng, d, bias_scale=bias_scale),
            "ffn_in": _linear(rng, d, d_ff), "ffn_out": _linear(rng, d_ff, d),
            "norm1": _norm(rng, d), "norm2": _norm(rng, d), "norm3": _norm(rng, d)}


def _flat(nested: dict, prefix: str = "") -> dict:
    """{"attention": {"w_q": {"kernel": ..}}} -> {"attention.w_q": {"kernel": ..}}: what load_weights takes."""
    flat = {}
    for name, value in nested.items():
        if all(isinstance(v, dict) for v in value.values()):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _pair(student, oracle, name, weights, *args, **kwargs):
    """The student's layer and the oracle's, built with the same arguments and weights."""
    layer = student.new(name, *args, **kwargs)
    layer.load_weights(_flat(weights))

    def reference(*inputs, **call_kwargs):   # the oracle takes the weights and constructor arguments as data
        return getattr(oracle, name)(weights, args, kwargs, *inputs, **call_kwargs)
    return layer, reference


def _attention_result(got, want, what: str, hint: str, **tolerances) -> None:
    """(output, weights) of an attention layer: a tuple, the shapes, then the values."""
    if not isinstance(got, tuple) or len(got) != 2:
        kind = returned(got)
        raise CheckFailure(f"{what}: expected a tuple (output, weights), got {kind}.")
    for g, w, part in zip(got, want, ("output", "weights")):
        assert_shape(g, w.shape, what=f"{what} {part}")
    assert_close_or_hint(got[1], want[1], f"{what} weights", hint, **tolerances)
    assert_close_or_hint(got[0], want[0], f"{what} output", hint, **tolerances)


def _block_result(got, want, what: str, hint: str) -> None:
    if isinstance(got, tuple):
        raise CheckFailure(f"{what}: expected one tensor y (B, T, D), got {returned(got)}.")
    assert_shape(got, want.shape, what=what)
    assert_close_or_hint(got, want, what, hint, **BLOCK_TOLERANCE)


def _padding(n_k, lengths) -> np.ndarray:
    """(B, 1, n_k): True for the first lengths[b] keys."""
    return (np.arange(n_k)[None, None, :] < np.asarray(lengths)[:, None, None])


def _causal(n) -> np.ndarray:
    return np.tril(np.ones((n, n), bool))


# --- split_heads ---------------------------------------------------------------------------------

SPLIT_HINT = ("reshape (..., T, H*d) to (..., T, H, d), then swap the T and H axes: head h takes "
              "features h*d .. (h+1)*d - 1.")


@check("split_heads", public=True, fixed=True)
def test_split_heads_worked_example(student, oracle, rng):
    """matches the worked example: (1, 2, 4) with 2 heads gives (1, 2, 2, 2)"""
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    got = student.split_heads(x, 2)
    assert_shape(got, (1, 2, 2, 2), what="split_heads")
    assert_close_or_hint(got, oracle.split_heads(x, 2), "split_heads", SPLIT_HINT)


@check("split_heads", points=1, public=True)
def test_split_heads_shape(student, oracle, rng):
    """a (2, 5, 12) input with 3 heads gives (2, 3, 5, 4), head by head"""
    x = _normal(rng, 2, 5, 12)
    got = student.split_heads(x, 3)
    assert_shape(got, (2, 3, 5, 4), what="split_heads")
    assert_close_or_hint(got, oracle.split_heads(x, 3), "split_heads", SPLIT_HINT)


@check("split_heads", points=1)
def test_split_heads_head_counts(student, oracle, rng):
    """one head, as many heads as features, and sizes where T, H and d all differ"""
    for shape, heads in (((3, 4, 6), 1), ((2, 3, 5), 5), ((3, 7, 10), 2), ((1, 2, 12), 4)):
        x = _normal(rng, *shape)
        assert_close_or_hint(student.split_heads(x, heads), oracle.split_heads(x, heads),
                             f"split_heads with {heads} head(s)", SPLIT_HINT)


@check("split_heads", points=1)
def test_split_heads_leading_dimensions(student, oracle, rng):
    """extra leading dimensions (2, 3, T, D) are kept: (2, 3, H, T, d)"""
    x = _normal(rng, 2, 3, 4, 8)
    assert_close_or_hint(student.split_heads(x, 2), oracle.split_heads(x, 2), "split_heads", SPLIT_HINT
                         + " Any number of leading dimensions: work on the last two axes only.")


# --- merge_heads ---------------------------------------------------------------------------------

MERGE_HINT = ("swap the H and T axes back to (..., T, H, d), then reshape to (..., T, H*d): the inverse "
              "of split_heads.")


@check("merge_heads", public=True, fixed=True)
def test_merge_heads_worked_example(student, oracle, rng):
    """merges the worked example back: (1, 2, 2, 2) gives (1, 2, 4)"""
    heads = oracle.split_heads(np.arange(8, dtype=np.float32).reshape(1, 2, 4), 2)
    got = student.merge_heads(heads)
    assert_shape(got, (1, 2, 4), what="merge_heads")
    assert_close_or_hint(got, oracle.merge_heads(heads), "merge_heads", MERGE_HINT)


@check("merge_heads", points=1, public=True)
def test_merge_heads_shape(student, oracle, rng):
    """a (2, 3, 5, 4) input gives (2, 5, 12)"""
    x = _normal(rng, 2, 3, 5, 4)
    got = student.merge_heads(x)
    assert_shape(got, (2, 5, 12), what="merge_heads")
    assert_close_or_hint(got, oracle.merge_heads(x), "merge_heads", MERGE_HINT)


@check("merge_heads", points=1)
def test_merge_heads_inverts_split_heads(student, oracle, rng):
    """merge_heads(split_heads(x)) is x, for sizes where B, H, T and d all differ"""
    for shape, heads in (((2, 7, 15), 3), ((3, 4, 10), 5), ((1, 6, 8), 8)):
        x = _normal(rng, *shape)
        assert_close_or_hint(student.merge_heads(oracle.split_heads(x, heads)), x,
                             "merge_heads(split_heads(x))", MERGE_HINT)


@check("merge_heads", points=1)
def test_merge_heads_leading_dimensions(student, oracle, rng):
    """extra leading dimensions (2, 3, H, T, d) are kept: (2, 3, T, H*d)"""
    x = _normal(rng, 2, 3, 4, 5, 2)
    assert_close_or_hint(student.merge_heads(x), oracle.merge_heads(x), "merge_heads", MERGE_HINT
                         + " Any number of leading dimensions: work on the last three axes only.")


# --- MultiHeadAttention --------------------------------------------------------------------------

MHA_HINT = ("project with w_q, w_k, w_v; split the heads; scores q k^T / sqrt(d) with d = D / H, the "
            "size of one head; softmax over the keys; weights @ v; merge the heads; then w_o.")
MHA_MASK_HINT = ("the mask (True = may attend) is broadcastable to (B, T_q, T_k) and the same for every "
                 "head: insert the head axis before T_q, set masked scores to -inf before the softmax, "
                 "and give a row with no allowed key zero weights, not NaN.")


@check("MultiHeadAttention", points=1, public=True)
def test_mha_small_example(student, oracle, rng):
    """MultiHeadAttention(8, 2) on (2, 3, 8) self-attention: output (2, 3, 8), weights (2, 2, 3, 3)"""
    layer, reference = _pair(student, oracle, "MultiHeadAttention", _mha(rng, 8), 8, 2)
    x = _normal(rng, 2, 3, 8)
    _attention_result(layer(x, x, x), reference(x, x, x), "MultiHeadAttention", MHA_HINT)


@check("MultiHeadAttention", points=1, public=True)
def test_mha_cross_attention_shapes(student, oracle, rng):
    """T_q = 3 queries attend to T_k = 5 keys and values: output (2, 3, 16), weights (2, 4, 3, 5)"""
    layer, reference = _pair(student, oracle, "MultiHeadAttention", _mha(rng, 16), 16, 4)
    query, key, value = _normal(rng, 2, 3, 16), _normal(rng, 2, 5, 16), _normal(rng, 2, 5, 16)
    _attention_result(layer(query, key, value), reference(query, key, value), "MultiHeadAttention", MHA_HINT)


@check("MultiHeadAttention", points=1)
def test_mha_general(student, oracle, rng):
    """distinct queries, keys and values, T_q != T_k, with 1, 4 and 8 heads"""
    for heads, batch, n_q, n_k in ((4, 3, 6, 2), (1, 2, 4, 7), (8, 1, 5, 3)):
        layer, reference = _pair(student, oracle, "MultiHeadAttention", _mha(rng, 16), 16, heads)
        query, key, value = _normal(rng, batch, n_q, 16), _normal(rng, batch, n_k, 16), _normal(rng, batch, n_k, 16)
        _attention_result(layer(query, key, value), reference(query, key, value),
                          f"MultiHeadAttention with {heads} head(s)", MHA_HINT)


@check("MultiHeadAttention", points=1)
def test_mha_masks(student, oracle, rng):
    """masks of shape (T_q, T_k), (B, 1, T_k) and (B, T_q, T_k), True = may attend"""
    layer, reference = _pair(student, oracle, "MultiHeadAttention", _mha(rng, 12), 12, 3)
    query, key = _normal(rng, 2, 4, 12), _normal(rng, 2, 6, 12)
    value = _normal(rng, 2, 6, 12)
    masks = (np.tril(np.ones((4, 6), bool), k=2),            # (T_q, T_k): bottom-right causal
             _padding(6, [6, 3]),                    # (B, 1, T_k): padding
             rng.random((2, 4, 6)) < 0.6)                    # (B, T_q, T_k)
    masks[2][..., 0] = True                                  # every row keeps a key here
    for mask in masks:
        _attention_result(layer(query, key, value, mask=mask), reference(query, key, value, mask=mask),
                          f"MultiHeadAttention with a mask of shape {mask.shape}", MHA_MASK_HINT)


@check("MultiHeadAttention", points=1)
def test_mha_fully_masked_rows(student, oracle, rng):
    """a query whose keys are all masked gets zero weights, and w_o's bias as output, never NaN"""
    layer, reference = _pair(student, oracle, "MultiHeadAttention", _mha(rng, 8), 8, 2)
    query, key = _normal(rng, 2, 3, 8), _normal(rng, 2, 5, 8)
    mask = rng.random((2, 3, 5)) < 0.7
    mask[:, :, 0] = True
    mask[0, 1] = False                     # one query row with no key
    mask[1] = False                        # a whole batch item with no key (padding length 0)
    _attention_result(layer(query, key, key, mask=mask), reference(query, key, key, mask=mask),
                      "MultiHeadAttention with fully masked rows", MHA_MASK_HINT)


@check("MultiHeadAttention", points=1)
def test_mha_without_bias(student, oracle, rng):
    """MultiHeadAttention(16, 4, bias=False): projections without biases"""
    layer, reference = _pair(student, oracle, "MultiHeadAttention", _mha(rng, 16, bias=False), 16, 4, bias=False)
    query, key = _normal(rng, 2, 3, 16), _normal(rng, 2, 4, 16)
    _attention_result(layer(query, key, key), reference(query, key, key), "MultiHeadAttention(bias=False)",
                      MHA_HINT + " Pass bias on to every projection.")


# --- AdditiveAttention ---------------------------------------------------------------------------

ADDITIVE_HINT = ("score[i, j] = w_v . tanh(W_q q_i + W_k k_j), no scaling: broadcast W_q q as "
                 "(..., n_q, 1, h) and W_k k as (..., 1, n_k, h); softmax over the keys; weights @ values.")
ADDITIVE_MASK_HINT = ("masked scores (mask False) become -inf before the softmax; a row with no allowed "
                      "key gets zero weights and a zero output, not NaN.")


def _additive(rng, query_dim, key_dim, hiddens) -> dict:
    return {"W_q": _linear(rng, query_dim, hiddens, bias=False), "W_k": _linear(rng, key_dim, hiddens, bias=False),
            "w_v": {"kernel": _normal(rng, hiddens, 1, scale=2.0 / np.sqrt(hiddens))}}


@check("AdditiveAttention", points=1, public=True)
def test_additive_small_example(student, oracle, rng):
    """AdditiveAttention(4, 6, 8): queries (2, 3, 4), keys (2, 5, 6), values (2, 5, 3)"""
    layer, reference = _pair(student, oracle, "AdditiveAttention", _additive(rng, 4, 6, 8), 4, 6, 8)
    queries, keys, values = _normal(rng, 2, 3, 4), _normal(rng, 2, 5, 6), _normal(rng, 2, 5, 3)
    _attention_result(layer(queries, keys, values), reference(queries, keys, values), "AdditiveAttention",
                      ADDITIVE_HINT)


@check("AdditiveAttention", points=1, public=True)
def test_additive_padding_mask(student, oracle, rng):
    """a (2, 1, 5) padding mask: the second sequence has 2 valid keys"""
    layer, reference = _pair(student, oracle, "AdditiveAttention", _additive(rng, 3, 3, 4), 3, 3, 4)
    queries, keys, values = _normal(rng, 2, 2, 3), _normal(rng, 2, 5, 3), _normal(rng, 2, 5, 2)
    mask = _padding(5, [5, 2])
    _attention_result(layer(queries, keys, values, mask=mask), reference(queries, keys, values, mask=mask),
                      "AdditiveAttention", ADDITIVE_MASK_HINT)


@check("AdditiveAttention", points=1)
def test_additive_general(student, oracle, rng):
    """query_dim != key_dim != d_v, one query, many keys, and a single key"""
    for q_dim, k_dim, hiddens, n_q, n_k, d_v in ((5, 2, 7, 1, 9, 4), (2, 8, 3, 6, 1, 1), (6, 6, 16, 4, 4, 6)):
        layer, reference = _pair(student, oracle, "AdditiveAttention", _additive(rng, q_dim, k_dim, hiddens),
                                 q_dim, k_dim, hiddens)
        queries, keys, values = _normal(rng, 3, n_q, q_dim), _normal(rng, 3, n_k, k_dim), _normal(rng, 3, n_k, d_v)
        _attention_result(layer(queries, keys, values), reference(queries, keys, values),
                          "AdditiveAttention", ADDITIVE_HINT)


@check("AdditiveAttention", points=1)
def test_additive_leading_dimensions(student, oracle, rng):
    """extra leading dimensions (2, 3, n, d) with a broadcast (n_q, n_k) mask"""
    layer, reference = _pair(student, oracle, "AdditiveAttention", _additive(rng, 4, 5, 6), 4, 5, 6)
    queries, keys, values = _normal(rng, 2, 3, 4, 4), _normal(rng, 2, 3, 6, 5), _normal(rng, 2, 3, 6, 2)
    mask = np.tril(np.ones((4, 6), bool), k=2)
    _attention_result(layer(queries, keys, values, mask=mask), reference(queries, keys, values, mask=mask),
                      "AdditiveAttention", ADDITIVE_HINT + " Any number of leading dimensions.")


@check("AdditiveAttention", points=1)
def test_additive_fully_masked_rows(student, oracle, rng):
    """rows whose keys are all masked give zero weights and a zero output, never NaN"""
    layer, reference = _pair(student, oracle, "AdditiveAttention", _additive(rng, 3, 4, 5), 3, 4, 5)
    queries, keys, values = _normal(rng, 2, 4, 3), _normal(rng, 2, 6, 4), _normal(rng, 2, 6, 3)
    mask = rng.random((2, 4, 6)) < 0.6
    mask[..., 0] = True
    mask[0, 2] = False
    mask[1, :] = False
    _attention_result(layer(queries, keys, values, mask=mask), reference(queries, keys, values, mask=mask),
                      "AdditiveAttention with fully masked rows", ADDITIVE_MASK_HINT)


# --- TransformerEncoderBlock ---------------------------------------------------------------------

ENCODER_HINT = ("post-norm: x = norm1(x + attention(x, x, x)[0]); x = norm2(x + ffn_out(relu(ffn_in(x)))). "
                "Pre-norm (norm_first): x = x + attention(n, n, n)[0] with n = norm1(x); "
                "x = x + ffn(norm2(x)). LayerNorm eps is 1e-5.")


def _encoder_case(student, oracle, rng, norm_first, x, mask=None, bias_scale=0.3, d_ff=24):
    d = x.shape[-1]
    layer, reference = _pair(student, oracle, "TransformerEncoderBlock", _encoder_weights(rng, d, d_ff, bias_scale),
                             d, 4, d_ff, norm_first=norm_first)
    kind = "pre-norm" if norm_first else "post-norm"
    _block_result(layer(x, mask=mask), reference(x, mask=mask), f"TransformerEncoderBlock ({kind})", ENCODER_HINT)


@check("TransformerEncoderBlock", points=1, public=True)
def test_encoder_post_norm_example(student, oracle, rng):
    """TransformerEncoderBlock(16, 4, 24) (post-norm) on (2, 5, 16), no mask"""
    _encoder_case(student, oracle, rng, False, _normal(rng, 2, 5, 16))


@check("TransformerEncoderBlock", points=1, public=True)
def test_encoder_pre_norm_example(student, oracle, rng):
    """TransformerEncoderBlock(16, 4, 24, norm_first=True) on (2, 5, 16), no mask"""
    _encoder_case(student, oracle, rng, True, _normal(rng, 2, 5, 16))


@check("TransformerEncoderBlock", points=1)
def test_encoder_masks(student, oracle, rng):
    """both norm orders with a padding mask (B, 1, T) and a causal mask (T, T), True = may attend"""
    x = _normal(rng, 3, 6, 16)
    for norm_first in (False, True):
        _encoder_case(student, oracle, rng, norm_first, x, mask=_padding(6, [6, 4, 1]))
        _encoder_case(student, oracle, rng, norm_first, x, mask=_causal(6))


@check("TransformerEncoderBlock", points=1)
def test_encoder_small_inputs(student, oracle, rng):
    """inputs of magnitude 0.01, where LayerNorm's eps = 1e-5 matters, in both norm orders"""
    x = _normal(rng, 2, 4, 16, scale=0.01)
    for norm_first in (False, True):
        _encoder_case(student, oracle, rng, norm_first, x, bias_scale=0.01)


@check("TransformerEncoderBlock", points=1)
def test_encoder_other_sizes(student, oracle, rng):
    """d_model 32 with d_ff 8 (smaller than d_model), one sequence of length 1 and a batch of 4"""
    for x in (_normal(rng, 1, 1, 32), _normal(rng, 4, 3, 32)):
        for norm_first in (False, True):
            _encoder_case(student, oracle, rng, norm_first, x, d_ff=8)


# --- TransformerDecoderBlock ---------------------------------------------------------------------

DECODER_HINT = ("post-norm: x = norm1(x + self_attention(x, x, x, self_mask)[0]); "
                "x = norm2(x + cross_attention(x, memory, memory, memory_mask)[0]); x = norm3(x + ffn(x)). "
                "Pre-norm (norm_first): normalise each sub-layer's input (never memory) and add its output to x.")


def _decoder_case(student, oracle, rng, norm_first, x, memory, self_mask=None, memory_mask=None,
                  bias_scale=0.3, d_ff=24, what=""):
    d = x.shape[-1]
    layer, reference = _pair(student, oracle, "TransformerDecoderBlock", _decoder_weights(rng, d, d_ff, bias_scale),
                             d, 4, d_ff, norm_first=norm_first)
    kind = "pre-norm" if norm_first else "post-norm"
    got = layer(x, memory, self_mask=self_mask, memory_mask=memory_mask)
    want = reference(x, memory, self_mask=self_mask, memory_mask=memory_mask)
    _block_result(got, want, f"TransformerDecoderBlock ({kind}{what})", DECODER_HINT)


@check("TransformerDecoderBlock", points=1, public=True)
def test_decoder_post_norm_example(student, oracle, rng):
    """TransformerDecoderBlock(16, 4, 24) (post-norm): x (2, 4, 16) attends to memory (2, 6, 16), no masks"""
    _decoder_case(student, oracle, rng, False, _normal(rng, 2, 4, 16), _normal(rng, 2, 6, 16))


@check("TransformerDecoderBlock", points=1, public=True)
def test_decoder_pre_norm_causal(student, oracle, rng):
    """TransformerDecoderBlock(16, 4, 24, norm_first=True) with a causal self_mask (4, 4)"""
    _decoder_case(student, oracle, rng, True, _normal(rng, 2, 4, 16), _normal(rng, 2, 6, 16),
                  self_mask=_causal(4))


@check("TransformerDecoderBlock", points=1)
def test_decoder_both_masks(student, oracle, rng):
    """both norm orders with a causal self_mask and a (B, 1, S) memory padding mask"""
    x, memory = _normal(rng, 3, 5, 16), _normal(rng, 3, 7, 16)
    for norm_first in (False, True):
        _decoder_case(student, oracle, rng, norm_first, x, memory, self_mask=_causal(5),
                      memory_mask=_padding(7, [7, 2, 5]), what=", both masks")


@check("TransformerDecoderBlock", points=1)
def test_decoder_memory_mask_only(student, oracle, rng):
    """memory_mask alone, (B, T, S), with a batch item whose memory is all masked (no NaN)"""
    x, memory = _normal(rng, 2, 3, 16), _normal(rng, 2, 8, 16)
    mask = rng.random((2, 3, 8)) < 0.5
    mask[0, :, 0] = True
    mask[1] = False
    for norm_first in (False, True):
        _decoder_case(student, oracle, rng, norm_first, x, memory, memory_mask=mask, what=", memory_mask only")


@check("TransformerDecoderBlock", points=1)
def test_decoder_small_inputs(student, oracle, rng):
    """x and memory of magnitude 0.01, where LayerNorm's eps = 1e-5 matters, in both norm orders"""
    x, memory = _normal(rng, 2, 3, 16, scale=0.01), _normal(rng, 2, 5, 16, scale=0.01)
    for norm_first in (False, True):
        _decoder_case(student, oracle, rng, norm_first, x, memory, self_mask=_causal(3), bias_scale=0.01,
                      what=", small inputs")
