"""Chapter 01's three exercises: the reference solutions, the oracle, and checks that tell right from
wrong.

- The oracle is compared with cases worked out by hand, the masters with the oracle (through every
  check, public and hidden, in both frameworks, with several seeds), PyTorch with TensorFlow, and the
  reference softmax with the frameworks' built-ins.
- The untouched student views score 0 ("not implemented yet").
- Each plausible mistake (a *mutant*) fails at least one check of its exercise; correct alternatives
  (loops, the log-sum-exp form, einsum, the framework's softmax used inside) pass every check.
"""
import math
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():   # its marks (exercise, points, public) are registered for the grader only
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from autograder.checks import ch01_background  # noqa: F401  (registered before check_functions reads it)
from autograder.checks.api import FIXED_POINTS
from autograder.checks.runner import LocalBackend, run_checks
from autograder.notebooks import exercises, load_namespace, master_path, read, student_path
from autograder.oracle import ch01_background as oracle
import check_functions as shared

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "01_background"
FRAMEWORKS = ("torch", "tf")
EXERCISES = ("softmax", "nadaraya_watson", "attention_pool")


checks_of, master, namespace_with, failed_checks = shared.bound(CHAPTER)


def as_numpy(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


# --- the oracle, by hand ---------------------------------------------------------------------------

def test_oracle_softmax_by_hand():
    # softmax([0, log 3]) = [1, 3] / 4; at +-1e4 the same shifted inputs give the same weights.
    np.testing.assert_allclose(oracle.softmax([0.0, math.log(3)]), [0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(oracle.softmax([1e4, 1e4 + math.log(3)]), [0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(oracle.softmax([-1e4, -1e4 + math.log(3)]), [0.25, 0.75], rtol=1e-6)


def test_oracle_nadaraya_watson_by_hand():
    # Keys at distance 0 and 2 from the query, h = 2: scores 0 and -4/8 = -1/2, so the weights are
    # 1 / (1 + e^{-1/2}) and e^{-1/2} / (1 + e^{-1/2}); values 10 and 20.
    predictions, weights = oracle.nadaraya_watson([1.0], [1.0, 3.0], [10.0, 20.0], bandwidth=2.0)
    a = 1 / (1 + math.exp(-0.5))
    np.testing.assert_allclose(weights, [[a, 1 - a]], rtol=1e-6)
    np.testing.assert_allclose(predictions, [10 * a + 20 * (1 - a)], rtol=1e-6)
    assert weights.shape == (1, 2) and weights.dtype == np.float32


def test_oracle_attention_pool_by_hand():
    # Scores q.k = 0 and log 3: weights 1/4, 3/4; context = (1/4)(4, 0) + (3/4)(0, 8) = (1, 6).
    context, weights = oracle.attention_pool([1.0, 0.0], [[0.0, 5.0], [math.log(3), -1.0]],
                                             [[4.0, 0.0], [0.0, 8.0]])
    np.testing.assert_allclose(weights, [0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(context, [1.0, 6.0], rtol=1e-6)


# --- the masters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_reference_passes_every_check_through_the_runner(framework, seed):
    results, _ = run_checks(CHAPTER, LocalBackend(dict(master(framework)), framework), framework, seed=seed)
    failed = [f"{r.name}: {r.output}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert {r.exercise for r in results} == set(exercises(read(master_path(CHAPTER, framework)))) == set(EXERCISES)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_untouched_student_view_is_not_implemented(framework):
    namespace = load_namespace(student_path(CHAPTER, framework))
    results, _ = run_checks(CHAPTER, LocalBackend(namespace, framework), framework, seed=0)
    assert results
    for r in results:
        assert not r.passed and r.output.endswith("not implemented yet"), (r.name, r.output)


def test_each_exercise_has_public_and_hidden_checks_worth_one_point():
    for exercise in EXERCISES:
        metas = [shared.meta(func) for func in checks_of(exercise)]
        assert 5 <= len(metas) <= 7, exercise
        assert {m.public for m in metas} == {True, False}, exercise
        # a worked example (inputs fixed in the check's code) carries FIXED_POINTS, every other check 1
        assert all(m.points == (FIXED_POINTS if m.fixed else 1) for m in metas), exercise
        assert [m.fixed for m in metas].count(True) <= 1, exercise
        for func in checks_of(exercise):
            assert (func.__doc__ or "").strip(), func.__name__


def test_references_agree_across_frameworks_and_with_the_builtins():
    import tensorflow as tf
    import torch

    rng = np.random.default_rng(3)
    pt, tf_ = master("torch"), master("tf")
    x = (4 * rng.standard_normal(11)).astype(np.float32)
    for got in (as_numpy(pt["softmax"](torch.tensor(x))), as_numpy(tf_["softmax"](tf.constant(x)))):
        np.testing.assert_allclose(got, torch.softmax(torch.tensor(x), -1).numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got, tf.nn.softmax(tf.constant(x)).numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got, oracle.softmax(x), rtol=1e-5, atol=1e-7)
    q, k, v = (rng.standard_normal(n).astype(np.float32) for n in (5, 7, 7))
    for h in (0.4, 1.7):
        want = oracle.nadaraya_watson(q, k, v, h)
        for got in (pt["nadaraya_watson"](torch.tensor(q), torch.tensor(k), torch.tensor(v), h),
                    tf_["nadaraya_watson"](tf.constant(q), tf.constant(k), tf.constant(v), h)):
            for g, w in zip(got, want):
                np.testing.assert_allclose(as_numpy(g), w, rtol=1e-5, atol=1e-6)
    query, keys, values = (rng.standard_normal(s).astype(np.float32) for s in ((4,), (6, 4), (6, 3)))
    # The built-in: scaled dot-product attention with scale 1 is the same pooling, one query.
    context_sdpa = torch.nn.functional.scaled_dot_product_attention(
        torch.tensor(query)[None], torch.tensor(keys), torch.tensor(values), scale=1.0)[0].numpy()
    for got in (pt["attention_pool"](torch.tensor(query), torch.tensor(keys), torch.tensor(values)),
                tf_["attention_pool"](tf.constant(query), tf.constant(keys), tf.constant(values))):
        np.testing.assert_allclose(as_numpy(got[0]), context_sdpa, rtol=1e-5, atol=1e-6)
        for g, w in zip(got, oracle.attention_pool(query, keys, values)):
            np.testing.assert_allclose(as_numpy(g), w, rtol=1e-5, atol=1e-6)


# --- mutants: (exercise, framework, the mistake, the mistaken definition) ----------------------------
MUTANTS = [
    ("softmax", "torch", "no max subtraction: overflow at 1e4, 0/0 at -1e4", """
def softmax(x):
    return torch.exp(x) / torch.exp(x).sum()
"""),
    ("softmax", "tf", "no max subtraction: overflow at 1e4, 0/0 at -1e4", """
def softmax(x):
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.exp(x) / tf.reduce_sum(tf.exp(x))
"""),
    ("softmax", "torch", "returns float64", """
def softmax(x):
    x = x.double()
    e = torch.exp(x - x.max())
    return e / e.sum()
"""),
    ("nadaraya_watson", "torch", "softmax over the queries (the wrong axis)", """
def nadaraya_watson(queries, keys, values, bandwidth=1.0):
    scores = -(queries[:, None] - keys[None, :]) ** 2 / (2 * bandwidth ** 2)
    weights = torch.softmax(scores, dim=0)
    return weights @ values, weights
"""),
    ("nadaraya_watson", "torch", "transposed weights (n_k, n_q)", """
def nadaraya_watson(queries, keys, values, bandwidth=1.0):
    scores = -(keys[:, None] - queries[None, :]) ** 2 / (2 * bandwidth ** 2)
    weights = torch.softmax(scores, dim=0)
    return values @ weights, weights
"""),
    ("nadaraya_watson", "torch", "Gaussian weights without max subtraction: 0/0 far from the keys", """
def nadaraya_watson(queries, keys, values, bandwidth=1.0):
    k = torch.exp(-(queries[:, None] - keys[None, :]) ** 2 / (2 * bandwidth ** 2))
    weights = k / k.sum(-1, keepdim=True)
    return weights @ values, weights
"""),
    ("nadaraya_watson", "tf", "softmax over the queries (the wrong axis)", """
def nadaraya_watson(queries, keys, values, bandwidth=1.0):
    queries, keys, values = (tf.convert_to_tensor(a, tf.float32) for a in (queries, keys, values))
    weights = tf.nn.softmax(-(queries[:, None] - keys[None, :]) ** 2 / (2 * bandwidth ** 2), axis=0)
    return tf.linalg.matvec(weights, values), weights
"""),
    ("attention_pool", "torch", "scaled by sqrt(d): not this exercise's score", """
def attention_pool(query, keys, values):
    weights = softmax(keys @ query / keys.shape[-1] ** 0.5)
    return weights @ values, weights
"""),
    ("attention_pool", "torch", "the wrong sign of the scores", """
def attention_pool(query, keys, values):
    weights = softmax(-(keys @ query))
    return weights @ values, weights
"""),
    ("attention_pool", "torch", "averages the keys instead of the values", """
def attention_pool(query, keys, values):
    weights = softmax(keys @ query)
    return weights @ keys, weights
"""),
    ("attention_pool", "torch", "softmax over the feature axis of the values", """
def attention_pool(query, keys, values):
    scores = keys @ query
    return (torch.softmax(scores[:, None] * values, dim=-1)).sum(0), softmax(scores)
"""),
    ("attention_pool", "torch", "plain exp without max subtraction: overflow at large scores", """
def attention_pool(query, keys, values):
    e = torch.exp(keys @ query)
    weights = e / e.sum()
    return weights @ values, weights
"""),
    ("attention_pool", "torch", "returns the scores, not the weights", """
def attention_pool(query, keys, values):
    scores = keys @ query
    return softmax(scores) @ values, scores
"""),
    ("attention_pool", "tf", "values not transposed: matvec over the wrong axis", """
def attention_pool(query, keys, values):
    query, keys, values = (tf.convert_to_tensor(a, tf.float32) for a in (query, keys, values))
    weights = softmax(tf.linalg.matvec(keys, query))
    return tf.linalg.matvec(values, weights), weights
"""),
]


# Mistakes of one line: softmax's exponent and denominator, Nadaraya-Watson's score.
SOFTMAX_MISTAKES = [
    ("subtracts the min instead of the max", "x - x.min()", "e.sum()"),
    ("subtracts the mean: still overflows when the inputs are spread", "x - x.mean()", "e.sum()"),
    ("divides by the max instead of the sum", "x - x.max()", "e.max()"),
    ("exp(-x): the wrong sign", "-(x - x.min())", "e.sum()"),
]
DIFF = "(queries[:, None] - keys[None, :])"
SCORE_MISTAKES = [
    ("divides by 2 * bandwidth, not 2 * bandwidth**2", f"-{DIFF} ** 2 / (2 * bandwidth)"),
    ("the distance not squared", f"-{DIFF}.abs() / (2 * bandwidth ** 2)"),
    ("no factor 2", f"-{DIFF} ** 2 / bandwidth ** 2"),
    ("the wrong sign: far keys weigh most", f"{DIFF} ** 2 / (2 * bandwidth ** 2)"),
    ("the bandwidth ignored", f"-{DIFF} ** 2 / 2"),
]
MUTANTS += [("softmax", "torch", mistake, f"def softmax(x):\n    e = torch.exp({exponent})\n    return e / {total}\n")
            for mistake, exponent, total in SOFTMAX_MISTAKES]
MUTANTS += [("nadaraya_watson", "torch", mistake,
             "def nadaraya_watson(queries, keys, values, bandwidth=1.0):\n"
             f"    weights = torch.softmax({score}, dim=-1)\n    return weights @ values, weights\n")
            for mistake, score in SCORE_MISTAKES]


@pytest.mark.parametrize("exercise, framework, mistake, source", MUTANTS,
                         ids=[f"{e}-{fw}: {m}" for e, fw, m, _ in MUTANTS])
def test_mutant_fails_a_check(exercise, framework, mistake, source):
    with np.errstate(all="ignore"):
        assert failed_checks(namespace_with(framework, source), framework, exercise), mistake


ALTERNATIVES = [
    ("softmax", "torch", """
def softmax(x):
    return torch.exp(x - torch.logsumexp(x, dim=0))
"""),
    ("softmax", "torch", """
def softmax(x):
    m = max(float(v) for v in x)
    exps = [math.exp(float(v) - m) for v in x]
    total = sum(exps)
    return torch.tensor([e / total for e in exps], dtype=torch.float32)
"""),
    ("softmax", "tf", """
def softmax(x):
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.exp(x - tf.reduce_logsumexp(x))
"""),
    ("nadaraya_watson", "torch", """
def nadaraya_watson(queries, keys, values, bandwidth=1.0):
    rows = []
    for q in queries:
        rows.append(softmax(-(q - keys) ** 2 / (2 * bandwidth * bandwidth)))
    weights = torch.stack(rows)
    return torch.einsum("qk,k->q", weights, values), weights
"""),
    ("nadaraya_watson", "tf", """
def nadaraya_watson(queries, keys, values, bandwidth=1.0):
    queries, keys, values = (tf.convert_to_tensor(a, tf.float32) for a in (queries, keys, values))
    diff = tf.expand_dims(queries, 1) - tf.expand_dims(keys, 0)
    weights = tf.nn.softmax(-tf.square(diff / bandwidth) / 2, axis=-1)
    return tf.einsum("qk,k->q", weights, values), weights
"""),
    ("attention_pool", "torch", """
def attention_pool(query, keys, values):
    weights = softmax(torch.einsum("nd,d->n", keys, query))
    return torch.einsum("n,nv->v", weights, values), weights
"""),
    ("attention_pool", "torch", """
def attention_pool(query, keys, values):
    scores = torch.stack([torch.dot(k, query) for k in keys])
    weights = softmax(scores)
    context = sum(w * v for w, v in zip(weights, values))
    return context, weights
"""),
    ("attention_pool", "tf", """
def attention_pool(query, keys, values):
    query, keys, values = (tf.convert_to_tensor(a, tf.float32) for a in (query, keys, values))
    weights = tf.nn.softmax(tf.reduce_sum(keys * query, axis=-1))
    return tf.reduce_sum(weights[:, None] * values, axis=0), weights
"""),
]


@pytest.mark.parametrize("exercise, framework, source", ALTERNATIVES,
                         ids=[f"{e}-{fw}-{i}" for i, (e, fw, _) in enumerate(ALTERNATIVES)])
def test_correct_alternative_passes(exercise, framework, source):
    failed = shared.passes_every_seed(CHAPTER, framework, exercise, "import math\n" + source)
    assert not failed, "\n".join(failed)


def test_mutants_lose_their_points_through_the_grader_runner():
    """One run of the real check runner, one mutant per exercise: each loses points, nothing else does."""
    mutated, scores = shared.graded_with_mutants(CHAPTER, MUTANTS)
    assert mutated == set(EXERCISES)
    for exercise, (got, most) in scores.items():
        assert got < most, (exercise, got, most)
