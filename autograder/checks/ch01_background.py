"""Grading checks for chapter 01 (background): softmax, Nadaraya-Watson regression, attention pooling.

Public checks (what `check("name")` runs in the notebook) use the worked examples of the exercise
notebook and basic shapes. Hidden checks compare with the oracle on random inputs and probe the
edges the contract fixes: inputs of +-1e4 (softmax without the max subtracted overflows or divides
0 by 0), shifted inputs, bandwidths other than 1 (a missing square or factor 2 shows), a query far
from every key, a single key, n_q != n_k and d != d_v (a transpose shows).
"""
import numpy as np

from autograder.checks.api import CheckFailure, assert_close, assert_shape, check, detail

PAIR = ("predictions", "weights")
POOLED = ("context", "weights")


def _normal(rng, *shape, scale=1.0) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def _sums_to_one(weights, what="weights") -> None:
    sums = np.asarray(weights, np.float64).sum(axis=-1)
    if not np.allclose(sums, 1.0, atol=1e-5):
        raise CheckFailure(detail(f"{what}: the weights do not sum to 1. Is the sum taken over the keys "
                                  "(the last axis), and is every exp divided by the same total?",
                                  f"the sums range from {sums.min():.6g} to {sums.max():.6g}."))


# --- softmax -------------------------------------------------------------------------------------

@check("softmax", public=True, fixed=True)
def test_softmax_worked_example(student, oracle, rng):
    """matches the worked example"""
    x = np.array([1.0, 2.0, 3.0], np.float32)
    assert_close(student.softmax(x), oracle.softmax(x), what="softmax")


@check("softmax", points=1, public=True)
def test_softmax_shape_and_sum(student, oracle, rng):
    """(7,) in, (7,) out, summing to one"""
    x = _normal(rng, 7, scale=2.0)
    got = student.softmax(x)
    assert_shape(got, (7,), what="softmax")
    _sums_to_one(got, "softmax")
    assert_close(got, oracle.softmax(x), what="softmax")


@check("softmax", points=1)
def test_softmax_large_inputs(student, oracle, rng):
    """stays finite and exact at inputs of +1e4 and -1e4"""
    for x in (np.array([1e4, 1e4 - 1, 1e4 - 3], np.float32),
              np.array([-1e4, -1e4 + 1, -1e4 + 2, -1e4 + 0.5], np.float32),
              np.array([1e4, -1e4, 0.0, 5e3], np.float32)):
        # float32 spacing at 1e4 is ~1e-3, so a correct float32 route through a number of that size
        # (x - logsumexp(x)) is off by up to ~5e-4; what this check catches is inf, NaN and 0/0.
        assert_close(student.softmax(x), oracle.softmax(x), atol=2e-3, rtol=0.0, what="softmax")


@check("softmax", points=1)
def test_softmax_shift_invariance(student, oracle, rng):
    """adding a constant (here -300 and +300) to every input changes nothing"""
    x = _normal(rng, 6)
    want = oracle.softmax(x)
    for shift in (-300.0, 300.0):
        assert_close(student.softmax(x + np.float32(shift)), want, what="softmax of shifted inputs")


@check("softmax", points=1)
def test_softmax_single_and_long(student, oracle, rng):
    """a single input gives [1]; 500 spread-out inputs match the reference"""
    one = np.array([-3.5], np.float32)
    assert_close(student.softmax(one), oracle.softmax(one), what="softmax of one input")
    x = _normal(rng, 500, scale=5.0)
    assert_close(student.softmax(x), oracle.softmax(x), what="softmax")


# --- nadaraya_watson -----------------------------------------------------------------------------

EXAMPLE_QUERIES = np.array([0.0, 1.0], np.float32)
EXAMPLE_KEYS = np.array([-1.0, 0.0, 2.0], np.float32)
EXAMPLE_VALUES = np.array([1.0, 3.0, 5.0], np.float32)


@check("nadaraya_watson", public=True, fixed=True)
def test_nadaraya_watson_worked_example(student, oracle, rng):
    """matches the worked example (bandwidth 1)"""
    args = (EXAMPLE_QUERIES, EXAMPLE_KEYS, EXAMPLE_VALUES)
    assert_close(student.nadaraya_watson(*args, bandwidth=1.0), oracle.nadaraya_watson(*args, 1.0), what=PAIR)


@check("nadaraya_watson", points=1, public=True)
def test_nadaraya_watson_shapes(student, oracle, rng):
    """4 queries and 6 keys give (4,) predictions and (4, 6) weights whose rows sum to one"""
    queries, keys, values = _normal(rng, 4), _normal(rng, 6), _normal(rng, 6)
    predictions, weights = student.nadaraya_watson(queries, keys, values, bandwidth=1.0)
    assert_shape(predictions, (4,), what="predictions")
    assert_shape(weights, (4, 6), what="weights")
    _sums_to_one(weights)


