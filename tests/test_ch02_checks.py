"""The chapter-02 grading checks can tell right from wrong.

- The reference solutions pass every check, public and hidden, in both frameworks, whatever the seed.
- An untouched student notebook gets "not implemented yet" from every check.
- Each plausible mistake (a *mutant*: wrong axis, missing scale, inverted mask, NaN on fully masked
  rows, overflow at 1e4, swapped transposes, ...) fails at least one check of its exercise.
- Correct alternatives (einsum, explicit loops, the framework's softmax used carefully) pass them all.

The reference and the untouched notebook go through `checks.runner.run_checks`, as `check()` does
in a kernel. The many mutants and alternatives call the check functions directly with the same
fixtures (`student` over a `LocalBackend`, `oracle`, a seeded `rng`): a pytest run per mutant would
cost most of a second each.
"""
import warnings

import numpy as np
import pytest

with warnings.catch_warnings():   # its marks (exercise, points, public) are registered for the grader only
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from autograder.checks import ch02_principles as checks
from autograder.checks.api import CheckFailure
from autograder.checks.runner import LocalBackend, StudentProxy, run_checks
from autograder.oracle import ch02_principles as oracle
from autograder.notebooks import exercises, load_namespace, master_path, read, student_path

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "02_principles"
FRAMEWORKS = ("torch", "tf")


@pytest.fixture(scope="module")
def masters():
    return {fw: load_namespace(master_path(CHAPTER, fw)) for fw in FRAMEWORKS}


def _run(namespace, framework, exercise=None, seed=0):
    results, _ = run_checks(CHAPTER, LocalBackend(namespace, framework), framework,
                            exercise=exercise, seed=seed)
    return results


def _check_functions(exercise):
    found = []
    for name in dir(checks):
        func = getattr(checks, name)
        marks = {m.name: m for m in getattr(func, "pytestmark", [])}
        if name.startswith("test_") and marks.get("exercise") and marks["exercise"].args[0] == exercise:
            found.append(func)
    assert found, f"no checks for {exercise}"
    return found


def _run_direct(namespace, framework, exercise, seed=0):
    """[(check name, failure message or None)] for one exercise's checks, public and hidden."""
    student = StudentProxy(LocalBackend(namespace, framework), framework, lambda names: None)
    outcomes = []
    for index, func in enumerate(_check_functions(exercise)):
        try:
            func(student=student, oracle=oracle, rng=np.random.default_rng([seed, index]))
            outcomes.append((func.__name__, None))
        except CheckFailure as exc:
            outcomes.append((func.__name__, str(exc)))
    return outcomes


