"""The chapter-02 second edition's four exercises: their checks tell right from wrong.

`segment_mask`, `decoder_masks`, `bahdanau_step` and `attention_pooling` combine the earlier pieces.
- Each plausible mistake (a *mutant*: padding taken for a segment, a causal cross mask, padding on
  the query axis, no mask, softmax over the batch, no 1/sqrt(d), NaN on a fully masked row, overflow
  at 1e4, ...) fails at least one check of its exercise.
- Correct alternatives (loops, einsum, broadcasting, the framework's softmax used carefully) pass
  every check, public and hidden, in both frameworks.
- A notebook whose four new exercises are all mutants loses their points through the grader's own
  pytest runner, and keeps the nine earlier exercises' points.

The reference solutions' full marks and the untouched notebook's zero are in test_ch02_checks.py,
which runs every exercise. Here the check functions are called directly with the grader's fixtures
(`student` over a `LocalBackend`, `oracle`, a seeded `rng`): one pytest run per mutant would cost
most of a second each.
"""
import copy
import warnings

import pytest

import check_functions as shared
with warnings.catch_warnings():   # its marks (exercise, points, public) are registered for the grader only
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from autograder.checks import ch02_principles  # noqa: F401  (registered before check_functions reads it)
from autograder.checks.api import FIXED_POINTS
from autograder.checks.runner import LocalBackend, run_checks

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "02_principles"
NEW_EXERCISES = ("segment_mask", "decoder_masks", "bahdanau_step", "attention_pooling")


# the shared helpers, bound to this chapter
checks_of, _master_namespace, namespace_with, failed_checks = shared.bound(CHAPTER)


def test_each_new_exercise_has_public_and_hidden_checks_worth_one_point():
    for exercise in NEW_EXERCISES:
        metas = [shared.meta(func) for func in checks_of(exercise)]
        assert 5 <= len(metas) <= 7, exercise
        assert {m.public for m in metas} == {True, False}, exercise
        # a worked example (inputs fixed in the check's code) carries FIXED_POINTS, every other check 1
        assert all(m.points == (FIXED_POINTS if m.fixed else 1) for m in metas), exercise
        assert [m.fixed for m in metas].count(True) <= 1, exercise
        for func in checks_of(exercise):
            assert (func.__doc__ or "").strip(), f"{func.__name__} has no docstring: its first line is the check's name"


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("seed", [0, 3])
def test_reference_passes_the_new_checks(framework, seed):
    for exercise in NEW_EXERCISES:
        assert not failed_checks(_master_namespace(framework), framework, exercise, seed), exercise


