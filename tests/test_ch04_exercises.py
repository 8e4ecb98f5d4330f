"""Chapter 04's checks tell right from wrong, for functions and for layers built on the student's side.

- (Full marks for the masters and none for the untouched student views: test_every_chapter.py.)
- Each plausible mistake (a *mutant*: heads split as (B, T, d, H), merge without the transpose, no
  1/sqrt(d) or 1/sqrt(D), biases ignored, the mask read as nn.MultiheadAttention reads it, NaN on a
  fully masked row, post-norm for pre-norm and back, Keras' default LayerNorm eps, GELU or no ReLU,
  the decoder's cross-attention on x, its memory_mask ignored, ...) fails at least one check of its
  exercise.
- Correct alternatives (einsum, a loop over heads, torch.chunk / tf.split heads, LayerNorm written
  out) pass every check.
- Through the sandbox: a layer that wraps the framework's own attention is charged with it.

The check functions are called directly with the grader's fixtures (`student` over a
`LocalBackend`, `oracle`, a seeded `rng`), as in test_ch03_exercises.py.
"""
import warnings

import numpy as np
import pytest

import check_functions as shared
with warnings.catch_warnings():   # its marks (exercise, points, public) are registered for the grader only
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from autograder.checks import ch04_code  # noqa: F401  (registered before check_functions reads it)
from autograder.chapters import chapter

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "04_code"
EXERCISES = chapter(CHAPTER).exercises
FRAMEWORKS = ("torch", "tf")

checks_of, _master_namespace, namespace_with, failed_checks = shared.bound(CHAPTER)


def _scores(namespace, framework, seed=0) -> dict[str, tuple[float, float]]:
    return shared.exercise_scores(CHAPTER, namespace, framework, seed)


# A multi-head attention written with replaceable parts, so that each mutant changes one thing.
# `_split`, `_merge`, `_scale`, `_masked`, `_project`, `_heads_mask` are overridden by the mutants.
MHA_PARTS = {
    "torch": '''
class _MHA(nn.Module):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))

    def _project(self, layer, x):
        return layer(x)

    def _split(self, x):
        return split_heads(x, self.num_heads)

    def _merge(self, x):
        return merge_heads(x)

    def _scale(self, d_head, d_model):
        return 1 / math.sqrt(d_head)

    def _heads_mask(self, mask):
        return torch.as_tensor(mask, dtype=torch.bool).unsqueeze(-3)

    def _masked(self, scores, mask):
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        return weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)

    def forward(self, query, key, value, mask=None):
        q = self._split(self._project(self.w_q, query))
        k = self._split(self._project(self.w_k, key))
        v = self._split(self._project(self.w_v, value))
        scores = q @ k.transpose(-2, -1) * self._scale(q.shape[-1], query.shape[-1])
        if mask is None:
            weights = torch.softmax(scores, dim=-1)
        else:
            weights = self._masked(scores, self._heads_mask(mask))
        return self._project(self.w_o, self._merge(weights @ v)), weights
''',
    "tf": '''
class _MHA(keras.layers.Layer):
    def __init__(self, d_model, num_heads, bias=True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (keras.layers.Dense(d_model, use_bias=bias) for _ in range(4))

    def _project(self, layer, x):
        return layer(x)

    def _split(self, x):
        return split_heads(x, self.num_heads)

    def _merge(self, x):
        return merge_heads(x)

    def _scale(self, d_head, d_model):
        return 1 / math.sqrt(d_head)

    def _heads_mask(self, mask):
        return tf.expand_dims(tf.cast(mask, tf.bool), -3)

    def _masked(self, scores, mask):
        weights = tf.nn.softmax(tf.where(mask, scores, float("-inf")), axis=-1)
        return tf.where(tf.reduce_any(mask, axis=-1, keepdims=True), weights, 0.0)

    def call(self, query, key, value, mask=None):
        q = self._split(self._project(self.w_q, query))
        k = self._split(self._project(self.w_k, key))
        v = self._split(self._project(self.w_v, value))
        scores = tf.matmul(q, k, transpose_b=True) * self._scale(q.shape[-1], query.shape[-1])
        if mask is None:
            weights = tf.nn.softmax(scores, axis=-1)
        else:
            weights = self._masked(scores, self._heads_mask(mask))
        return self._project(self.w_o, self._merge(tf.matmul(weights, v))), weights
''',
}