def _with(framework: str, source: str) -> dict:
    """The master's namespace with one function redefined by `source`."""
    namespace = load_namespace(master_path(CHAPTER, framework))
    exec(source, namespace)
    return namespace


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_reference_passes_every_check(masters, framework, seed):
    results = _run(masters[framework], framework, seed=seed)
    failed = [f"{r.name}: {r.output}" for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    by_exercise = {r.exercise for r in results}
    assert by_exercise == set(exercises(read(master_path(CHAPTER, framework))))


def test_every_exercise_has_public_and_hidden_checks(masters):
    results = _run(masters["torch"], "torch")
    for exercise in exercises(read(master_path(CHAPTER, "torch"))):
        mine = [r for r in results if r.exercise == exercise]
        assert 3 <= len(mine) <= 7, exercise
        assert any(r.visibility == "visible" for r in mine), exercise
        assert any(r.visibility == "hidden" for r in mine), exercise
        assert len({r.name for r in mine}) == len(mine), f"{exercise}: two checks share a name"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_untouched_student_view_is_not_implemented(framework):
    namespace = load_namespace(student_path(CHAPTER, framework))
    results = _run(namespace, framework)
    assert results
    for r in results:
        assert not r.passed and r.output.endswith("not implemented yet"), (r.name, r.output)


# (exercise, what the mistake is, the mistaken definition) -- PyTorch.
MUTANTS = [
    ("dot_product_scores", "keys times queries: (n_k, n_q) scores", """
def dot_product_scores(queries, keys):
    return keys @ queries.transpose(-2, -1)
"""),
    ("dot_product_scores", "transposes every axis, not the last two", """
def dot_product_scores(queries, keys):
    return queries @ keys.permute(*reversed(range(keys.dim())))
"""),
    ("dot_product_scores", "only the first batch element", """
def dot_product_scores(queries, keys):
    return queries @ keys[0].transpose(-2, -1) if keys.dim() > 2 else queries @ keys.T
"""),
    ("scaled_dot_product_scores", "missing scale", """
def scaled_dot_product_scores(queries, keys):
    return dot_product_scores(queries, keys)
"""),
    ("scaled_dot_product_scores", "divides by d_k instead of sqrt(d_k)", """
def scaled_dot_product_scores(queries, keys):
    return dot_product_scores(queries, keys) / keys.shape[-1]
"""),
    ("scaled_dot_product_scores", "divides by sqrt(n_k)", """
def scaled_dot_product_scores(queries, keys):
    return dot_product_scores(queries, keys) / keys.shape[-2] ** 0.5
"""),
    ("additive_scores", "W_q and W_k swapped", """
def additive_scores(queries, keys, W_q, W_k, w_v):
    hidden = torch.tanh((queries @ W_k).unsqueeze(-2) + (keys @ W_q).unsqueeze(-3))
    return hidden @ w_v
"""),
    ("additive_scores", "no tanh", """
def additive_scores(queries, keys, W_q, W_k, w_v):
    return ((queries @ W_q).unsqueeze(-2) + (keys @ W_k).unsqueeze(-3)) @ w_v
"""),
    ("additive_scores", "sums the hidden units instead of weighting them by w_v", """
def additive_scores(queries, keys, W_q, W_k, w_v):
    return torch.tanh((queries @ W_q).unsqueeze(-2) + (keys @ W_k).unsqueeze(-3)).sum(-1)
"""),
    ("additive_scores", "pairs broadcast the wrong way round: (n_k, n_q)", """
def additive_scores(queries, keys, W_q, W_k, w_v):
    return torch.tanh((queries @ W_q).unsqueeze(-3) + (keys @ W_k).unsqueeze(-2)) @ w_v
"""),
    ("general_scores", "W transposed", """
def general_scores(queries, keys, W):
    return queries @ W.T @ keys.transpose(-2, -1)
"""),
    ("general_scores", "W applied to the keys as k W", """
def general_scores(queries, keys, W):
    return queries @ (keys @ W).transpose(-2, -1)
"""),
    ("general_scores", "ignores W", """
def general_scores(queries, keys, W):
    return dot_product_scores(queries, keys)
"""),
    ("masked_softmax", "softmax over the queries axis", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, dim=-2), nan=0.0)
"""),
    ("masked_softmax", "inverted mask", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
"""),
    ("masked_softmax", "NaN on fully masked rows", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)