# (exercise, framework, what the mistake is, the mistaken definition)
MUTANTS = [
    ("segment_mask", "torch", "padding ids treated as one more segment", """
def segment_mask(segment_ids):
    return segment_ids[..., :, None] == segment_ids[..., None, :]
"""),
    ("segment_mask", "tf", "padding ids treated as one more segment", """
def segment_mask(segment_ids):
    segment_ids = tf.convert_to_tensor(segment_ids)
    return segment_ids[..., :, None] == segment_ids[..., None, :]
"""),
    ("segment_mask", "torch", "id 0 taken for padding (> 0 instead of >= 0)", """
def segment_mask(segment_ids):
    same = segment_ids[..., :, None] == segment_ids[..., None, :]
    return same & (segment_ids[..., None, :] > 0)
"""),
    ("segment_mask", "torch", "assumes sorted ids: segments are runs of equal neighbours", """
def segment_mask(segment_ids):
    change = torch.cat([torch.zeros_like(segment_ids[..., :1]),
                        (segment_ids[..., 1:] != segment_ids[..., :-1]).long()], dim=-1)
    run = change.cumsum(-1)
    return (run[..., :, None] == run[..., None, :]) & (segment_ids[..., None, :] >= 0)
"""),
    ("segment_mask", "torch", "1-D ids only: the batch is flattened into one sequence", """
def segment_mask(segment_ids):
    ids = segment_ids.reshape(-1)
    return (ids[:, None] == ids[None, :]) & (ids[None, :] >= 0)
"""),
    ("segment_mask", "torch", "0/1 integers instead of booleans", """
def segment_mask(segment_ids):
    same = segment_ids[..., :, None] == segment_ids[..., None, :]
    return (same & (segment_ids[..., None, :] >= 0)).int()
"""),
    ("decoder_masks", "torch", "no padding in the self mask", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    self_mask = causal_mask(n_tgt).expand(len(tgt_valid_lens), n_tgt, n_tgt)
    return self_mask, padding_mask(src_valid_lens, n_src).expand(-1, n_tgt, -1)
"""),
    ("decoder_masks", "torch", "self-mask padding on the query axis (rows) instead of the keys", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    rows = torch.arange(n_tgt)[None, :, None] < tgt_valid_lens[:, None, None]     # (batch, n_tgt, 1)
    return causal_mask(n_tgt) & rows, padding_mask(src_valid_lens, n_src).expand(-1, n_tgt, -1)
"""),
    ("decoder_masks", "torch", "cross mask made causal (bottom-right)", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    self_mask = causal_mask(n_tgt) & padding_mask(tgt_valid_lens, n_tgt)
    return self_mask, causal_mask(n_tgt, n_src) & padding_mask(src_valid_lens, n_src)
"""),
    ("decoder_masks", "torch", "cross mask made causal (top-left)", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    self_mask = causal_mask(n_tgt) & padding_mask(tgt_valid_lens, n_tgt)
    top_left = torch.ones(n_tgt, n_src, dtype=torch.bool).tril()
    return self_mask, top_left & padding_mask(src_valid_lens, n_src)
"""),
    ("decoder_masks", "torch", "cross-mask padding on the wrong axis (target rows)", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    self_mask = causal_mask(n_tgt) & padding_mask(tgt_valid_lens, n_tgt)
    rows = torch.arange(n_tgt)[None, :, None] < src_valid_lens[:, None, None]     # (batch, n_tgt, 1)
    return self_mask, rows.expand(-1, n_tgt, n_src)
"""),
    ("decoder_masks", "torch", "a broadcastable (batch, 1, n_src) cross mask, not the full shape", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    return causal_mask(n_tgt) & padding_mask(tgt_valid_lens, n_tgt), padding_mask(src_valid_lens, n_src)
"""),
    ("decoder_masks", "tf", "target and source lengths swapped", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    self_mask = causal_mask(n_tgt) & padding_mask(src_valid_lens, n_tgt)
    cross = padding_mask(tgt_valid_lens, n_src)
    return self_mask, tf.broadcast_to(cross, (tf.shape(cross)[0], n_tgt, n_src))
"""),
    ("bahdanau_step", "torch", "valid_lens ignored: no masking", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    weights = masked_softmax(additive_scores(state[:, None, :], encoder_outputs, W_q, W_k, w_v))
    return (weights @ encoder_outputs)[:, 0, :], weights[:, 0, :]
"""),
    ("bahdanau_step", "torch", "softmax over the batch axis", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    scores = additive_scores(state[:, None, :], encoder_outputs, W_q, W_k, w_v)[:, 0, :]   # (batch, n)
    if valid_lens is not None:
        scores = scores.masked_fill(~padding_mask(valid_lens, scores.shape[-1])[:, 0, :], float("-inf"))
    weights = torch.nan_to_num(torch.exp(scores) / torch.exp(scores).sum(0, keepdim=True))
    return (weights[:, None, :] @ encoder_outputs)[:, 0, :], weights
"""),
    ("bahdanau_step", "tf", "softmax over the batch axis", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    scores = additive_scores(state[:, None, :], encoder_outputs, W_q, W_k, w_v)[:, 0, :]   # (batch, n)
    mask = None if valid_lens is None else padding_mask(valid_lens, scores.shape[-1])[:, 0, :]
    weights = tf.transpose(masked_softmax(tf.transpose(scores), None if mask is None else tf.transpose(mask)))
    return tf.matmul(weights[:, None, :], encoder_outputs)[:, 0, :], weights
"""),
    ("bahdanau_step", "torch", "plain softmax after a -inf fill: NaN for a valid length of 0", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    scores = additive_scores(state[:, None, :], encoder_outputs, W_q, W_k, w_v)
    if valid_lens is not None:
        scores = scores.masked_fill(~padding_mask(valid_lens, scores.shape[-1]), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return (weights @ encoder_outputs)[:, 0, :], weights[:, 0, :]
"""),
    ("bahdanau_step", "torch", "fill with -1e9: uniform weights for a valid length of 0", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    scores = additive_scores(state[:, None, :], encoder_outputs, W_q, W_k, w_v)
    if valid_lens is not None:
        scores = scores.masked_fill(~padding_mask(valid_lens, scores.shape[-1]), -1e9)
    weights = torch.softmax(scores, dim=-1)
    return (weights @ encoder_outputs)[:, 0, :], weights[:, 0, :]
"""),
    ("bahdanau_step", "torch", "no max subtraction: exp overflows at scores of 1e4", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    scores = additive_scores(state[:, None, :], encoder_outputs, W_q, W_k, w_v)
    exps = torch.exp(scores)
    if valid_lens is not None:
        exps = exps * padding_mask(valid_lens, scores.shape[-1])
    weights = exps / exps.sum(-1, keepdim=True).clamp(min=1e-30)
    return (weights @ encoder_outputs)[:, 0, :], weights[:, 0, :]
"""),
    ("bahdanau_step", "torch", "context is the plain mean of the valid outputs", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    scores = additive_scores(state[:, None, :], encoder_outputs, W_q, W_k, w_v)
    mask = None if valid_lens is None else padding_mask(valid_lens, scores.shape[-1])
    weights = masked_softmax(scores, mask)
    uniform = masked_softmax(torch.zeros_like(scores), mask)
    return (uniform @ encoder_outputs)[:, 0, :], weights[:, 0, :]
"""),
    ("bahdanau_step", "torch", "keeps the query axis: (batch, 1, n) weights", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    scores = additive_scores(state[:, None, :], encoder_outputs, W_q, W_k, w_v)
    mask = None if valid_lens is None else padding_mask(valid_lens, scores.shape[-1])
    weights = masked_softmax(scores, mask)
    return (weights @ encoder_outputs)[:, 0, :], weights
"""),
    ("attention_pooling", "torch", "no 1/sqrt(d)", """
def attention_pooling(inputs, query, mask=None):
    weights = masked_softmax(inputs @ query, mask)
    return (weights[..., None] * inputs).sum(-2), weights
"""),
    ("attention_pooling", "tf", "no 1/sqrt(d)", """
def attention_pooling(inputs, query, mask=None):
    weights = masked_softmax(tf.linalg.matvec(inputs, query), mask)
    return tf.reduce_sum(weights[..., None] * inputs, axis=-2), weights
"""),
    ("attention_pooling", "torch", "divides by d instead of sqrt(d)", """
def attention_pooling(inputs, query, mask=None):
    weights = masked_softmax(inputs @ query / inputs.shape[-1], mask)
    return (weights[..., None] * inputs).sum(-2), weights
"""),
    ("attention_pooling", "torch", "NaN on a fully masked row", """
def attention_pooling(inputs, query, mask=None):
    scores = inputs @ query / inputs.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return (weights[..., None] * inputs).sum(-2), weights
"""),
    ("attention_pooling", "torch", "mask ignored", """
def attention_pooling(inputs, query, mask=None):
    weights = masked_softmax(inputs @ query / inputs.shape[-1] ** 0.5)
    return (weights[..., None] * inputs).sum(-2), weights
"""),
    ("attention_pooling", "torch", "one batch dimension exactly (bmm)", """
def attention_pooling(inputs, query, mask=None):
    scores = torch.bmm(inputs, query.expand(inputs.shape[0], -1)[..., None])[..., 0] / inputs.shape[-1] ** 0.5
    weights = masked_softmax(scores, mask)
    return torch.bmm(weights[:, None, :], inputs)[:, 0, :], weights
"""),
]


@pytest.mark.parametrize("exercise, framework, mistake, source", MUTANTS,
                         ids=[f"{e}-{fw}: {m}" for e, fw, m, _ in MUTANTS])
def test_mutant_fails_a_check(exercise, framework, mistake, source):
    # Any exception other than CheckFailure is a crash of a check itself, and fails this test.
    assert failed_checks(namespace_with(framework, source), framework, exercise), \
        f"no check of {exercise} notices: {mistake}"


def test_every_new_exercise_has_mutants_in_both_frameworks():
    assert {(e, fw) for e, fw, _, _ in MUTANTS} >= {(e, fw) for e in NEW_EXERCISES for fw in ("torch",)}
    assert {e for e, fw, _, _ in MUTANTS if fw == "tf"} == set(NEW_EXERCISES)


# (exercise, framework, a correct alternative)
ALTERNATIVES = [
    ("segment_mask", "torch", """
def segment_mask(segment_ids):
    ids = segment_ids.reshape(-1, segment_ids.shape[-1])              # (batch, n)
    rows = [[[bool(a == b and b >= 0) for b in seq] for a in seq] for seq in ids.tolist()]
    n = segment_ids.shape[-1]
    return torch.tensor(rows, dtype=torch.bool).reshape(*segment_ids.shape, n)
"""),
    ("segment_mask", "tf", """
def segment_mask(segment_ids):
    ids = tf.convert_to_tensor(segment_ids)
    real = tf.math.greater_equal(ids, 0)
    same = tf.equal(tf.expand_dims(ids, -1), tf.expand_dims(ids, -2))
    return tf.logical_and(same, tf.logical_and(tf.expand_dims(real, -1), tf.expand_dims(real, -2)))
"""),
    ("decoder_masks", "torch", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    i = torch.arange(n_tgt)[None, :, None]
    j_tgt, j_src = torch.arange(n_tgt)[None, None, :], torch.arange(n_src)[None, None, :]
    tgt, src = tgt_valid_lens[:, None, None], src_valid_lens[:, None, None]
    self_mask = (j_tgt <= i) & (j_tgt < tgt)
    cross_mask = (j_src < src) & (i >= 0)                  # & with a (1, n_tgt, 1) term: the full shape
    return self_mask, cross_mask
"""),
    ("decoder_masks", "tf", """
def decoder_masks(tgt_valid_lens, src_valid_lens, n_tgt, n_src):
    lower = tf.cast(tf.linalg.band_part(tf.ones((n_tgt, n_tgt)), -1, 0), tf.bool)
    self_mask = tf.logical_and(lower, tf.sequence_mask(tgt_valid_lens, n_tgt)[:, None, :])
    cross_mask = tf.repeat(tf.sequence_mask(src_valid_lens, n_src)[:, None, :], n_tgt, axis=1)
    return self_mask, cross_mask
"""),
    ("bahdanau_step", "torch", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    hidden = torch.tanh(torch.einsum("bq,qh->bh", state, W_q)[:, None, :]
                        + torch.einsum("bnk,kh->bnh", encoder_outputs, W_k))       # (batch, n, h)
    scores = torch.einsum("bnh,h->bn", hidden, w_v)
    if valid_lens is not None:
        keep = torch.arange(scores.shape[-1])[None, :] < valid_lens[:, None]
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return torch.einsum("bn,bnk->bk", weights, encoder_outputs), weights
"""),
    ("bahdanau_step", "tf", """
def bahdanau_step(state, encoder_outputs, W_q, W_k, w_v, valid_lens=None):
    hidden = tf.tanh(tf.expand_dims(tf.matmul(state, W_q), 1) + tf.einsum("bnk,kh->bnh", encoder_outputs, W_k))
    scores = tf.reduce_sum(hidden * w_v, axis=-1)                                   # (batch, n)
    n = tf.shape(scores)[-1]
    keep = tf.ones_like(scores, tf.bool) if valid_lens is None else tf.sequence_mask(valid_lens, n)
    weights = tf.where(keep, tf.nn.softmax(tf.where(keep, scores, -1e30), axis=-1), 0.0)
    return tf.reduce_sum(weights[..., None] * encoder_outputs, axis=1), weights
"""),
    ("attention_pooling", "torch", """
def attention_pooling(inputs, query, mask=None):
    scores = torch.einsum("...nd,d->...n", inputs, query) / inputs.shape[-1] ** 0.5
    weights = masked_softmax(scores, mask)
    return torch.einsum("...n,...nd->...d", weights, inputs), weights
"""),
    ("attention_pooling", "tf", """
def attention_pooling(inputs, query, mask=None):
    d = tf.cast(tf.shape(inputs)[-1], tf.float32)
    scores = tf.reduce_sum(inputs * query, axis=-1) / tf.sqrt(d)                   # (..., n)
    if mask is None:
        weights = tf.nn.softmax(scores, axis=-1)
    else:
        weights = tf.where(mask, tf.nn.softmax(tf.where(mask, scores, -1e30), axis=-1), 0.0)
        weights = tf.where(tf.reduce_any(mask, axis=-1, keepdims=True), weights, 0.0)
    return tf.reduce_sum(weights[..., None] * inputs, axis=-2), weights
"""),
]


@pytest.mark.parametrize("exercise, framework, source", ALTERNATIVES,
                         ids=[f"{e}-{fw}" for e, fw, _ in ALTERNATIVES])
def test_correct_alternative_passes(exercise, framework, source):
    for seed in (0, 7):
        failed = failed_checks(namespace_with(framework, source), framework, exercise, seed)
        assert not failed, "\n".join(failed)


def test_mutants_lose_their_points_through_the_grader_runner():
    """One pytest run of the real check runner: the four mutated exercises score 0, the rest full."""
    chosen = {}
    for exercise, framework, _, source in MUTANTS:
        if framework == "torch":
            chosen.setdefault(exercise, source)
    namespace = dict(_master_namespace("torch"))
    for source in chosen.values():
        exec(source, namespace)
    results, _ = run_checks(CHAPTER, LocalBackend(copy.copy(namespace), "torch"), "torch", seed=5)
    scores: dict[str, list[float]] = {}
    for r in results:
        scores.setdefault(r.exercise, [0.0, 0.0])
        scores[r.exercise][0] += r.score
        scores[r.exercise][1] += r.max_score
    for exercise, (got, most) in scores.items():
        if exercise in chosen:
            assert got < most, (exercise, got, most)
        else:
            assert got == most, (exercise, got, most, [r.output for r in results if r.exercise == exercise and not r.passed])