# (exercise, framework, what the mistake is, the mistaken definition)
MUTANTS = [
    # split_heads
    ("split_heads", "torch", "reshaped to (B, T, d, H): features dealt to heads round-robin", """
def split_heads(x, num_heads):
    x = x.reshape(*x.shape[:-1], x.shape[-1] // num_heads, num_heads)    # (..., T, d, H)
    return x.movedim(-1, -3)                                             # (..., H, T, d)
"""),
    ("split_heads", "tf", "reshaped to (B, T, d, H): features dealt to heads round-robin", """
def split_heads(x, num_heads):
    x = tf.convert_to_tensor(x)
    b, t, dm = x.shape
    x = tf.reshape(x, (b, t, dm // num_heads, num_heads))
    return tf.transpose(x, (0, 3, 1, 2))
"""),
    ("split_heads", "torch", "a reshape straight to (B, H, T, d), no transpose", """
def split_heads(x, num_heads):
    *lead, t, dm = x.shape
    return x.reshape(*lead, num_heads, t, dm // num_heads)
"""),
    ("split_heads", "tf", "a reshape straight to (B, H, T, d), no transpose", """
def split_heads(x, num_heads):
    x = tf.convert_to_tensor(x)
    return tf.reshape(x, [*x.shape[:-2], num_heads, x.shape[-2], x.shape[-1] // num_heads])
"""),
    ("split_heads", "torch", "only 3-D inputs: transpose(1, 2)", """
def split_heads(x, num_heads):
    b, t, dm = x.shape[0], x.shape[-2], x.shape[-1]
    return x.reshape(b, -1, num_heads, dm // num_heads).transpose(1, 2)
"""),
    ("split_heads", "torch", "head size used as the number of heads", """
def split_heads(x, num_heads):
    d = x.shape[-1] // num_heads
    return x.reshape(*x.shape[:-1], d, num_heads).transpose(-3, -2)
"""),
    # merge_heads
    ("merge_heads", "torch", "a reshape without swapping H and T back", """
def merge_heads(x):
    *lead, h, t, d = x.shape
    return x.reshape(*lead, t, h * d)
"""),
    ("merge_heads", "tf", "a reshape without swapping H and T back", """
def merge_heads(x):
    x = tf.convert_to_tensor(x)
    return tf.reshape(x, [*x.shape[:-3], x.shape[-2], x.shape[-3] * x.shape[-1]])
"""),
    ("merge_heads", "torch", "features interleaved (B, T, d, H) instead of (B, T, H, d)", """
def merge_heads(x):
    *lead, h, t, d = x.shape
    return x.permute(*range(len(lead)), -2, -1, -3).reshape(*lead, t, h * d)
"""),
    ("merge_heads", "tf", "only 4-D inputs", """
def merge_heads(x):
    x = tf.transpose(x, (0, 2, 1, 3))
    return tf.reshape(x, (x.shape[0], x.shape[1], -1))
"""),
    # MultiHeadAttention (on _MHA, defined above)
    ("MultiHeadAttention", "torch", "no 1/sqrt(d) scale", """
class MultiHeadAttention(_MHA):
    def _scale(self, d_head, d_model):
        return 1.0
"""),
    ("MultiHeadAttention", "tf", "no 1/sqrt(d) scale", """
class MultiHeadAttention(_MHA):
    def _scale(self, d_head, d_model):
        return 1.0
"""),
    ("MultiHeadAttention", "torch", "scaled by 1/sqrt(D) instead of the head size", """
class MultiHeadAttention(_MHA):
    def _scale(self, d_head, d_model):
        return 1 / math.sqrt(d_model)
"""),
    ("MultiHeadAttention", "torch", "heads split as (B, T, d, H)", """
class MultiHeadAttention(_MHA):
    def _split(self, x):
        b, t, dm = x.shape
        return x.reshape(b, t, dm // self.num_heads, self.num_heads).permute(0, 3, 1, 2)
"""),
    ("MultiHeadAttention", "tf", "heads split as (B, T, d, H)", """
class MultiHeadAttention(_MHA):
    def _split(self, x):
        b, t, dm = x.shape
        return tf.transpose(tf.reshape(x, (b, t, dm // self.num_heads, self.num_heads)), (0, 3, 1, 2))
"""),
    ("MultiHeadAttention", "torch", "heads merged without the transpose", """
class MultiHeadAttention(_MHA):
    def _merge(self, x):
        b, h, t, d = x.shape
        return x.reshape(b, t, h * d)
"""),
    ("MultiHeadAttention", "torch", "biases ignored (x @ weight^T only)", """
class MultiHeadAttention(_MHA):
    def _project(self, layer, x):
        return x @ layer.weight.T
"""),
    ("MultiHeadAttention", "tf", "biases ignored (x @ kernel only)", """
class MultiHeadAttention(_MHA):
    def _project(self, layer, x):
        if not layer.built:
            layer.build(x.shape)
        return tf.matmul(x, layer.kernel)
"""),
    ("MultiHeadAttention", "torch", "mask read as nn.MultiheadAttention reads it (True = masked out)", """
class MultiHeadAttention(_MHA):
    def _heads_mask(self, mask):
        return ~torch.as_tensor(mask, dtype=torch.bool).unsqueeze(-3)
"""),
    ("MultiHeadAttention", "tf", "mask read as nn.MultiheadAttention reads it (True = masked out)", """
class MultiHeadAttention(_MHA):
    def _heads_mask(self, mask):
        return tf.logical_not(tf.expand_dims(tf.cast(mask, tf.bool), -3))
"""),
    ("MultiHeadAttention", "torch", "fully masked rows give NaN", """
class MultiHeadAttention(_MHA):
    def _masked(self, scores, mask):
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
"""),
    ("MultiHeadAttention", "torch", "mask given the head axis with unsqueeze(1): only 3-D masks broadcast", """
class MultiHeadAttention(_MHA):
    def _heads_mask(self, mask):
        return torch.as_tensor(mask, dtype=torch.bool).unsqueeze(1)
"""),
    ("MultiHeadAttention", "torch", "masked scores set to -1e9, fully masked rows become uniform", """
class MultiHeadAttention(_MHA):
    def _masked(self, scores, mask):
        return torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)
"""),
    ("MultiHeadAttention", "torch", "keys used as values", """
class MultiHeadAttention(_MHA):
    def forward(self, query, key, value, mask=None):
        return super().forward(query, key, key, mask)
"""),
    # AdditiveAttention
    ("AdditiveAttention", "torch", "scores scaled by 1/sqrt(num_hiddens) like dot products", """
class AdditiveAttention(AdditiveAttention):
    def forward(self, queries, keys, values, mask=None):
        features = torch.tanh(self.W_q(queries).unsqueeze(-2) + self.W_k(keys).unsqueeze(-3))
        scores = self.w_v(features).squeeze(-1) / math.sqrt(features.shape[-1])
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.bool)
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.nan_to_num(torch.softmax(scores, dim=-1))
        return weights @ values, weights
"""),
    ("AdditiveAttention", "tf", "scores scaled by 1/sqrt(num_hiddens) like dot products", """
class AdditiveAttention(AdditiveAttention):
    def call(self, queries, keys, values, mask=None):
        features = tf.tanh(tf.expand_dims(self.W_q(queries), -2) + tf.expand_dims(self.W_k(keys), -3))
        scores = tf.squeeze(self.w_v(features), -1) / math.sqrt(features.shape[-1])
        if mask is not None:
            scores = tf.where(tf.cast(mask, tf.bool), scores, float("-inf"))
        weights = tf.where(tf.math.is_nan(tf.nn.softmax(scores, -1)), 0.0, tf.nn.softmax(scores, -1))
        return tf.matmul(weights, values), weights
"""),
    ("AdditiveAttention", "torch", "tanh left out", """
class AdditiveAttention(AdditiveAttention):
    def forward(self, queries, keys, values, mask=None):
        scores = self.w_v(self.W_q(queries).unsqueeze(-2) + self.W_k(keys).unsqueeze(-3)).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~torch.as_tensor(mask, dtype=torch.bool), float("-inf"))
        weights = torch.nan_to_num(torch.softmax(scores, dim=-1))
        return weights @ values, weights
"""),
    ("AdditiveAttention", "torch", "fully masked rows give NaN", """
class AdditiveAttention(AdditiveAttention):
    def forward(self, queries, keys, values, mask=None):
        features = torch.tanh(self.W_q(queries).unsqueeze(-2) + self.W_k(keys).unsqueeze(-3))
        scores = self.w_v(features).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~torch.as_tensor(mask, dtype=torch.bool), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ values, weights
"""),
    ("AdditiveAttention", "torch", "mask inverted", """
class AdditiveAttention(AdditiveAttention):
    def forward(self, queries, keys, values, mask=None):
        return super().forward(queries, keys, values, None if mask is None else ~torch.as_tensor(mask))
"""),
    ("AdditiveAttention", "torch", "softmax over the queries instead of the keys", """
class AdditiveAttention(AdditiveAttention):
    def forward(self, queries, keys, values, mask=None):
        features = torch.tanh(self.W_q(queries).unsqueeze(-2) + self.W_k(keys).unsqueeze(-3))
        weights = torch.softmax(self.w_v(features).squeeze(-1), dim=-2)
        return weights @ values, weights
"""),
    # TransformerEncoderBlock
    ("TransformerEncoderBlock", "torch", "always post-norm", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def forward(self, x, mask=None):
        x = self.norm1(x + self.attention(x, x, x, mask)[0])
        return self.norm2(x + self.ffn_out(torch.relu(self.ffn_in(x))))
"""),
    ("TransformerEncoderBlock", "tf", "always post-norm", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def call(self, x, mask=None):
        x = self.norm1(x + self.attention(x, x, x, mask)[0])
        return self.norm2(x + self.ffn_out(tf.nn.relu(self.ffn_in(x))))
"""),
    ("TransformerEncoderBlock", "torch", "always pre-norm", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def forward(self, x, mask=None):
        n = self.norm1(x)
        x = x + self.attention(n, n, n, mask)[0]
        return x + self.ffn_out(torch.relu(self.ffn_in(self.norm2(x))))
"""),
    ("TransformerEncoderBlock", "tf", "Keras' default LayerNorm eps (1e-3)", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False, **kwargs):
        super().__init__(d_model, num_heads, d_ff, norm_first, **kwargs)
        self.norm1 = keras.layers.LayerNormalization()
        self.norm2 = keras.layers.LayerNormalization()
"""),
    ("TransformerEncoderBlock", "torch", "LayerNorm eps 1e-3", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__(d_model, num_heads, d_ff, norm_first)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-3)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-3)