"""),
    ("masked_softmax", "fills with -1e9: uniform weights on fully masked rows", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)
    return torch.softmax(scores, dim=-1)
"""),
    ("masked_softmax", "no max subtraction: exp overflows at 1e4", """
def masked_softmax(scores, mask=None):
    exps = torch.exp(scores)
    if mask is not None:
        exps = exps * mask
    totals = exps.sum(dim=-1, keepdim=True)
    return torch.where(totals > 0, exps / totals, torch.zeros_like(exps))
"""),
    ("masked_softmax", "masks by zeroing the scores", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores * mask
    return torch.softmax(scores, dim=-1)
"""),
    ("masked_softmax", "additive -1e4 penalty instead of a true mask", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores + (~mask) * -1e4
    return torch.softmax(scores, dim=-1)
"""),
    ("masked_softmax", "cannot broadcast the mask", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(~mask.reshape(scores.shape), float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
"""),
    ("padding_mask", "<= instead of <", """
def padding_mask(valid_lens, n_k):
    return torch.arange(n_k)[None, None, :] <= valid_lens[:, None, None]
"""),
    ("padding_mask", "inverted: True on padding", """
def padding_mask(valid_lens, n_k):
    return torch.arange(n_k)[None, None, :] >= valid_lens[:, None, None]
"""),
    ("padding_mask", "shape (batch, n_k) without the query axis", """
def padding_mask(valid_lens, n_k):
    return torch.arange(n_k)[None, :] < valid_lens[:, None]
"""),
    ("padding_mask", "0/1 integers instead of booleans", """
def padding_mask(valid_lens, n_k):
    return (torch.arange(n_k)[None, None, :] < valid_lens[:, None, None]).long()
"""),
    ("causal_mask", "aligned to the top left", """
def causal_mask(n_q, n_k=None):
    n_k = n_q if n_k is None else n_k
    return torch.ones(n_q, n_k, dtype=torch.bool).tril()
"""),
    ("causal_mask", "diagonal excluded", """
def causal_mask(n_q, n_k=None):
    n_k = n_q if n_k is None else n_k
    return torch.arange(n_k)[None, :] < torch.arange(n_q)[:, None] + (n_k - n_q)
"""),
    ("causal_mask", "the future instead of the past", """
def causal_mask(n_q, n_k=None):
    n_k = n_q if n_k is None else n_k
    return torch.arange(n_k)[None, :] >= torch.arange(n_q)[:, None] + (n_k - n_q)
"""),
    ("tree_mask", "only the parent, not every ancestor", """
def tree_mask(parents):
    n = len(parents)
    allowed = torch.eye(n, dtype=torch.bool)
    for i, p in enumerate(parents):
        if int(p) >= 0:
            allowed[i, int(p)] = True
    return allowed
"""),
    ("tree_mask", "descendants instead of ancestors (transposed)", """
def tree_mask(parents):
    parents = [int(p) for p in parents]
    n = len(parents)
    allowed = [[False] * n for _ in range(n)]
    for i in range(n):
        node = i
        while node != -1:
            allowed[node][i] = True
            node = parents[node]
    return torch.tensor(allowed)
"""),
    ("tree_mask", "assumes a parent's index is smaller than its child's", """
def tree_mask(parents):
    n = len(parents)
    allowed = torch.eye(n, dtype=torch.bool)
    for i in range(n):
        p = int(parents[i])
        if p >= 0:
            allowed[i] |= allowed[p]
    return allowed
"""),
    ("tree_mask", "forgets the node itself", """
def tree_mask(parents):
    parents = [int(p) for p in parents]
    n = len(parents)
    allowed = [[False] * n for _ in range(n)]
    for i in range(n):
        node = parents[i]
        while node != -1:
            allowed[i][node] = True
            node = parents[node]
    return torch.tensor(allowed, dtype=torch.bool)
"""),
    ("scaled_dot_product_attention", "missing scale", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = masked_softmax(dot_product_scores(queries, keys), mask)
    return weights @ values, weights
"""),
    ("scaled_dot_product_attention", "returns the output only", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    return masked_softmax(scaled_dot_product_scores(queries, keys), mask) @ values
"""),
    ("scaled_dot_product_attention", "weights and output swapped", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)
    return weights, weights @ values
"""),
    ("scaled_dot_product_attention", "ignores the mask", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = masked_softmax(scaled_dot_product_scores(queries, keys))
    return weights @ values, weights
"""),
    ("scaled_dot_product_attention", "plain softmax: NaN on fully masked rows", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    scores = scaled_dot_product_scores(queries, keys)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ values, weights
"""),
    ("scaled_dot_product_attention", "scores scaled by the values' size", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = masked_softmax(dot_product_scores(queries, keys) / values.shape[-1] ** 0.5, mask)
    return weights @ values, weights
"""),
    ("scaled_dot_product_attention", "float64 output", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)
    return weights.double() @ values.double(), weights
"""),
]


