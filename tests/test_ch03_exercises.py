"""Chapter 03's checks tell right from wrong, and the grader carries attention_cost's dict.

- (Full marks for the masters and none for the untouched student views: test_every_chapter.py.)
- Each plausible mistake (a *mutant*: log-sum-exp without the max, a Jacobian diag(p) + p p^T,
  gradients without 1/sqrt(d_k), sines and cosines swapped, a cost without the 2, entropy in bits
  or NaN at 0, ...) fails at least one check of its exercise.
- Correct alternatives (einsum, loops, the full Jacobian, xlogy, logaddexp folds) pass every check.
- A dict of ints crosses the sandbox's reply as a dict; malformed dicts are refused.

The check functions are called directly with the grader's fixtures (`student` over a
`LocalBackend`, `oracle`, a seeded `rng`), as in test_ch02_new_exercises.py.
"""
import warnings

import numpy as np
import pytest

import check_functions as shared
with warnings.catch_warnings():   # its marks (exercise, points, public) are registered for the grader only
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from autograder.checks import ch03_math  # noqa: F401  (registered before check_functions reads it)
from autograder.chapters import chapter
from autograder.checks.runner import LocalBackend, StudentProxy
from autograder.sandbox import convert
from autograder.session import _read_reply

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "03_math"
EXERCISES = chapter(CHAPTER).exercises
FRAMEWORKS = ("torch", "tf")


# the shared helpers, bound to this chapter
checks_of, _master_namespace, namespace_with, failed_checks = shared.bound(CHAPTER)


def _scores(namespace, framework, seed=0) -> dict[str, tuple[float, float]]:
    return shared.exercise_scores(CHAPTER, namespace, framework, seed)