"""),
    ("TransformerEncoderBlock", "torch", "GELU instead of ReLU", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def forward(self, x, mask=None):
        ffn = lambda y: self.ffn_out(torch.nn.functional.gelu(self.ffn_in(y)))
        if self.norm_first:
            n = self.norm1(x)
            x = x + self.attention(n, n, n, mask)[0]
            return x + ffn(self.norm2(x))
        x = self.norm1(x + self.attention(x, x, x, mask)[0])
        return self.norm2(x + ffn(x))
"""),
    ("TransformerEncoderBlock", "torch", "no activation between ffn_in and ffn_out", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def forward(self, x, mask=None):
        ffn = lambda y: self.ffn_out(self.ffn_in(y))
        if self.norm_first:
            n = self.norm1(x)
            x = x + self.attention(n, n, n, mask)[0]
            return x + ffn(self.norm2(x))
        x = self.norm1(x + self.attention(x, x, x, mask)[0])
        return self.norm2(x + ffn(x))
"""),
    ("TransformerEncoderBlock", "torch", "the mask not passed on to the attention", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def forward(self, x, mask=None):
        return super().forward(x)
"""),
    ("TransformerEncoderBlock", "torch", "pre-norm without the residual around the FFN", """
class TransformerEncoderBlock(TransformerEncoderBlock):
    def forward(self, x, mask=None):
        if not self.norm_first:
            return super().forward(x, mask)
        n = self.norm1(x)
        x = x + self.attention(n, n, n, mask)[0]
        return self.ffn_out(torch.relu(self.ffn_in(self.norm2(x))))
"""),
    # TransformerDecoderBlock
    ("TransformerDecoderBlock", "torch", "cross-attention with x as keys and values", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        ffn = lambda y: self.ffn_out(torch.relu(self.ffn_in(y)))
        x = self.norm1(x + self.self_attention(x, x, x, self_mask)[0])
        x = self.norm2(x + self.cross_attention(x, x, x)[0])
        return self.norm3(x + ffn(x))
"""),
    ("TransformerDecoderBlock", "tf", "cross-attention with x as keys and values", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def call(self, x, memory, self_mask=None, memory_mask=None):
        ffn = lambda y: self.ffn_out(tf.nn.relu(self.ffn_in(y)))
        x = self.norm1(x + self.self_attention(x, x, x, self_mask)[0])
        x = self.norm2(x + self.cross_attention(x, x, x)[0])
        return self.norm3(x + ffn(x))
"""),
    ("TransformerDecoderBlock", "torch", "memory_mask ignored", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return super().forward(x, memory, self_mask)
"""),
    ("TransformerDecoderBlock", "tf", "memory_mask ignored", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def call(self, x, memory, self_mask=None, memory_mask=None):
        return super().call(x, memory, self_mask)
"""),
    ("TransformerDecoderBlock", "torch", "always post-norm", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__(d_model, num_heads, d_ff, False)
"""),
    ("TransformerDecoderBlock", "torch", "pre-norm that also normalises memory", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        if self.norm_first:
            memory = self.norm2(memory)
        return super().forward(x, memory, self_mask, memory_mask)
"""),
    ("TransformerDecoderBlock", "tf", "Keras' default LayerNorm eps (1e-3)", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False, **kwargs):
        super().__init__(d_model, num_heads, d_ff, norm_first, **kwargs)
        self.norm1, self.norm2, self.norm3 = (keras.layers.LayerNormalization() for _ in range(3))