# Submissions that do not do the exercise at all, dressed to pass property checks (issue 14): they
# must earn nothing, not merely lose a check.
NON_ANSWERS = [
    ("masked_softmax", "one-hot: all weight on the largest score (rows sum to 1, masked keys get 0)", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    one_hot = torch.zeros_like(scores).scatter(-1, scores.argmax(-1, keepdim=True), 1.0)
    return torch.where(torch.isinf(scores).all(-1, keepdim=True), torch.zeros_like(one_hot), one_hot)
"""),
    ("scaled_dot_product_attention", "all-zero output and weights", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = torch.zeros(*queries.shape[:-1], keys.shape[-2])
    return torch.zeros(*queries.shape[:-1], values.shape[-1]), weights
"""),
    ("masked_softmax", "right values in NumPy, in a class named Tensor in a module named torch", """
import numpy as _np
class Tensor(_np.ndarray):
    pass
Tensor.__module__ = "torch"
def masked_softmax(scores, mask=None):
    s = _np.asarray(scores, dtype=_np.float32)
    if mask is not None:
        s = _np.where(_np.asarray(mask), s, -_np.inf)
    top = _np.max(s, -1, keepdims=True)
    e = _np.exp(s - _np.where(_np.isinf(top), 0, top))
    total = e.sum(-1, keepdims=True)
    return _np.where(total > 0, e / _np.where(total > 0, total, 1), 0).astype(_np.float32).view(Tensor)
"""),
    ("scaled_dot_product_attention", "right values from a fake torch module's Tensor class", """
import sys as _sys, types as _types, numpy as _np
_fake = _types.ModuleType("torch")
class _Carrier:
    def __init__(self, a):
        self.a = a
    def numpy(self):
        return self.a
    def detach(self):
        return self
    def cpu(self):
        return self
    dtype = "torch.float32"
_fake.Tensor = type("Tensor", (_Carrier,), {"__module__": "torch"})
_real = scaled_dot_product_attention
def scaled_dot_product_attention(queries, keys, values, mask=None):
    out, weights = _real(queries, keys, values, mask)
    return _fake.Tensor(out.numpy()), _fake.Tensor(weights.numpy())
"""),
]


@pytest.mark.parametrize("exercise, mistake, source", NON_ANSWERS, ids=[f"{e}: {m}" for e, m, _ in NON_ANSWERS])
def test_a_non_answer_earns_nothing(exercise, mistake, source):
    outcomes = _run_direct(_with("torch", source), "torch", exercise)
    passed = [name for name, message in outcomes if message is None]
    assert not passed, f"{mistake}: still passes {passed}"


@pytest.mark.parametrize("exercise, mistake, source", MUTANTS + NON_ANSWERS,
                         ids=[f"{e}: {m}" for e, m, _ in MUTANTS + NON_ANSWERS])
def test_mutant_fails_a_check(exercise, mistake, source):
    # Any other exception than CheckFailure is a crash of the check itself, and fails this test.
    outcomes = _run_direct(_with("torch", source), "torch", exercise)
    assert any(message is not None for _, message in outcomes), f"no check of {exercise} notices: {mistake}"


