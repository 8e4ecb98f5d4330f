"""Grading checks for chapter 03 (mathematics): log-sum-exp, the softmax Jacobian, attention's
gradients by hand, sinusoidal positions, the cost of attention and the entropy of its weights.

Public checks (what `check("name")` runs in the notebook) use the notebook's worked examples and a
shape. Hidden checks compare with the oracle on random inputs and probe what the contract fixes:
scores of +-1e4, -inf entries and all -inf slices, leading batch dimensions, d_k != d_v, the
Jacobian's symmetry and zero row sums, gradients against finite differences, the even/odd
interleaving of sines and cosines, the factor 2 and the heads of the cost, and 0 log 0 = 0.
Each failure's first line ends with a fixed hint; hidden inputs are never named in it.
"""
import math

import numpy as np

from autograder.checks.api import CheckFailure, assert_close_or_hint, assert_shape, check, detail, returned


def _normal(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _shaped_like(got, shape: tuple, want, what: str, hint: str) -> None:
    """The shape first (its own message), then the values."""
    assert_shape(got, shape, what=what)
    assert_close_or_hint(got, want, what, hint)


def _probabilities(rng, *shape, zeros: bool = False) -> np.ndarray:
    """Random rows that sum to 1 (float32), with some exact zeros when `zeros`."""
    raw = rng.random(shape) + 0.05
    if zeros:
        raw = np.where(rng.random(shape) < 0.4, 0.0, raw)
        raw[..., 0] = np.maximum(raw[..., 0], 0.3)            # every row keeps a nonzero weight
    return (raw / raw.sum(axis=-1, keepdims=True)).astype(np.float32)


# --- logsumexp -----------------------------------------------------------------------------------

LSE_HINT = ("subtract the slice's maximum before exp and add it back after log; where the maximum "
            "is -inf (an all -inf slice), shift by 0 instead so the result is -inf, not NaN.")


@check("logsumexp", public=True, fixed=True)
def test_logsumexp_worked_example(student, oracle, rng):
    """matches the worked example"""
    x = np.array([[1, 2, 3], [0, 0, 0]], np.float32)
    _shaped_like(student.logsumexp(x), (2,), oracle.logsumexp(x), "logsumexp", LSE_HINT)


@check("logsumexp", points=1, public=True)
def test_logsumexp_shape(student, oracle, rng):
    """a (2, 3, 5) input gives a (2, 3) result over the last axis"""
    x = _normal(rng, 2, 3, 5)
    _shaped_like(student.logsumexp(x), (2, 3), oracle.logsumexp(x), "logsumexp", LSE_HINT)


@check("logsumexp", points=1)
def test_logsumexp_other_axis(student, oracle, rng):
    """the axis argument: axis=1 and axis=0 of a (2, 3, 4) input"""
    x = _normal(rng, 2, 3, 4)
    for axis in (1, 0):
        assert_close_or_hint(student.logsumexp(x, axis=axis), oracle.logsumexp(x, axis=axis),
                             f"logsumexp over axis {axis}", "reduce over the given axis and remove it.")


@check("logsumexp", points=1)
def test_logsumexp_large_values(student, oracle, rng):
    """stays finite at +-1e4"""
    x = np.concatenate([1e4 + _normal(rng, 3, 6), -1e4 + _normal(rng, 3, 6)]).astype(np.float32)
    assert_close_or_hint(student.logsumexp(x), oracle.logsumexp(x), "logsumexp at +-1e4", LSE_HINT)


@check("logsumexp", points=1)
def test_logsumexp_minus_infinity(student, oracle, rng):
    """-inf entries count as exp(-inf) = 0, and a slice that is all -inf gives -inf"""
    x = _normal(rng, 2, 4, 5)
    x[rng.random(x.shape) < 0.4] = -np.inf
    x[:, :, 0] = np.where(rng.random((2, 4)) < 0.5, x[:, :, 0], 1.0)
    x[0, 1] = -np.inf
    x[1, 3] = -np.inf
    assert_close_or_hint(student.logsumexp(x), oracle.logsumexp(x), "logsumexp with -inf entries", LSE_HINT)


# --- softmax_jacobian ----------------------------------------------------------------------------

JACOBIAN_HINT = "J[i, j] = p_i * (delta_ij - p_j): diag(p) minus the outer product p p^T."


@check("softmax_jacobian", public=True, fixed=True)
def test_softmax_jacobian_worked_example(student, oracle, rng):
    """matches the worked example"""
    p = np.array([0.5, 0.25, 0.25], np.float32)
    _shaped_like(student.softmax_jacobian(p), (3, 3), oracle.softmax_jacobian(p), "Jacobian", JACOBIAN_HINT)


@check("softmax_jacobian", points=1, public=True)
def test_softmax_jacobian_shape(student, oracle, rng):
    """a (2, 3, 4) batch of probability vectors gives (2, 3, 4, 4) Jacobians"""
    p = _probabilities(rng, 2, 3, 4)
    _shaped_like(student.softmax_jacobian(p), (2, 3, 4, 4), oracle.softmax_jacobian(p), "Jacobian",
                 JACOBIAN_HINT)


@check("softmax_jacobian", points=1)
def test_softmax_jacobian_symmetric_rows_sum_to_zero(student, oracle, rng):
    """each Jacobian is symmetric, and its rows sum to 0 (softmax is shift invariant)"""
    p = _probabilities(rng, 3, 6)
    got = student.softmax_jacobian(p)
    assert_shape(got, (3, 6, 6), what="Jacobian")
    if not np.allclose(got, np.swapaxes(got, -1, -2), atol=1e-6):
        raise CheckFailure("Jacobian: not symmetric. Hint: " + JACOBIAN_HINT)
    sums = got.sum(axis=-1)
    if not np.allclose(sums, 0, atol=1e-5):
        raise CheckFailure(detail("Jacobian: a row does not sum to 0. Hint: " + JACOBIAN_HINT,
                                  f"largest row sum {np.abs(sums).max():.3g}"))
    assert_close_or_hint(got, oracle.softmax_jacobian(p), "Jacobian", JACOBIAN_HINT)


@check("softmax_jacobian", points=1)
def test_softmax_jacobian_edges(student, oracle, rng):
    """a one-hot p gives the zero matrix; n = 1 gives [[0]]; leading dimensions with zeros in p"""
    for p in (np.eye(5, dtype=np.float32)[2], np.ones((1,), np.float32), _probabilities(rng, 2, 2, 7, zeros=True)):
        assert_close_or_hint(student.softmax_jacobian(p), oracle.softmax_jacobian(p), "Jacobian", JACOBIAN_HINT)


# --- attention_backward --------------------------------------------------------------------------

BACKWARD_OUT = ("d_queries", "d_keys", "d_values")
BACKWARD_HINT = ("dV = P^T G; dP = G V^T; dS = P * (dP - rowsum(dP * P)); dQ = dS K / sqrt(d_k); "
                 "dK = dS^T Q / sqrt(d_k).")


def _backward_example():
    queries = np.array([[1, 0], [0, 2]], np.float32)                 # (n_q=2, d_k=2)
    keys = np.array([[1, 1], [0, -1], [2, 0]], np.float32)           # (n_k=3, d_k=2)
    values = np.array([[1], [0], [-1]], np.float32)                  # (n_k=3, d_v=1)
    grad_output = np.array([[1], [1]], np.float32)                   # (n_q=2, d_v=1)
    return queries, keys, values, grad_output


def _backward_random(rng, batch, n_q, n_k, d_k, d_v):
    return (_normal(rng, *batch, n_q, d_k), _normal(rng, *batch, n_k, d_k), _normal(rng, *batch, n_k, d_v),
            _normal(rng, *batch, n_q, d_v))


def _gradients(got):
    if not isinstance(got, tuple) or len(got) != 3:
        kind = returned(got)
        raise CheckFailure(f"expected a tuple (d_queries, d_keys, d_values), got something else.\ngot {kind}.")
    return got


@check("attention_backward", public=True, fixed=True)
def test_attention_backward_worked_example(student, oracle, rng):
    """matches the worked example"""
    args = _backward_example()
    assert_close_or_hint(student.attention_backward(*args), oracle.attention_backward(*args),
                         BACKWARD_OUT, BACKWARD_HINT)


@check("attention_backward", points=1, public=True)
def test_attention_backward_shapes(student, oracle, rng):
    """(2, 3, 4) queries, (2, 5, 4) keys, (2, 5, 6) values give gradients of the same shapes"""
    args = _backward_random(rng, (2,), n_q=3, n_k=5, d_k=4, d_v=6)
    got = _gradients(student.attention_backward(*args))
    for g, a, name in zip(got, args, BACKWARD_OUT):
        assert_shape(g, a.shape, what=name)
    assert_close_or_hint(got, oracle.attention_backward(*args), BACKWARD_OUT, BACKWARD_HINT)


@check("attention_backward", points=2)
def test_attention_backward_finite_differences(student, oracle, rng):
    """agrees with finite differences of the forward pass: batch dimensions, d_k != d_v"""
    args = _backward_random(rng, (2, 2), n_q=3, n_k=4, d_k=5, d_v=2)
    assert_close_or_hint(student.attention_backward(*args), oracle.finite_difference_backward(*args),
                         BACKWARD_OUT, BACKWARD_HINT, atol=1e-4, rtol=1e-3)


@check("attention_backward", points=1)
def test_attention_backward_large_d_k(student, oracle, rng):
    """d_k = 64, where the 1/sqrt(d_k) scale changes everything"""
    args = _backward_random(rng, (3,), n_q=4, n_k=6, d_k=64, d_v=3)
    assert_close_or_hint(student.attention_backward(*args), oracle.attention_backward(*args), BACKWARD_OUT,
                         "the scores are Q K^T / sqrt(d_k), so the scale appears in dQ and dK too.")


@check("attention_backward", points=1)
def test_attention_backward_key_gradients_sum_to_zero(student, oracle, rng):
    """the key gradients sum to 0 over the keys (each row of dS sums to 0)"""
    args = _backward_random(rng, (2,), n_q=5, n_k=4, d_k=3, d_v=4)
    _, d_keys, _ = _gradients(student.attention_backward(*args))
    sums = np.asarray(d_keys, np.float64).sum(axis=-2)
    if not np.allclose(sums, 0, atol=1e-4):
        raise CheckFailure(detail("d_keys: does not sum to 0 over the keys. Hint: the softmax's Jacobian "
                                  "rows sum to 0, so each row of dS does too: was it applied?",
                                  f"largest sum {np.abs(sums).max():.3g}"))


@check("attention_backward", points=1)
def test_attention_backward_single_key(student, oracle, rng):
    """one key: the weights are all 1, so d_queries and d_keys are 0 and d_values sums the output gradients"""
    args = _backward_random(rng, (2,), n_q=3, n_k=1, d_k=4, d_v=2)
    assert_close_or_hint(student.attention_backward(*args), oracle.attention_backward(*args), BACKWARD_OUT,
                         BACKWARD_HINT)


# --- sinusoidal_positional_encoding --------------------------------------------------------------

PE_HINT = ("column 2i holds sin(p / 10000**(2i / d_model)) and column 2i+1 the cos of the same angle: "
           "sines and cosines interleaved, not in two halves.")


@check("sinusoidal_positional_encoding", public=True, fixed=True)
def test_positional_encoding_worked_example(student, oracle, rng):
    """matches the worked example (3 positions, d_model = 4)"""
    _shaped_like(student.sinusoidal_positional_encoding(3, 4), (3, 4),
                 oracle.sinusoidal_positional_encoding(3, 4), "encoding", PE_HINT)


@check("sinusoidal_positional_encoding", public=True, fixed=True)
def test_positional_encoding_shape(student, oracle, rng):
    """50 positions with d_model = 16 give a (50, 16) float32 encoding"""
    _shaped_like(student.sinusoidal_positional_encoding(50, 16), (50, 16),
                 oracle.sinusoidal_positional_encoding(50, 16), "encoding", PE_HINT)


@check("sinusoidal_positional_encoding", points=1)
def test_positional_encoding_known_values(student, oracle, rng):
    """position 0 is (0, 1, 0, 1, ...); columns 0 and 1 are sin(p) and cos(p)"""
    got = np.asarray(student.sinusoidal_positional_encoding(20, 8))
    assert_shape(got, (20, 8), what="encoding")
    expected_first = np.tile(np.array([0, 1], np.float32), 4)
    assert_close_or_hint(got[0], expected_first, "encoding of position 0", PE_HINT)
    p = np.arange(20)
    assert_close_or_hint(got[:, 0], np.sin(p).astype(np.float32), "column 0", PE_HINT)
    assert_close_or_hint(got[:, 1], np.cos(p).astype(np.float32), "column 1", PE_HINT)


@check("sinusoidal_positional_encoding", points=1)
def test_positional_encoding_frequencies(student, oracle, rng):
    """the frequencies fall as 10000**(-2i/d_model) across a wide encoding (d_model = 128)"""
    assert_close_or_hint(student.sinusoidal_positional_encoding(64, 128),
                         oracle.sinusoidal_positional_encoding(64, 128), "encoding",
                         "the exponent is 2i / d_model, where 2i is the even column index, not i / d_model.")


@check("sinusoidal_positional_encoding", points=1)
def test_positional_encoding_small(student, oracle, rng):
    """d_model = 2 and a single position"""
    assert_close_or_hint(student.sinusoidal_positional_encoding(7, 2), oracle.sinusoidal_positional_encoding(7, 2),
                         "encoding", PE_HINT)
    assert_close_or_hint(student.sinusoidal_positional_encoding(1, 6), oracle.sinusoidal_positional_encoding(1, 6),
                         "encoding", PE_HINT)


@check("sinusoidal_positional_encoding", points=1)
def test_positional_encoding_odd_d_model(student, oracle, rng):
    """an odd d_model raises ValueError: the sines and cosines come in pairs"""
    for d_model in sorted(rng.choice([1, 3, 5, 7, 9, 11, 15, 33], size=2, replace=False)):
        student.raises(ValueError, "sinusoidal_positional_encoding", int(rng.integers(1, 12)), int(d_model))


# --- attention_cost ------------------------------------------------------------------------------

COST_HINT = ("flops = 2 * num_heads * n_q * n_k * (d_k + d_v): one multiply-add (2 flops) per term of "
             "Q K^T and of P V; score_elements = num_heads * n_q * n_k.")


def _same_cost(student, oracle, args, hint=COST_HINT):
    got = student.attention_cost(*args)
    want = oracle.attention_cost(*args)
    if not isinstance(got, dict):
        raise CheckFailure("attention_cost: expected a dict with the keys 'flops' and 'score_elements'.")
    if set(got) != set(want):
        raise CheckFailure(detail("attention_cost: expected exactly the keys 'flops' and 'score_elements'.",
                                  f"got the keys {sorted(got)}"))
    for key in ("flops", "score_elements"):
        value = got[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise CheckFailure(f"attention_cost['{key}']: expected a Python int (counts are exact; "
                               "use int(...) on a tensor or a float).")
        if value != want[key]:
            raise CheckFailure(detail(f"attention_cost['{key}']: not the expected count. Hint: {hint}",
                                      f"got {value}"))


@check("attention_cost", public=True, fixed=True)
def test_attention_cost_worked_example(student, oracle, rng):
    """matches the worked example: attention_cost(4, 6, 8, 2)"""
    _same_cost(student, oracle, (4, 6, 8, 2))


@check("attention_cost", public=True, fixed=True)
def test_attention_cost_heads(student, oracle, rng):
    """eight heads: attention_cost(10, 10, 16, 16, num_heads=8) counts each head"""
    _same_cost(student, oracle, (10, 10, 16, 16, 8))


@check("attention_cost", points=1)
def test_attention_cost_d_k_differs_from_d_v(student, oracle, rng):
    """n_q != n_k and d_k != d_v: the scores cost d_k per pair, the weighted sum d_v"""
    for args in ((3, 7, 5, 11), (1, 1, 1, 1), (9, 2, 64, 8, 3)):
        _same_cost(student, oracle, args)


@check("attention_cost", points=1)
def test_attention_cost_large(student, oracle, rng):
    """a long sequence, beyond 32-bit integers: n = 65536, d = 128, 16 heads"""
    _same_cost(student, oracle, (65536, 65536, 128, 128, 16),
               hint=COST_HINT + " Count in Python ints: 32-bit integers overflow here.")


# --- attention_entropy ---------------------------------------------------------------------------

ENTROPY_HINT = ("H = -sum_j p_j ln p_j over the last axis, in nats (natural log); a zero weight "
                "contributes 0, not 0 * (-inf) = NaN.")


@check("attention_entropy", public=True, fixed=True)
def test_attention_entropy_worked_example(student, oracle, rng):
    """matches the worked example"""
    weights = np.array([[0.5, 0.5, 0, 0], [1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]], np.float32)
    _shaped_like(student.attention_entropy(weights), (3,), oracle.attention_entropy(weights), "entropy", ENTROPY_HINT)


@check("attention_entropy", points=1, public=True)
def test_attention_entropy_shape(student, oracle, rng):
    """(2, 3, 5) weights give a (2, 3) entropy"""
    weights = _probabilities(rng, 2, 3, 5)
    _shaped_like(student.attention_entropy(weights), (2, 3), oracle.attention_entropy(weights), "entropy",
                 ENTROPY_HINT)


@check("attention_entropy", points=1)
def test_attention_entropy_one_hot_and_uniform(student, oracle, rng):
    """one-hot rows have entropy 0; uniform rows over n keys have entropy log n"""
    for n in (1, 3, 16):
        one_hot = np.eye(n, dtype=np.float32)
        assert_close_or_hint(student.attention_entropy(one_hot), np.zeros(n, np.float32),
                             f"entropy of one-hot rows over {n} keys", ENTROPY_HINT)
        uniform = np.full((2, n), 1.0 / n, np.float32)
        assert_close_or_hint(student.attention_entropy(uniform), np.full(2, math.log(n), np.float32),
                             f"entropy of uniform rows over {n} keys", ENTROPY_HINT)


@check("attention_entropy", points=1)
def test_attention_entropy_masked_zeros(student, oracle, rng):
    """weights with masked (exactly zero) keys, and leading batch dimensions"""
    weights = _probabilities(rng, 2, 3, 4, 6, zeros=True)
    assert_close_or_hint(student.attention_entropy(weights), oracle.attention_entropy(weights), "entropy",
                         ENTROPY_HINT)


@check("attention_entropy", points=1)
def test_attention_entropy_fully_masked_row(student, oracle, rng):
    """a fully masked row (all zeros, as masked_softmax gives it) has entropy 0"""
    weights = _probabilities(rng, 4, 5)
    weights[2] = 0
    assert_close_or_hint(student.attention_entropy(weights), oracle.attention_entropy(weights), "entropy",
                         ENTROPY_HINT)