"""),
    ("TransformerDecoderBlock", "torch", "the self mask used for the cross-attention too", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return super().forward(x, memory, self_mask, self_mask if self_mask is not None else memory_mask)
"""),
    ("TransformerDecoderBlock", "torch", "self-attention unmasked", """
class TransformerDecoderBlock(TransformerDecoderBlock):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return super().forward(x, memory, None, memory_mask)
"""),
]


def _prepare(framework: str, source: str) -> dict:
    namespace = namespace_with(framework, MHA_PARTS[framework])
    exec(source, namespace)
    return namespace


@pytest.mark.parametrize("exercise, framework, mistake, source", MUTANTS,
                         ids=[f"{e}-{fw}: {m}" for e, fw, m, _ in MUTANTS])
def test_mutant_fails_a_check(exercise, framework, mistake, source):
    # Any exception other than CheckFailure is a crash of a check itself, and fails this test.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        assert failed_checks(_prepare(framework, source), framework, exercise), f"{exercise}: {mistake} passes"


def test_every_exercise_has_mutants_in_both_frameworks():
    assert {(e, fw) for e, fw, _, _ in MUTANTS} == {(e, fw) for e in EXERCISES for fw in FRAMEWORKS}


def test_the_mutant_helper_is_itself_correct():
    """_MHA without overrides passes every MultiHeadAttention check: the mutants differ from it in one part."""
    for framework in FRAMEWORKS:
        namespace = _prepare(framework, "MultiHeadAttention = _MHA\n")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert not failed_checks(namespace, framework, "MultiHeadAttention"), framework


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_mutants_lose_their_points_through_the_grader_runner(framework):
    """One run of the real check runner per framework: every mutated exercise loses points."""
    namespace = _prepare(framework, "")
    chosen = {}
    for exercise, fw, _, source in MUTANTS:
        if fw == framework and exercise not in chosen:
            chosen[exercise] = source
            exec(source, namespace)
    for exercise, (got, most) in _scores(namespace, framework, seed=5).items():
        assert got < most, (exercise, got, most)


