"""The chapter-02 reference solutions (the masters) against the oracle, each other, and the built-ins.

- Every function of both masters equals the NumPy oracle on random inputs: extra batch dimensions,
  n_q != n_k, length 1, broadcast and fully masked masks, scores of +-1e4.
- PyTorch and TensorFlow give the same results on the same inputs; TensorFlow accepts NumPy arrays.
- `scaled_dot_product_attention` equals `torch.nn.functional.scaled_dot_product_attention`,
  `keras.ops.dot_product_attention` and `keras.layers.Attention`. The built-ins disagree with the
  contract (and each other) on rows whose keys are all masked, so those rows are compared only with
  the oracle, and the other rows with the built-ins.
"""
import os

import numpy as np
import pytest

from autograder.chapters import chapter
from autograder.notebooks import load_namespace, master_path
from autograder.oracle import ch02_principles as oracle

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "02_principles"
RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def torch():
    import torch

    return torch


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


@pytest.fixture(scope="module")
def keras(tf):
    import keras

    return keras


@pytest.fixture(scope="module")
def torch_ns(torch):
    return load_namespace(master_path(CHAPTER, "torch"))


@pytest.fixture(scope="module")
def tf_ns(tf):
    return load_namespace(master_path(CHAPTER, "tf"))


# --- random cases per exercise (NumPy arguments) -----------------------------------------------------

def _normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _mask(rng, *shape, p=0.6):
    return rng.random(shape) < p


def _tree(rng, n):
    order = rng.permutation(n)
    parents = np.full(n, -1, np.int64)
    for rank in range(1, n):
        parents[order[rank]] = order[rng.integers(rank)]
    return parents


def _cases():
    rng = np.random.default_rng(20240502)
    qk_shapes = [((3, 4), (5, 4)), ((2, 3, 4), (2, 5, 4)), ((2, 3, 1, 6), (2, 3, 7, 6)), ((1, 1), (1, 1)),
                 ((4, 8), (4, 8))]
    cases = []
    for qs, ks in qk_shapes:
        q, k = _normal(rng, *qs), _normal(rng, *ks)
        cases.append(("dot_product_scores", (q, k)))
        cases.append(("scaled_dot_product_scores", (q, k)))
    for batch, n_q, n_k, d_q, d_k, h in [((), 3, 5, 4, 6, 7), ((2,), 1, 4, 3, 3, 2), ((2, 3), 4, 2, 5, 2, 1),
                                         ((), 1, 1, 1, 1, 1)]:
        cases.append(("additive_scores", (_normal(rng, *batch, n_q, d_q), _normal(rng, *batch, n_k, d_k),
                                          _normal(rng, d_q, h), _normal(rng, d_k, h), _normal(rng, h))))
    for batch, n_q, n_k, d_q, d_k in [((), 3, 5, 4, 6), ((2,), 4, 4, 3, 3), ((2, 3), 1, 2, 5, 2)]:
        cases.append(("general_scores", (_normal(rng, *batch, n_q, d_q), _normal(rng, *batch, n_k, d_k),
                                         _normal(rng, d_q, d_k))))
    scores = 3 * _normal(rng, 2, 4, 6)
    fully = _mask(rng, 2, 4, 6)
    fully[0, 1] = False
    fully[1, 3] = False
    large = np.array([[1e4, 1e4 - 1, -1e4, 5e3], [-1e4, -1e4 + 2, -1e4 + 1, -1e4]], np.float32)
    cases += [
        ("masked_softmax", (scores,)),
        ("masked_softmax", (scores, None)),
        ("masked_softmax", (scores, _mask(rng, 2, 4, 6))),
        ("masked_softmax", (scores, fully)),
        ("masked_softmax", (scores, _mask(rng, 2, 1, 6))),          # (batch, 1, n_k)
        ("masked_softmax", (scores, _mask(rng, 4, 6))),             # (n_q, n_k) for every batch element
        ("masked_softmax", (3 * _normal(rng, 2, 3, 4, 5), _mask(rng, 2, 3, 4, 5))),
        ("masked_softmax", (large,)),
        ("masked_softmax", (large, np.array([[False, True, True, True], [True, True, False, True]]))),
        ("masked_softmax", (_normal(rng, 1, 1), np.array([[True]]))),
        ("padding_mask", (np.array([1, 3]), 4)),
        ("padding_mask", (np.array([0, 6, 2, 5]), 6)),
        ("padding_mask", (np.array([1]), 1)),
        ("causal_mask", (4,)),
        ("causal_mask", (1,)),
        ("causal_mask", (3, None)),
        ("causal_mask", (2, 6)),
        ("causal_mask", (6, 2)),
        ("causal_mask", (5, 5)),
        ("tree_mask", (np.array([-1, 0, 0, 1]),)),
        ("tree_mask", (np.array([-1]),)),
        ("tree_mask", (_tree(rng, 7),)),
        ("tree_mask", (_tree(rng, 12),)),
    ]
    for qs, ks, vs, mask in [
        ((3, 4), (5, 4), (5, 2), None),
        ((2, 3, 4), (2, 5, 4), (2, 5, 6), _mask(rng, 2, 3, 5)),
        ((2, 3, 4), (2, 5, 4), (2, 5, 6), oracle.padding_mask(np.array([5, 0]), 5)),
        ((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5), _mask(rng, 2, 3, 4, 6)),
        ((2, 5, 4), (2, 3, 4), (2, 3, 3), oracle.causal_mask(5, 3)),
        ((2, 3, 4), (2, 6, 4), (2, 6, 3), oracle.causal_mask(3, 6)),
        ((1, 1), (1, 1), (1, 1), None),
    ]:
        cases.append(("scaled_dot_product_attention", (_normal(rng, *qs), _normal(rng, *ks), _normal(rng, *vs), mask)))
    keys = 200 * np.eye(4, dtype=np.float32)
    cases.append(("scaled_dot_product_attention", (keys[[2, 0, 3]], keys, _normal(rng, 4, 3), None)))
    return cases + _second_edition_cases(rng)