# (exercise, framework, what the mistake is, the mistaken definition)
MUTANTS = [
    ("logsumexp", "torch", "no max subtraction: exp overflows to inf", """
def logsumexp(x, axis=-1):
    return torch.log(torch.exp(x).sum(dim=axis))
"""),
    ("logsumexp", "tf", "no max subtraction: exp overflows to inf", """
def logsumexp(x, axis=-1):
    return tf.math.log(tf.reduce_sum(tf.exp(x), axis=axis))
"""),
    ("logsumexp", "torch", "max subtracted, but an all -inf slice gives NaN", """
def logsumexp(x, axis=-1):
    top = x.amax(dim=axis, keepdim=True)
    return (torch.log(torch.exp(x - top).sum(dim=axis, keepdim=True)) + top).squeeze(axis)
"""),
    ("logsumexp", "torch", "the axis argument ignored", """
def logsumexp(x, axis=-1):
    top = x.amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return (torch.log(torch.exp(x - top).sum(dim=-1, keepdim=True)) + top).squeeze(-1)
"""),
    ("logsumexp", "torch", "the reduced axis kept", """
def logsumexp(x, axis=-1):
    top = x.amax(dim=axis, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return torch.log(torch.exp(x - top).sum(dim=axis, keepdim=True)) + top
"""),
    ("logsumexp", "torch", "the max added back twice", """
def logsumexp(x, axis=-1):
    top = x.amax(dim=axis, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return (torch.log(torch.exp(x - top).sum(dim=axis, keepdim=True)) + 2 * top).squeeze(axis)
"""),
    ("softmax_jacobian", "torch", "diag(p) + p p^T", """
def softmax_jacobian(p):
    return torch.diag_embed(p) + p.unsqueeze(-1) * p.unsqueeze(-2)
"""),
    ("softmax_jacobian", "tf", "diag(p) + p p^T", """
def softmax_jacobian(p):
    return tf.linalg.diag(p) + p[..., :, None] * p[..., None, :]
"""),
    ("softmax_jacobian", "torch", "only the diagonal p(1 - p)", """
def softmax_jacobian(p):
    return torch.diag_embed(p * (1 - p))
"""),
    ("softmax_jacobian", "torch", "softmax applied again to the probabilities", """
def softmax_jacobian(p):
    q = torch.softmax(p, dim=-1)
    return torch.diag_embed(q) - q.unsqueeze(-1) * q.unsqueeze(-2)
"""),
    ("softmax_jacobian", "torch", "p^T p summed to a scalar instead of the outer product", """
def softmax_jacobian(p):
    return torch.diag_embed(p) - (p * p).sum(-1)[..., None, None]
"""),
    ("attention_backward", "torch", "no 1/sqrt(d_k) in d_queries and d_keys", """
def attention_backward(queries, keys, values, grad_output):
    scale = 1.0 / math.sqrt(keys.shape[-1])
    weights = torch.softmax(queries @ keys.transpose(-2, -1) * scale, dim=-1)
    d_values = weights.transpose(-2, -1) @ grad_output
    d_weights = grad_output @ values.transpose(-2, -1)
    d_scores = weights * (d_weights - (d_weights * weights).sum(dim=-1, keepdim=True))
    return d_scores @ keys, d_scores.transpose(-2, -1) @ queries, d_values
"""),
    ("attention_backward", "tf", "no 1/sqrt(d_k) in d_queries and d_keys", """
def attention_backward(queries, keys, values, grad_output):
    scale = 1.0 / math.sqrt(keys.shape[-1])
    weights = tf.nn.softmax(tf.matmul(queries, keys, transpose_b=True) * scale, axis=-1)
    d_values = tf.matmul(weights, grad_output, transpose_a=True)
    d_weights = tf.matmul(grad_output, values, transpose_b=True)
    d_scores = weights * (d_weights - tf.reduce_sum(d_weights * weights, axis=-1, keepdims=True))
    return tf.matmul(d_scores, keys), tf.matmul(d_scores, queries, transpose_a=True), d_values
"""),
    ("attention_backward", "torch", "the softmax's Jacobian skipped: dS = P * dP", """
def attention_backward(queries, keys, values, grad_output):
    scale = 1.0 / math.sqrt(keys.shape[-1])
    weights = torch.softmax(queries @ keys.transpose(-2, -1) * scale, dim=-1)
    d_scores = weights * (grad_output @ values.transpose(-2, -1))
    return (d_scores @ keys * scale, d_scores.transpose(-2, -1) @ queries * scale,
            weights.transpose(-2, -1) @ grad_output)
"""),
    ("attention_backward", "torch", "d_values from weights without the 1/sqrt(d_k) scale", """
def attention_backward(queries, keys, values, grad_output):
    d_q, d_k, _ = attention_backward_reference(queries, keys, values, grad_output)
    weights = torch.softmax(queries @ keys.transpose(-2, -1), dim=-1)
    return d_q, d_k, weights.transpose(-2, -1) @ grad_output
"""),
    ("attention_backward", "torch", "the gradients' signs flipped for d_queries and d_keys", """
def attention_backward(queries, keys, values, grad_output):
    d_q, d_k, d_v = attention_backward_reference(queries, keys, values, grad_output)
    return -d_q, -d_k, d_v
"""),
    ("sinusoidal_positional_encoding", "torch", "sin and cos swapped", """
def sinusoidal_positional_encoding(num_positions, d_model):
    positions = torch.arange(num_positions, dtype=torch.float32).unsqueeze(-1)
    angles = positions / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).reshape(num_positions, d_model)
"""),
    ("sinusoidal_positional_encoding", "tf", "sin and cos swapped", """
def sinusoidal_positional_encoding(num_positions, d_model):
    positions = tf.range(num_positions, dtype=tf.float32)[:, None]
    angles = positions / 10000.0 ** (tf.range(0, d_model, 2, dtype=tf.float32) / d_model)
    return tf.reshape(tf.stack([tf.cos(angles), tf.sin(angles)], axis=-1), (num_positions, d_model))
"""),
    ("sinusoidal_positional_encoding", "torch", "exponent i / d_model instead of 2i / d_model", """
def sinusoidal_positional_encoding(num_positions, d_model):
    positions = torch.arange(num_positions, dtype=torch.float32).unsqueeze(-1)
    angles = positions / 10000.0 ** (torch.arange(d_model // 2, dtype=torch.float32) / d_model)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(num_positions, d_model)
"""),
    ("sinusoidal_positional_encoding", "torch", "sines in the first half, cosines in the second", """
def sinusoidal_positional_encoding(num_positions, d_model):
    positions = torch.arange(num_positions, dtype=torch.float32).unsqueeze(-1)
    angles = positions / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
"""),
    ("sinusoidal_positional_encoding", "torch", "positions counted from 1", """
def sinusoidal_positional_encoding(num_positions, d_model):
    positions = torch.arange(1, num_positions + 1, dtype=torch.float32).unsqueeze(-1)
    angles = positions / 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(num_positions, d_model)
"""),
    ("attention_cost", "torch", "without the 2 flops per multiply-add", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    return {"flops": num_heads * n_q * n_k * (d_k + d_v), "score_elements": num_heads * n_q * n_k}
"""),
    ("attention_cost", "tf", "d_k * d_v instead of d_k + d_v", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    return {"flops": 2 * num_heads * n_q * n_k * d_k * d_v, "score_elements": num_heads * n_q * n_k}
"""),
    ("attention_cost", "torch", "num_heads ignored", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    return {"flops": 2 * n_q * n_k * (d_k + d_v), "score_elements": n_q * n_k}
"""),
    ("attention_cost", "torch", "the value side forgotten: 2 n_q n_k d_k", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    return {"flops": 2 * num_heads * n_q * n_k * d_k, "score_elements": num_heads * n_q * n_k}
"""),
    ("attention_cost", "torch", "floats instead of ints", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    return {"flops": 2.0 * num_heads * n_q * n_k * (d_k + d_v), "score_elements": float(num_heads * n_q * n_k)}
"""),
    ("attention_cost", "tf", "counted in 32-bit tensors", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    h, q, k = tf.constant(num_heads), tf.constant(n_q), tf.constant(n_k)
    return {"flops": int(2 * h * q * k * (d_k + d_v)), "score_elements": int(h * q * k)}
"""),
    ("attention_cost", "torch", "other key names", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    return {"flops": 2 * num_heads * n_q * n_k * (d_k + d_v), "memory": num_heads * n_q * n_k}
"""),
    ("attention_entropy", "torch", "log2: bits instead of nats", """
def attention_entropy(weights):
    safe = torch.where(weights > 0, weights, torch.ones_like(weights))
    return -(weights * torch.log2(safe)).sum(dim=-1)
"""),
    ("attention_entropy", "tf", "log2: bits instead of nats", """
def attention_entropy(weights):
    safe = tf.where(weights > 0, weights, tf.ones_like(weights))
    return -tf.reduce_sum(weights * tf.math.log(safe) / math.log(2.0), axis=-1)
"""),
    ("attention_entropy", "torch", "0 * log 0 = NaN", """
def attention_entropy(weights):
    return -(weights * torch.log(weights)).sum(dim=-1)
"""),
    ("attention_entropy", "tf", "0 * log 0 = NaN", """
def attention_entropy(weights):
    return -tf.reduce_sum(weights * tf.math.log(weights), axis=-1)
"""),
    ("attention_entropy", "torch", "summed over the queries instead of the keys", """
def attention_entropy(weights):
    safe = torch.where(weights > 0, weights, torch.ones_like(weights))
    return -(weights * torch.log(safe)).sum(dim=-2)
"""),
    ("attention_entropy", "torch", "the sign forgotten", """
def attention_entropy(weights):
    safe = torch.where(weights > 0, weights, torch.ones_like(weights))
    return (weights * torch.log(safe)).sum(dim=-1)
"""),
]


def _prepare(framework: str, source: str) -> dict:
    namespace = namespace_with(framework, "")
    namespace["attention_backward_reference"] = _master_namespace(framework)["attention_backward"]
    exec(source, namespace)
    return namespace


@pytest.mark.parametrize("exercise, framework, mistake, source", MUTANTS,
                         ids=[f"{e}-{fw}: {m}" for e, fw, m, _ in MUTANTS])
def test_mutant_fails_a_check(exercise, framework, mistake, source):
    # Any exception other than CheckFailure is a crash of a check itself, and fails this test.
    assert failed_checks(_prepare(framework, source), framework, exercise), f"{exercise}: {mistake} passes"


def test_every_exercise_has_mutants_in_both_frameworks():
    assert {(e, fw) for e, fw, _, _ in MUTANTS} == {(e, fw) for e in EXERCISES for fw in FRAMEWORKS}


def test_mutants_lose_their_points_through_the_grader_runner():
    """One run of the real check runner: the six mutated exercises lose points, the rest keep them."""
    namespace = _prepare("torch", "")
    chosen = {}
    for exercise, framework, _, source in MUTANTS:
        if framework == "torch" and exercise not in chosen:
            chosen[exercise] = source
            exec(source, namespace)
    for exercise, (got, most) in _scores(namespace, "torch", seed=5).items():
        assert got < most, (exercise, got, most)


# (exercise, framework, a correct alternative)
ALTERNATIVES = [
    ("logsumexp", "torch", """
def logsumexp(x, axis=-1):
    # fold the slice with logaddexp, one entry at a time: logaddexp(-inf, -inf) = -inf
    x = x.movedim(axis, 0)
    total = x[0]
    for row in x[1:]:
        total = torch.logaddexp(total, row)
    return total
"""),
    ("logsumexp", "torch", """
def logsumexp(x, axis=-1):
    # the maximum over the finite entries only; NaN from all -inf slices replaced afterwards
    top = torch.where(torch.isinf(x), torch.full_like(x, -3e38), x).amax(dim=axis, keepdim=True)
    out = top.squeeze(axis) + torch.log(torch.exp(x - top).sum(dim=axis))
    return torch.where(torch.isinf(x).all(dim=axis), torch.full_like(out, float("-inf")), out)
"""),
    ("logsumexp", "tf", """
def logsumexp(x, axis=-1):
    x = tf.convert_to_tensor(x)
    top = tf.stop_gradient(tf.reduce_max(x, axis=axis, keepdims=True))
    out = tf.math.log(tf.reduce_sum(tf.exp(x - top), axis=axis)) + tf.squeeze(top, axis=axis)
    return tf.where(tf.math.is_nan(out), tf.constant(float("-inf")), out)
"""),
    ("softmax_jacobian", "torch", """
def softmax_jacobian(p):
    n = p.shape[-1]
    return torch.einsum("...i,ij->...ij", p, torch.eye(n)) - torch.einsum("...i,...j->...ij", p, p)
"""),
    ("softmax_jacobian", "torch", """
def softmax_jacobian(p):
    n = p.shape[-1]
    rows = [torch.stack([p[..., i] * ((1.0 if i == j else 0.0) - p[..., j]) for j in range(n)], dim=-1)
            for i in range(n)]
    return torch.stack(rows, dim=-2)
"""),
    ("softmax_jacobian", "tf", """
def softmax_jacobian(p):
    p = tf.convert_to_tensor(p)
    eye = tf.eye(p.shape[-1], dtype=p.dtype)
    return tf.einsum("...i,ij->...ij", p, eye) - tf.einsum("...i,...j->...ij", p, p)
"""),
    ("attention_backward", "torch", """
def attention_backward(queries, keys, values, grad_output):
    # through the full Jacobian of exercise 2, with einsum
    d_k = keys.shape[-1]
    weights = torch.softmax(torch.einsum("...qd,...kd->...qk", queries, keys) / d_k ** 0.5, dim=-1)
    d_values = torch.einsum("...qk,...qv->...kv", weights, grad_output)
    d_weights = torch.einsum("...qv,...kv->...qk", grad_output, values)
    d_scores = torch.einsum("...qi,...qij->...qj", d_weights, softmax_jacobian(weights))
    return (torch.einsum("...qk,...kd->...qd", d_scores, keys) / d_k ** 0.5,
            torch.einsum("...qk,...qd->...kd", d_scores, queries) / d_k ** 0.5, d_values)
"""),
    ("attention_backward", "tf", """
def attention_backward(queries, keys, values, grad_output):
    d_k = float(keys.shape[-1])
    weights = tf.nn.softmax(tf.einsum("...qd,...kd->...qk", queries, keys) / tf.sqrt(d_k), axis=-1)
    d_values = tf.einsum("...qk,...qv->...kv", weights, grad_output)
    d_weights = tf.einsum("...qv,...kv->...qk", grad_output, values)
    d_scores = tf.einsum("...qi,...qij->...qj", d_weights, softmax_jacobian(weights))
    return (tf.einsum("...qk,...kd->...qd", d_scores, keys) / tf.sqrt(d_k),
            tf.einsum("...qk,...qd->...kd", d_scores, queries) / tf.sqrt(d_k), d_values)
"""),
    ("sinusoidal_positional_encoding", "torch", """
def sinusoidal_positional_encoding(num_positions, d_model):
    if d_model % 2:
        raise ValueError("d_model must be even")
    rows = []
    for p in range(num_positions):
        row = []
        for i in range(d_model // 2):
            angle = p / 10000 ** (2 * i / d_model)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)
"""),
    ("sinusoidal_positional_encoding", "torch", """
def sinusoidal_positional_encoding(num_positions, d_model):
    if d_model % 2 != 0:
        raise ValueError(f"odd d_model: {d_model}")
    pe = torch.zeros(num_positions, d_model)
    position = torch.arange(num_positions).unsqueeze(1).float()
    div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe
"""),
    ("sinusoidal_positional_encoding", "tf", """
class OddDimension(ValueError):
    pass
def sinusoidal_positional_encoding(num_positions, d_model):
    if d_model % 2 == 1:
        raise OddDimension(d_model)   # a ValueError of its own
    column = np.arange(d_model)
    angles = np.arange(num_positions)[:, None] / 10000 ** ((column - column % 2) / d_model)
    return tf.constant(np.where(column % 2 == 0, np.sin(angles), np.cos(angles)), tf.float32)
"""),
    ("attention_cost", "torch", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    scores = n_q * n_k * d_k * 2        # Q K^T
    weighted = n_q * n_k * d_v * 2      # P V
    return dict(score_elements=num_heads * n_q * n_k, flops=num_heads * (scores + weighted))
"""),
    ("attention_cost", "tf", """
def attention_cost(n_q, n_k, d_k, d_v, num_heads=1):
    flops = int(np.prod([2, num_heads, n_q, n_k], dtype=np.int64)) * (d_k + d_v)
    return {"flops": flops, "score_elements": int(np.int64(num_heads) * n_q * n_k)}
"""),
    ("attention_entropy", "torch", """
def attention_entropy(weights):
    return -torch.xlogy(weights, weights).sum(dim=-1)
"""),
    ("attention_entropy", "torch", """
def attention_entropy(weights):
    return -torch.einsum("...k,...k->...", weights, torch.log(weights.clamp_min(1e-30)))
"""),
    ("attention_entropy", "tf", """
def attention_entropy(weights):
    return -tf.reduce_sum(tf.math.xlogy(weights, weights), axis=-1)
"""),
]