# (exercise, framework, a correct alternative)
ALTERNATIVES = [
    ("split_heads", "torch", """
def split_heads(x, num_heads):
    return torch.stack(torch.chunk(x, num_heads, dim=-1), dim=-3)     # H chunks of (..., T, d) -> (..., H, T, d)
"""),
    ("split_heads", "tf", """
def split_heads(x, num_heads):
    return tf.stack(tf.split(x, num_heads, axis=-1), axis=-3)         # H pieces of (..., T, d) -> (..., H, T, d)
"""),
    ("split_heads", "torch", """
def split_heads(x, num_heads):
    d = x.shape[-1] // num_heads
    return torch.stack([x[..., h * d:(h + 1) * d] for h in range(num_heads)], dim=-3)
"""),
    ("merge_heads", "torch", """
def merge_heads(x):
    return torch.cat(torch.unbind(x, dim=-3), dim=-1)                 # H pieces of (..., T, d) -> (..., T, H*d)
"""),
    ("merge_heads", "tf", """
def merge_heads(x):
    return tf.concat(tf.unstack(x, axis=-3), axis=-1)
"""),
    ("merge_heads", "torch", """
def merge_heads(x):
    return torch.einsum("...htd->...thd", x).flatten(-2)
"""),
    ("MultiHeadAttention", "torch", """
class MultiHeadAttention(nn.Module):
    # einsum, heads cut with torch.chunk, masked rows zeroed with where
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query, key, value, mask=None):
        heads = lambda x: torch.stack(x.chunk(self.num_heads, dim=-1), dim=1)   # (B, H, T, d)
        q, k, v = heads(self.w_q(query)), heads(self.w_k(key)), heads(self.w_v(value))
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / q.shape[-1] ** 0.5
        if mask is None:
            mask = torch.ones(scores.shape[-2:], dtype=torch.bool)
        mask = torch.as_tensor(mask).bool()[..., None, :, :]
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
        weights = torch.where(mask, torch.softmax(scores, -1), 0.0)          # masked keys exactly 0
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)   # an empty row stays 0
        out = torch.einsum("bhqk,bhkd->bqhd", weights, v).flatten(-2)
        return self.w_o(out), weights
"""),
    ("MultiHeadAttention", "torch", """
class MultiHeadAttention(nn.Module):
    # a loop over heads, each with its slice of the projections' outputs
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query, key, value, mask=None):
        q, k, v = self.w_q(query), self.w_k(key), self.w_v(value)
        d = q.shape[-1] // self.num_heads
        outputs, all_weights = [], []
        for h in range(self.num_heads):
            cut = slice(h * d, (h + 1) * d)
            scores = q[..., cut] @ k[..., cut].transpose(-2, -1) / math.sqrt(d)    # (B, T_q, T_k)
            if mask is not None:
                m = torch.as_tensor(mask).bool()
                scores = scores.masked_fill(~m, float("-inf"))
                w = torch.nan_to_num(torch.softmax(scores, -1), nan=0.0)
            else:
                w = torch.softmax(scores, -1)
            outputs.append(w @ v[..., cut])
            all_weights.append(w)
        return self.w_o(torch.cat(outputs, -1)), torch.stack(all_weights, 1)
"""),
    ("MultiHeadAttention", "tf", """
class MultiHeadAttention(keras.layers.Layer):
    # einsum, heads cut with tf.split
    def __init__(self, d_model, num_heads, bias=True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.w_q = keras.layers.Dense(d_model, use_bias=bias)
        self.w_k = keras.layers.Dense(d_model, use_bias=bias)
        self.w_v = keras.layers.Dense(d_model, use_bias=bias)
        self.w_o = keras.layers.Dense(d_model, use_bias=bias)

    def call(self, query, key, value, mask=None):
        heads = lambda x: tf.stack(tf.split(x, self.num_heads, axis=-1), axis=1)
        q, k, v = heads(self.w_q(query)), heads(self.w_k(key)), heads(self.w_v(value))
        scores = tf.einsum("bhqd,bhkd->bhqk", q, k) / tf.sqrt(float(q.shape[-1]))
        if mask is not None:
            allowed = tf.cast(mask, tf.bool)[..., None, :, :]
            scores = tf.where(allowed, scores, -1e9)
            weights = tf.where(allowed, tf.nn.softmax(scores, -1), 0.0)
            weights = tf.math.divide_no_nan(weights, tf.reduce_sum(weights, -1, keepdims=True))
        else:
            weights = tf.nn.softmax(scores, -1)
        out = tf.concat(tf.unstack(tf.einsum("bhqk,bhkd->hbqd", weights, v)), axis=-1)
        return self.w_o(out), weights
"""),
    ("AdditiveAttention", "torch", """
class AdditiveAttention(nn.Module):
    # einsum for w_v, a loop over the keys for the features
    def __init__(self, query_dim, key_dim, num_hiddens):
        super().__init__()
        self.W_q = nn.Linear(query_dim, num_hiddens, bias=False)
        self.W_k = nn.Linear(key_dim, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)

    def forward(self, queries, keys, values, mask=None):
        q, k = self.W_q(queries), self.W_k(keys)
        scores = torch.stack([torch.einsum("...qh,h->...q", torch.tanh(q + k[..., j:j + 1, :]), self.w_v.weight[0])
                              for j in range(k.shape[-2])], dim=-1)            # (..., n_q, n_k)
        if mask is not None:
            mask = torch.broadcast_to(torch.as_tensor(mask).bool(), scores.shape)
            e = torch.where(mask, torch.exp(scores - scores.amax(-1, keepdim=True)), 0.0)
            weights = e / e.sum(-1, keepdim=True).clamp_min(1e-30)
        else:
            weights = torch.softmax(scores, -1)
        return weights @ values, weights
"""),
    ("AdditiveAttention", "tf", """
class AdditiveAttention(keras.layers.Layer):
    def __init__(self, query_dim, key_dim, num_hiddens, **kwargs):
        super().__init__(**kwargs)
        self.W_q = keras.layers.Dense(num_hiddens, use_bias=False)
        self.W_k = keras.layers.Dense(num_hiddens, use_bias=False)
        self.w_v = keras.layers.Dense(1, use_bias=False)

    def call(self, queries, keys, values, mask=None):
        features = tf.tanh(self.W_q(queries)[..., :, None, :] + self.W_k(keys)[..., None, :, :])
        scores = self.w_v(features)[..., 0]
        if mask is not None:
            mask = tf.broadcast_to(tf.cast(mask, tf.bool), tf.shape(scores))
            e = tf.where(mask, tf.exp(scores - tf.reduce_max(scores, -1, keepdims=True)), 0.0)
            weights = tf.math.divide_no_nan(e, tf.reduce_sum(e, -1, keepdims=True))
        else:
            weights = tf.nn.softmax(scores, -1)
        return tf.matmul(weights, values), weights
"""),
    ("TransformerEncoderBlock", "torch", """
class TransformerEncoderBlock(nn.Module):
    # sub-layers applied through a helper; F.relu, LayerNorm through F.layer_norm on the module's own weights
    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadAttention(d_model, num_heads)
        self.ffn_in, self.ffn_out = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def _sublayer(self, x, norm, f):
        norm_ = lambda y: torch.nn.functional.layer_norm(y, y.shape[-1:], norm.weight, norm.bias, 1e-5)
        return x + f(norm_(x)) if self.norm_first else norm_(x + f(x))

    def forward(self, x, mask=None):
        x = self._sublayer(x, self.norm1, lambda y: self.attention(y, y, y, mask=mask)[0])
        return self._sublayer(x, self.norm2, lambda y: self.ffn_out(torch.nn.functional.relu(self.ffn_in(y))))
"""),
    ("TransformerEncoderBlock", "tf", """
class TransformerEncoderBlock(keras.layers.Layer):
    # LayerNorm written out on the layers' own gamma and beta
    def __init__(self, d_model, num_heads, d_ff, norm_first=False, **kwargs):
        super().__init__(**kwargs)
        self.norm_first = norm_first
        self.attention = MultiHeadAttention(d_model, num_heads)
        self.ffn_in, self.ffn_out = keras.layers.Dense(d_ff), keras.layers.Dense(d_model)
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-5)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-5)

    def _norm(self, norm, y):
        if not norm.built:
            norm.build(y.shape)
        mean, var = tf.nn.moments(y, axes=[-1], keepdims=True)
        return (y - mean) * tf.math.rsqrt(var + 1e-5) * norm.gamma + norm.beta

    def call(self, x, mask=None):
        ffn = lambda y: self.ffn_out(tf.maximum(self.ffn_in(y), 0.0))
        if self.norm_first:
            n = self._norm(self.norm1, x)
            x = x + self.attention(n, n, n, mask)[0]
            return x + ffn(self._norm(self.norm2, x))
        x = self._norm(self.norm1, x + self.attention(x, x, x, mask)[0])
        return self._norm(self.norm2, x + ffn(x))
"""),
    ("TransformerDecoderBlock", "torch", """
class TransformerDecoderBlock(nn.Module):
    # a list of (norm, sub-layer) pairs run in a loop
    def __init__(self, d_model, num_heads, d_ff, norm_first=False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attention = MultiHeadAttention(d_model, num_heads)
        self.cross_attention = MultiHeadAttention(d_model, num_heads)
        self.ffn_in, self.ffn_out = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        steps = [(self.norm1, lambda y: self.self_attention(y, y, y, mask=self_mask)[0]),
                 (self.norm2, lambda y: self.cross_attention(y, memory, memory, mask=memory_mask)[0]),
                 (self.norm3, lambda y: self.ffn_out(self.ffn_in(y).clamp_min(0)))]
        for norm, f in steps:
            x = x + f(norm(x)) if self.norm_first else norm(x + f(x))
        return x
"""),
    ("TransformerDecoderBlock", "tf", """
class TransformerDecoderBlock(keras.layers.Layer):
    def __init__(self, d_model, num_heads, d_ff, norm_first=False, **kwargs):
        super().__init__(**kwargs)
        self.norm_first = norm_first
        self.self_attention = MultiHeadAttention(d_model, num_heads)
        self.cross_attention = MultiHeadAttention(d_model, num_heads)
        self.ffn_in, self.ffn_out = keras.layers.Dense(d_ff, activation="relu"), keras.layers.Dense(d_model)
        self.norm1, self.norm2, self.norm3 = (keras.layers.LayerNormalization(epsilon=1e-5) for _ in range(3))

    def call(self, x, memory, self_mask=None, memory_mask=None):
        steps = [(self.norm1, lambda y: self.self_attention(y, y, y, mask=self_mask)[0]),
                 (self.norm2, lambda y: self.cross_attention(y, memory, memory, mask=memory_mask)[0]),
                 (self.norm3, lambda y: self.ffn_out(self.ffn_in(y)))]
        for norm, f in steps:
            x = x + f(norm(x)) if self.norm_first else norm(x + f(x))
        return x
"""),
]