def _second_edition_cases(rng):
    """The exercises that combine the pieces: padding ids, valid lengths 0 and full, fully masked rows."""
    cases = [
        ("segment_mask", (np.array([0, 0, 1, -1]),)),
        ("segment_mask", (np.array([-1, -1, 3, -2, -2, 3, 7, 7]),)),        # padding, unsorted ids
        ("segment_mask", (np.array([[5]]),)),
        ("segment_mask", (rng.integers(-2, 3, size=(2, 3, 6)),)),           # leading batch dims
        ("decoder_masks", (np.array([2, 3]), np.array([1, 2]), 3, 2)),
        ("decoder_masks", (np.array([0, 5, 3]), np.array([7, 0, 7]), 5, 7)),  # lengths 0 and full
        ("decoder_masks", (np.array([6, 1]), np.array([2, 2]), 6, 2)),        # n_tgt > n_src
        ("decoder_masks", (np.array([1]), np.array([4]), 1, 4)),
    ]
    for batch, n, d_q, d_k, h, lens in [(3, 5, 4, 6, 7, None), (3, 5, 4, 6, 7, [5, 0, 2]), (1, 1, 1, 1, 1, [1]),
                                        (2, 4, 3, 3, 2, [4, 4])]:
        args = (_normal(rng, batch, d_q), _normal(rng, batch, n, d_k), _normal(rng, d_q, h), _normal(rng, d_k, h),
                _normal(rng, h))
        cases.append(("bahdanau_step", args + (() if lens is None else (np.array(lens),))))
    # scores of exactly +-1e4 (+-2): tanh(+-30) is +-1 in float32, and w_v is (1e4, -1e4, 2)
    outputs = np.array([[[1, 0, 0], [1, 0, 1], [0, -1, 1]], [[-1, 0, 0], [-1, 0, 1], [-1, 0, -1]]], np.float32)
    large = (np.zeros((2, 1), np.float32), outputs, np.ones((1, 3), np.float32), 30 * np.eye(3, dtype=np.float32),
             np.array([1e4, -1e4, 2], np.float32))
    cases += [("bahdanau_step", large), ("bahdanau_step", large + (np.array([1, 2]),))]
    fully = _mask(rng, 2, 3, 5)
    fully[1, 2] = False                                                     # a fully masked row
    cases += [
        ("attention_pooling", (_normal(rng, 4, 6), _normal(rng, 6))),
        ("attention_pooling", (_normal(rng, 4, 6), _normal(rng, 6), None)),
        ("attention_pooling", (_normal(rng, 2, 3, 5, 8), _normal(rng, 8), fully)),
        ("attention_pooling", (_normal(rng, 3, 4, 2), _normal(rng, 2),
                               np.array([[True] * 4, [False] * 4, [False, True, False, False]]))),
        ("attention_pooling", (_normal(rng, 1, 3), _normal(rng, 3), np.array([True]))),
    ]
    return cases