@pytest.mark.parametrize("exercise, framework, source", ALTERNATIVES,
                         ids=[f"{e}-{fw}-{i}" for i, (e, fw, _) in enumerate(ALTERNATIVES)])
def test_correct_alternative_passes(exercise, framework, source):
    for seed in (0, 7):
        failed = failed_checks(namespace_with(framework, source), framework, exercise, seed)
        assert not failed, "\n".join(failed)


# --- a dict result crosses the sandbox's reply ------------------------------------------------------

def _round_trip(value):
    spec, arrays = convert.encode_result(value)
    return _read_reply({"status": "ok", "result": spec}, arrays)


def test_a_dict_of_ints_comes_back_as_a_dict():
    reply = _round_trip({"flops": 480, "score_elements": 24})
    assert reply.status == "ok" and reply.value == {"flops": 480, "score_elements": 24}
    assert type(reply.value["flops"]) is int and reply.types == ["int", "int"]


def test_a_dict_of_arrays_keeps_its_arrays():
    reply = _round_trip({"a": np.arange(3, dtype=np.float32)})
    assert reply.status == "ok" and np.array_equal(reply.value["a"], np.arange(3))


@pytest.mark.parametrize("keys", [["x" * 41], ["a b"], ["é"], [""], ["a", "a"], [1], "ab",
                                  [f"k{i}" for i in range(33)]])
def test_a_dict_with_keys_that_could_carry_text_is_refused(keys):
    n = len(keys)
    head = {"status": "ok", "result": {"kind": "dict", "keys": keys,
                                       "items": [{"v": 1, "type": "int"}] * n}}
    assert _read_reply(head, {}).status == "error"


def test_a_dict_result_is_not_taken_for_a_wrong_tensor_type():
    namespace = {"attention_cost": lambda *a, **k: {"flops": 1, "score_elements": 2}}
    student = StudentProxy(LocalBackend(namespace, "torch"), "torch", lambda names: None)
    assert student.attention_cost(1, 1, 1, 1) == {"flops": 1, "score_elements": 2}