@pytest.mark.parametrize("exercise, framework, source", ALTERNATIVES,
                         ids=[f"{e}-{fw}-{i}" for i, (e, fw, _) in enumerate(ALTERNATIVES)])
def test_correct_alternative_passes(exercise, framework, source):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in (0, 7):
            failed = failed_checks(namespace_with(framework, source), framework, exercise, seed)
            assert not failed, "\n".join(failed)


# --- through the sandbox: the framework's own attention inside a layer is charged ---------------

WRAPS_BUILTIN = {
    "torch": '''
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, num_heads, bias=True):
        super().__init__()
        self.inner = nn.MultiheadAttention(d_model, num_heads, bias=bias, batch_first=True)

    def forward(self, query, key, value, mask=None):
        return self.inner(query, key, value, attn_mask=None if mask is None else ~mask,
                          average_attn_weights=False)
''',
    "tf": '''
class MultiHeadAttention(keras.layers.Layer):
    def __init__(self, d_model, num_heads, bias=True, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.MultiHeadAttention(num_heads, d_model // num_heads, use_bias=bias)

    def call(self, query, key, value, mask=None):
        return self.inner(query, value, key, attention_mask=mask, return_attention_scores=True)
''',
}


@pytest.mark.slow
@pytest.mark.xdist_group("sandbox")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_layer_wrapping_the_builtin_is_charged(tmp_path, framework):
    from check_functions import graded_master_with

    result = graded_master_with(CHAPTER, framework, "MultiHeadAttention", WRAPS_BUILTIN[framework], tmp_path)
    assert result.error is None, result.error
    assert "MultiHeadAttention" in result.builtins, result.builtins
    mha = [c for c in result.checks if c.exercise == "MultiHeadAttention"]
    assert mha and all(c.score == 0 for c in mha), [(c.name, c.score) for c in mha]
    others = [c for c in result.checks if c.exercise in ("split_heads", "merge_heads", "AdditiveAttention")]
    assert others and all(c.passed for c in others), [(c.name, c.output[:200]) for c in others if not c.passed]