CASES = _cases()
CASE_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]


def _to_torch(torch, args):
    return tuple(torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a for a in args)


def _to_tf(tf, args):
    return tuple(tf.constant(a) if isinstance(a, np.ndarray) else a for a in args)


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _compare(got: tuple, want: tuple, who: str):
    assert len(got) == len(want), who
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, f"{who}: dtype {g.dtype}, expected {w.dtype}"
        assert g.shape == w.shape, f"{who}: shape {g.shape}, expected {w.shape}"
        if w.dtype == bool:
            np.testing.assert_array_equal(g, w, err_msg=who)
        else:
            assert np.isfinite(g).all(), who
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=who)


@pytest.mark.parametrize("name, args", CASES, ids=CASE_IDS)
def test_both_frameworks_match_the_oracle_and_each_other(torch, tf, torch_ns, tf_ns, name, args):
    want = _as_tuple(getattr(oracle, name)(*args))

    got_torch = _as_tuple(torch_ns[name](*_to_torch(torch, args)))
    assert all(isinstance(g, torch.Tensor) for g in got_torch), [type(g) for g in got_torch]
    got_torch = tuple(g.numpy() for g in got_torch)
    _compare(got_torch, want, "torch vs oracle")

    for kind, tf_args in [("tf.Tensor", _to_tf(tf, args)), ("NumPy", args)]:
        got_tf = _as_tuple(tf_ns[name](*tf_args))
        assert all(isinstance(g, tf.Tensor) for g in got_tf), (kind, [type(g) for g in got_tf])
        got_tf = tuple(g.numpy() for g in got_tf)
        _compare(got_tf, want, f"tf ({kind} in) vs oracle")
        _compare(got_tf, got_torch, f"tf ({kind} in) vs torch")


def test_every_exercise_is_covered(torch_ns, tf_ns):
    names = {name for name, _ in CASES}
    assert names == set(chapter(CHAPTER).exercises)   # the record: the one list of the exercises
    for name in names:
        assert callable(torch_ns[name]) and callable(tf_ns[name])


# --- against the frameworks' built-in attention ------------------------------------------------------

def _builtin_cases():
    rng = np.random.default_rng(7)
    b_q_k = [
        ("no mask", (2, 3, 4), (2, 5, 4), (2, 5, 6), None),
        ("random bool mask", (2, 3, 4), (2, 5, 4), (2, 5, 6), _mask(rng, 2, 3, 5)),
        ("padding mask with an empty sequence", (3, 4, 8), (3, 5, 8), (3, 5, 2), oracle.padding_mask(np.array([5, 2, 0]), 5)),
        ("bottom-right causal, n_q < n_k", (2, 3, 4), (2, 7, 4), (2, 7, 3), oracle.causal_mask(3, 7)),
        ("bottom-right causal, n_q > n_k (fully masked rows)", (2, 6, 4), (2, 3, 4), (2, 3, 5), oracle.causal_mask(6, 3)),
        ("extra batch dims", (2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5), _mask(rng, 2, 3, 4, 6)),
        ("single query and key", (1, 1, 3), (1, 1, 3), (1, 1, 2), None),
    ]
    return [(name, _normal(rng, *qs), _normal(rng, *ks), _normal(rng, *vs), mask) for name, qs, ks, vs, mask in b_q_k]


BUILTIN_CASES = _builtin_cases()


def _rows_with_keys(queries, keys, mask):
    shape = np.broadcast_shapes(queries.shape[:-1] + (keys.shape[-2],), () if mask is None else mask.shape)
    full = np.ones(shape, bool) if mask is None else np.broadcast_to(mask, shape)
    return full.any(-1)                                   # (..., n_q)


def _references(torch_ns, tf_ns, torch, tf, q, k, v, mask):
    ours_torch = torch_ns["scaled_dot_product_attention"](*_to_torch(torch, (q, k, v, mask)))
    ours_tf = tf_ns["scaled_dot_product_attention"](*_to_tf(tf, (q, k, v, mask)))
    return [("torch", tuple(t.numpy() for t in ours_torch)), ("tf", tuple(t.numpy() for t in ours_tf))]