@check("nadaraya_watson", points=1)
def test_nadaraya_watson_default_bandwidth(student, oracle, rng):
    """the bandwidth defaults to 1"""
    queries, keys, values = _normal(rng, 5), _normal(rng, 3), _normal(rng, 3)
    assert_close(student.nadaraya_watson(queries, keys, values), oracle.nadaraya_watson(queries, keys, values),
                 what=PAIR)


@check("nadaraya_watson", points=1)
def test_nadaraya_watson_bandwidths(student, oracle, rng):
    """bandwidths 0.3 and 2.5: the score divides the squared distance by 2 * bandwidth**2"""
    queries, keys, values = _normal(rng, 6, scale=2.0), _normal(rng, 8, scale=2.0), _normal(rng, 8)
    for bandwidth in (0.3, 2.5):
        assert_close(student.nadaraya_watson(queries, keys, values, bandwidth=bandwidth),
                     oracle.nadaraya_watson(queries, keys, values, bandwidth), what=PAIR)


@check("nadaraya_watson", points=1)
def test_nadaraya_watson_far_query_narrow_kernel(student, oracle, rng):
    """a query far from every key with a narrow kernel (scores near -1e5) stays finite: the nearest key wins"""
    queries = np.array([50.0, -40.0, 0.5], np.float32)
    keys = np.array([0.0, 0.25, 0.5, 1.0], np.float32)
    values = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    assert_close(student.nadaraya_watson(queries, keys, values, bandwidth=0.1),
                 oracle.nadaraya_watson(queries, keys, values, 0.1), what=PAIR)


@check("nadaraya_watson", points=1)
def test_nadaraya_watson_predictions_are_averages(student, oracle, rng):
    """closer keys weigh more, and each prediction lies between the smallest and largest value"""
    queries, keys, values = _normal(rng, 9, scale=3.0), np.linspace(-4, 4, 5).astype(np.float32), _normal(rng, 5)
    predictions, weights = student.nadaraya_watson(queries, keys, values, bandwidth=0.7)
    assert_shape(weights, (9, 5), what="weights")
    nearest = np.abs(queries[:, None] - keys[None, :]).argmin(axis=1)
    if (np.asarray(weights).argmax(axis=1) != nearest).any():
        raise CheckFailure("weights: the largest weight of a row is not on the key nearest to its query. "
                           "The score must grow as |q - k| shrinks: mind the sign.")
    if (predictions < values.min() - 1e-5).any() or (predictions > values.max() + 1e-5).any():
        raise CheckFailure("predictions: a prediction lies outside the range of the values; a weighted "
                           "average with weights summing to one cannot.")
    assert_close((predictions, weights), oracle.nadaraya_watson(queries, keys, values, 0.7), what=PAIR)


# --- attention_pool ------------------------------------------------------------------------------

@check("attention_pool", public=True, fixed=True)
def test_attention_pool_worked_example(student, oracle, rng):
    """matches the worked example"""
    query = np.array([1.0, 0.0], np.float32)
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]], np.float32)
    values = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], np.float32)
    assert_close(student.attention_pool(query, keys, values), oracle.attention_pool(query, keys, values),
                 what=POOLED)


@check("attention_pool", points=1, public=True)
def test_attention_pool_shapes(student, oracle, rng):
    """d = 4, n = 6, d_v = 3: a (3,) context and (6,) weights summing to one"""
    query, keys, values = _normal(rng, 4), _normal(rng, 6, 4), _normal(rng, 6, 3)
    context, weights = student.attention_pool(query, keys, values)
    assert_shape(context, (3,), what="context")
    assert_shape(weights, (6,), what="weights")
    _sums_to_one(weights)


@check("attention_pool", points=1)
def test_attention_pool_random(student, oracle, rng):
    """unscaled dot-product scores with d = 9, n = 5, d_v = 2"""
    query, keys, values = _normal(rng, 9), _normal(rng, 5, 9), _normal(rng, 5, 2)
    assert_close(student.attention_pool(query, keys, values), oracle.attention_pool(query, keys, values),
                 what=POOLED)


@check("attention_pool", points=1)
def test_attention_pool_single_key(student, oracle, rng):
    """one key gets weight 1, and the context is its value"""
    query, keys, values = _normal(rng, 3), _normal(rng, 1, 3), _normal(rng, 1, 4)
    assert_close(student.attention_pool(query, keys, values), oracle.attention_pool(query, keys, values),
                 what=POOLED)


@check("attention_pool", points=1)
def test_attention_pool_large_scores(student, oracle, rng):
    """stays finite and exact at scores of about +-1e4"""
    query = np.array([100.0, -100.0], np.float32)
    keys = np.array([[100.0, 0.0], [99.0, 0.0], [0.0, 100.0], [-50.0, 50.0]], np.float32)
    values = _normal(rng, 4, 5)
    assert_close(student.attention_pool(query, keys, values), oracle.attention_pool(query, keys, values),
                 what=POOLED)
    assert_close(student.attention_pool(-query, keys, values), oracle.attention_pool(-query, keys, values),
                 what=POOLED)