# (exercise, framework, a correct alternative)
ALTERNATIVES = [
    ("dot_product_scores", "torch", """
def dot_product_scores(queries, keys):
    return torch.einsum("...qd,...kd->...qk", queries, keys)
"""),
    ("dot_product_scores", "tf", """
def dot_product_scores(queries, keys):
    return tf.einsum("...qd,...kd->...qk", queries, keys)
"""),
    ("scaled_dot_product_scores", "torch", """
import math
def scaled_dot_product_scores(queries, keys):
    return torch.matmul(queries / math.sqrt(queries.size(-1)), keys.transpose(-1, -2))
"""),
    ("scaled_dot_product_scores", "tf", """
def scaled_dot_product_scores(queries, keys):
    d_k = tf.cast(tf.shape(keys)[-1], tf.float32)
    return tf.matmul(queries, keys, transpose_b=True) / tf.sqrt(d_k)
"""),
    ("additive_scores", "torch", """
def additive_scores(queries, keys, W_q, W_k, w_v):
    hidden = torch.tanh(torch.einsum("...qd,dh->...qh", queries, W_q)[..., :, None, :]
                        + torch.einsum("...kd,dh->...kh", keys, W_k)[..., None, :, :])
    return torch.einsum("...qkh,h->...qk", hidden, w_v)
"""),
    ("additive_scores", "tf", """
def additive_scores(queries, keys, W_q, W_k, w_v):
    hidden = tf.tanh(tf.einsum("...qd,dh->...qh", queries, W_q)[..., :, None, :]
                     + tf.einsum("...kd,dh->...kh", keys, W_k)[..., None, :, :])
    return tf.reduce_sum(hidden * w_v, axis=-1)
"""),
    ("general_scores", "torch", """
def general_scores(queries, keys, W):
    return queries @ (keys @ W.T).transpose(-2, -1)
"""),
    ("general_scores", "tf", """
def general_scores(queries, keys, W):
    return tf.einsum("...qa,ab,...kb->...qk", queries, W, keys)
"""),
    ("masked_softmax", "torch", """
def masked_softmax(scores, mask=None):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
"""),
    ("masked_softmax", "tf", """
def masked_softmax(scores, mask=None):
    if mask is None:
        return tf.nn.softmax(scores, axis=-1)
    mask = tf.broadcast_to(mask, tf.shape(scores))
    weights = tf.nn.softmax(tf.where(mask, scores, -1e30), axis=-1)
    return tf.where(mask, weights, 0.0)
"""),
    ("padding_mask", "torch", """
def padding_mask(valid_lens, n_k):
    rows = [[[k < int(n) for k in range(n_k)]] for n in valid_lens]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(valid_lens), 1, n_k)
"""),
    ("padding_mask", "tf", """
def padding_mask(valid_lens, n_k):
    return tf.sequence_mask(valid_lens, n_k)[:, None, :]
"""),
    ("causal_mask", "torch", """
def causal_mask(n_q, n_k=None):
    n_k = n_q if n_k is None else n_k
    return torch.ones(n_q, n_k, dtype=torch.bool).tril(diagonal=n_k - n_q)
"""),
    ("causal_mask", "tf", """
def causal_mask(n_q, n_k=None):
    n_k = n_q if n_k is None else n_k
    rows = [[j <= i + (n_k - n_q) for j in range(n_k)] for i in range(n_q)]
    return tf.reshape(tf.constant(rows, dtype=tf.bool), (n_q, n_k))
"""),
    ("tree_mask", "torch", """
def tree_mask(parents):
    n = len(parents)
    step = torch.zeros(n, n, dtype=torch.bool)          # step[i, j]: j is i's parent
    for i, p in enumerate(parents):
        if int(p) >= 0:
            step[i, int(p)] = True
    allowed = torch.eye(n, dtype=torch.bool)
    reach = torch.eye(n, dtype=torch.bool)
    for _ in range(n):                                  # ancestors at distance 1, 2, ... n
        reach = (reach.int() @ step.int()) > 0
        allowed |= reach
    return allowed
"""),
    ("tree_mask", "tf", """
def tree_mask(parents):
    parents = [int(p) for p in parents]
    def ancestors(i):
        return {i} | (ancestors(parents[i]) if parents[i] >= 0 else set())
    return tf.constant([[j in ancestors(i) for j in range(len(parents))] for i in range(len(parents))])
"""),
    ("scaled_dot_product_attention", "torch", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    scores = torch.einsum("...qd,...kd->...qk", queries, keys) / keys.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return torch.einsum("...qk,...kv->...qv", weights, values), weights
"""),
    ("scaled_dot_product_attention", "tf", """
def scaled_dot_product_attention(queries, keys, values, mask=None):
    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)
    output = tf.einsum("...qk,...kv->...qv", weights, values)
    return output, weights
"""),
]


@pytest.mark.parametrize("exercise, framework, source", ALTERNATIVES,
                         ids=[f"{e}-{fw}-{i}" for i, (e, fw, _) in enumerate(ALTERNATIVES)])
def test_correct_alternative_passes(exercise, framework, source):
    for seed in (0, 7):
        failed = [f"{name}: {message}" for name, message in
                  _run_direct(_with(framework, source), framework, exercise, seed) if message is not None]
        assert not failed, "\n".join(failed)