@pytest.mark.parametrize("case", BUILTIN_CASES, ids=[c[0] for c in BUILTIN_CASES])
def test_attention_matches_torch_builtin(torch, tf, torch_ns, tf_ns, case):
    import torch.nn.functional as F

    _, q, k, v, mask = case
    rows = _rows_with_keys(q, k, mask)
    tq, tk, tv = _to_torch(torch, (q, k, v))
    tmask = None if mask is None else torch.from_numpy(mask.copy())
    builtin_out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tmask).numpy()
    # the weights are the output for identity values: row i of eye(n_k) is key i's one-hot vector
    n_k = k.shape[-2]
    identity = torch.eye(n_k).expand(*k.shape[:-2], n_k, n_k)
    builtin_weights = F.scaled_dot_product_attention(tq, tk, identity, attn_mask=tmask).numpy()
    for who, (output, weights) in _references(torch_ns, tf_ns, torch, tf, q, k, v, mask):
        np.testing.assert_allclose(output[rows], builtin_out[rows], rtol=RTOL, atol=ATOL, err_msg=who)
        np.testing.assert_allclose(weights[rows], builtin_weights[rows], rtol=RTOL, atol=ATOL, err_msg=who)
        assert (output[~rows] == 0).all() and (weights[~rows] == 0).all(), who


@pytest.mark.parametrize("case", BUILTIN_CASES, ids=[c[0] for c in BUILTIN_CASES])
def test_attention_matches_keras_dot_product_attention(torch, tf, keras, torch_ns, tf_ns, case):
    _, q, k, v, mask = case
    rows = _rows_with_keys(q, k, mask)
    batch = q.shape[:-2]
    n_q, n_k = q.shape[-2], k.shape[-2]
    # keras wants (B, T, heads, d): flatten the leading dimensions into B and add one head
    flat = lambda x: x.reshape((-1,) + x.shape[-2:])[:, :, None, :]   # noqa: E731
    kmask = None
    if mask is not None:
        kmask = np.broadcast_to(mask, batch + (n_q, n_k)).reshape(-1, 1, n_q, n_k)   # (B, heads, n_q, n_k)
    out = keras.ops.dot_product_attention(flat(q), flat(k), flat(v), mask=kmask)
    builtin_out = np.asarray(out)[:, :, 0, :].reshape(batch + (n_q, v.shape[-1]))
    for who, (output, _) in _references(torch_ns, tf_ns, torch, tf, q, k, v, mask):
        np.testing.assert_allclose(output[rows], builtin_out[rows], rtol=RTOL, atol=ATOL, err_msg=who)


@pytest.mark.parametrize("valid_lens", [[5, 3, 1], [5, 0, 2]], ids=["padding", "padding with an empty sequence"])
def test_attention_matches_keras_attention_layer(torch, tf, keras, torch_ns, tf_ns, valid_lens):
    rng = np.random.default_rng(11)
    q, k, v = _normal(rng, 3, 4, 8), _normal(rng, 3, 5, 8), _normal(rng, 3, 5, 6)
    mask = oracle.padding_mask(np.array(valid_lens), 5)             # (3, 1, 5)
    layer = keras.layers.Attention()                                 # dot scores without a scale:
    builtin_out, builtin_weights = layer([q / np.sqrt(8).astype(np.float32), v, k],   # so scale the queries
                                         mask=[None, mask[:, 0, :]], return_attention_scores=True)
    rows = _rows_with_keys(q, k, mask)
    for who, (output, weights) in _references(torch_ns, tf_ns, torch, tf, q, k, v, mask):
        np.testing.assert_allclose(output[rows], np.asarray(builtin_out)[rows], rtol=RTOL, atol=ATOL, err_msg=who)
        np.testing.assert_allclose(weights[rows], np.asarray(builtin_weights)[rows], rtol=RTOL, atol=ATOL,
                                   err_msg=who)


def test_references_do_not_call_builtin_attention():
    """No framework attention or softmax (`F.softmax`, `tf.nn.softmax`, ...) in the masters' code."""
    import ast

    import nbformat

    banned = {"scaled_dot_product_attention", "MultiheadAttention", "MultiHeadAttention", "dot_product_attention",
              "Attention", "AdditiveAttention", "softmax", "log_softmax"}
    for fw in ("torch", "tf"):
        nb = nbformat.read(master_path(CHAPTER, fw), as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            called = {node.func.attr for node in ast.walk(ast.parse(cell.source))
                      if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
            assert not called & banned, f"{fw} master, cell {cell.id}: {sorted(called & banned)}"
