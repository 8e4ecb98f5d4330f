"""Chapter 05's checks tell right from wrong, including the exercise graded by training.

- (Full marks for the masters and none for the untouched student views: test_every_chapter.py.)
- Each plausible mistake (a *mutant*) fails at least one check of its exercise: for the patches, a
  plain reshape, patches in column-major order, pixels flattened (column, row) or channel-first;
  for target attention, no scale, the mask ignored, NaN for an empty history, no softmax, the
  softmax over the wrong axis; for the trained classifier, mean pooling instead of attention, a
  constant answer, a model that ignores the mask, the labels as floats.
- Correct alternatives (unfold, tf.image.extract_patches, loops, einsum) keep full marks, and the
  trained reference passes on several hidden seeds (`passes_every_seed`).
- The notebook's copy of the corpus generator draws exactly the grader's reviews.

The check functions are called directly with the grader's fixtures, as in test_ch03_exercises.py.
"""
import warnings

import numpy as np
import pytest

import check_functions as shared
with warnings.catch_warnings():   # its marks (exercise, points, public) are registered for the grader only
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from autograder.checks import ch05_applications  # noqa: F401
from autograder.chapters import chapter
from autograder.checks.ch05_applications import aspect_corpus

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "05_applications"
EXERCISES = chapter(CHAPTER).exercises
FRAMEWORKS = ("torch", "tf")
TRAINED = "train_aspect_sentiment"

checks_of, _master_namespace, namespace_with, failed_checks = shared.bound(CHAPTER)


def _scores(namespace, framework, seed=0) -> dict[str, tuple[float, float]]:
    return shared.exercise_scores(CHAPTER, namespace, framework, seed)


def test_training_checks_set_their_own_time_limit():
    """Every check that trains has its own `seconds`, above the chapter's default call limit."""
    for func in checks_of(TRAINED):
        assert shared.meta(func).seconds and shared.meta(func).seconds > chapter(CHAPTER).limits.call_seconds


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_trained_reference_passes_on_other_hidden_seeds(framework):
    assert shared.passes_every_seed(CHAPTER, framework, TRAINED, "", seeds=(3, 17)) == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("seed", (2, 7, 11))
def test_trained_reference_learns_where_a_too_large_step_stalled(framework, seed):
    """Reviews whose padding holds text, drawn and trained from `seed`: with Adam at 1e-2, the
    PyTorch reference stalled at 87.7 % (seed 2) and 88.5 % (seed 11), under the 90 % target, and
    reached 93.4 % on seed 7; at 5e-3 it reached 99.9-100 % on 13 such seeds. Not through the grader:
    the master's function is called directly, seeded as below."""
    from autograder.oracle.ch05_applications import aspect_rule
    namespace = _master_namespace(framework)
    rng = np.random.default_rng(seed)
    if framework == "torch":
        namespace["torch"].manual_seed(seed)
    else:
        namespace["keras"].utils.set_random_seed(seed)
    train = aspect_corpus(rng, 3000, garbage_padding=True)
    test_tokens, test_mask, _ = aspect_corpus(rng, 1000, garbage_padding=True)
    got = np.asarray(namespace[TRAINED](*train, test_tokens, test_mask))
    assert (got == aspect_rule(test_tokens, test_mask)).mean() >= 0.95


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_notebook_generator_draws_the_graders_reviews(framework):
    mine = _master_namespace(framework)["aspect_corpus"]
    for garbage in (False, True):
        got = mine(np.random.default_rng(4), 50, garbage_padding=garbage)
        want = aspect_corpus(np.random.default_rng(4), 50, garbage_padding=garbage)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


# (exercise, framework, what the mistake is, the mistaken definition)
_MEAN_POOLING_TORCH = """
def train_aspect_sentiment(train_tokens, train_mask, train_labels, test_tokens, test_mask):
    d = 32
    class MeanPooling(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(40, d)
            self.values = nn.Conv1d(d, d, kernel_size=5, padding=2)
            self.head = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 2))
        def forward(self, tokens, mask):
            x = self.embed(tokens * mask)
            values = torch.relu(self.values(x.transpose(1, 2))).transpose(1, 2)
            weights = mask.float() / mask.sum(dim=-1, keepdim=True)
            return self.head((weights.unsqueeze(-1) * values).sum(dim=1))
    tokens, mask, labels = train_tokens.long(), train_mask.bool(), train_labels.long()
    model = MeanPooling()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(10):
        order = torch.randperm(len(tokens))
        for start in range(0, len(tokens), 100):
            batch = order[start:start + 100]
            loss = nn.functional.cross_entropy(model(tokens[batch], mask[batch]), labels[batch])
            optimizer.zero_grad(); loss.backward(); optimizer.step()
    with torch.no_grad():
        return model(test_tokens.long(), test_mask.bool()).argmax(dim=-1)
"""
_MEAN_POOLING_TF = """
def train_aspect_sentiment(train_tokens, train_mask, train_labels, test_tokens, test_mask):
    d = 32
    model = keras.Sequential([keras.layers.Embedding(40, d), keras.layers.Conv1D(d, 5, padding="same", activation="relu"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    mask = tf.cast(train_mask, tf.int32)
    model.fit(tf.cast(train_tokens, tf.int32) * mask, tf.cast(train_labels, tf.int32), batch_size=100, epochs=10,
              verbose=0)
    return tf.argmax(model(tf.cast(test_tokens, tf.int32) * tf.cast(test_mask, tf.int32)), axis=-1)
"""

MUTANTS = [
    ("image_to_patches", "torch", "a plain reshape: rows of the image, not patches", """
def image_to_patches(images, patch_size):
    b, h, w, c = images.shape
    return images.reshape(b, (h // patch_size) * (w // patch_size), patch_size * patch_size * c)
"""),
    ("image_to_patches", "tf", "a plain reshape: rows of the image, not patches", """
def image_to_patches(images, patch_size):
    b, h, w, c = images.shape
    return tf.reshape(images, (b, (h // patch_size) * (w // patch_size), patch_size * patch_size * c))
"""),
    ("image_to_patches", "torch", "patches in column-major order over the grid", """
def image_to_patches(images, patch_size):
    b, h, w, c = images.shape
    p = patch_size
    grid = images.reshape(b, h // p, p, w // p, p, c).permute(0, 3, 1, 2, 4, 5)
    return grid.reshape(b, (h // p) * (w // p), p * p * c)
"""),
    ("image_to_patches", "tf", "patches in column-major order over the grid", """
def image_to_patches(images, patch_size):
    b, h, w, c = images.shape
    p = patch_size
    grid = tf.transpose(tf.reshape(images, (b, h // p, p, w // p, p, c)), (0, 3, 1, 2, 4, 5))
    return tf.reshape(grid, (b, (h // p) * (w // p), p * p * c))
"""),
    ("image_to_patches", "torch", "each patch flattened in (column, row, channel) order", """
def image_to_patches(images, patch_size):
    b, h, w, c = images.shape
    p = patch_size
    grid = images.reshape(b, h // p, p, w // p, p, c).permute(0, 1, 3, 4, 2, 5)
    return grid.reshape(b, (h // p) * (w // p), p * p * c)
"""),
    ("image_to_patches", "torch", "each patch flattened channel-first (torch's unfold order)", """
def image_to_patches(images, patch_size):
    b, h, w, c = images.shape
    p = patch_size
    grid = images.reshape(b, h // p, p, w // p, p, c).permute(0, 1, 3, 5, 2, 4)
    return grid.reshape(b, (h // p) * (w // p), p * p * c)
"""),
    ("image_to_patches", "torch", "the image's height and width swapped (a transposed image)", """
def image_to_patches(images, patch_size):
    return image_to_patches_reference(images.transpose(1, 2), patch_size)
"""),
    ("target_attention", "torch", "no 1/sqrt(d) scale", """
def target_attention(target, history, mask=None):
    return target_attention_reference(target * math.sqrt(history.shape[-1]), history, mask)
"""),
    ("target_attention", "tf", "no 1/sqrt(d) scale", """
def target_attention(target, history, mask=None):
    target = tf.convert_to_tensor(target)
    return target_attention_reference(target * math.sqrt(target.shape[-1]), history, mask)
"""),
    ("target_attention", "torch", "the mask ignored", """
def target_attention(target, history, mask=None):
    return target_attention_reference(target, history, None)
"""),
    ("target_attention", "tf", "masked with -inf and softmax: NaN for an empty history", """
def target_attention(target, history, mask=None):
    history = tf.convert_to_tensor(history)
    scores = tf.reduce_sum(history * tf.convert_to_tensor(target)[..., None, :], -1) / math.sqrt(history.shape[-1])
    if mask is not None:
        scores = tf.where(tf.broadcast_to(mask, tf.shape(scores)), scores, -math.inf)
    weights = tf.nn.softmax(scores, axis=-1)
    return tf.reduce_sum(weights[..., None] * history, axis=-2), weights
"""),
    ("target_attention", "torch", "no softmax: sigmoid scores, as DIN's activation unit leaves them", """
def target_attention(target, history, mask=None):
    scores = (history @ target.unsqueeze(-1)).squeeze(-1) / math.sqrt(history.shape[-1])
    weights = torch.sigmoid(scores)
    if mask is not None:
        weights = weights * mask
    return (weights.unsqueeze(-1) * history).sum(dim=-2), weights
"""),
    ("target_attention", "torch", "softmax over the batch axis instead of the history axis", """
def target_attention(target, history, mask=None):
    scores = (history @ target.unsqueeze(-1)).squeeze(-1) / math.sqrt(history.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask.broadcast_to(scores.shape), -1e9)
    weights = torch.softmax(scores, dim=0)
    return (weights.unsqueeze(-1) * history).sum(dim=-2), weights
"""),
    ("target_attention", "torch", "the weights right, the interest summed without them", """
def target_attention(target, history, mask=None):
    _, weights = target_attention_reference(target, history, mask)
    return history.mean(dim=-2), weights
"""),
    ("train_aspect_sentiment", "torch", "mean pooling instead of attention", _MEAN_POOLING_TORCH),
    ("train_aspect_sentiment", "tf", "mean pooling instead of attention", _MEAN_POOLING_TF),
    ("train_aspect_sentiment", "torch", "a constant answer", """
def train_aspect_sentiment(train_tokens, train_mask, train_labels, test_tokens, test_mask):
    majority = int(train_labels.float().mean() > 0.5)
    return torch.full((len(test_tokens),), majority, dtype=torch.int64)
"""),
    ("train_aspect_sentiment", "torch", "the mask ignored: padding read as words", """
def train_aspect_sentiment(train_tokens, train_mask, train_labels, test_tokens, test_mask):
    every = torch.ones_like(train_mask, dtype=torch.bool)
    return train_aspect_sentiment_reference(train_tokens, every, train_labels, test_tokens,
                                            torch.ones_like(test_mask, dtype=torch.bool))
"""),
    ("train_aspect_sentiment", "tf", "probabilities returned instead of labels", """
def train_aspect_sentiment(train_tokens, train_mask, train_labels, test_tokens, test_mask):
    return tf.cast(train_aspect_sentiment_reference(train_tokens, train_mask, train_labels, test_tokens,
                                                    test_mask), tf.float32)
"""),
]


def _prepare(framework: str, source: str) -> dict:
    namespace = namespace_with(framework, "")
    for exercise in EXERCISES:
        namespace[f"{exercise}_reference"] = _master_namespace(framework)[exercise]
    exec(source, namespace)
    return namespace


@pytest.mark.parametrize("exercise, framework, mistake, source", MUTANTS,
                         ids=[f"{e}-{fw}: {m}" for e, fw, m, _ in MUTANTS])
def test_mutant_fails_a_check(exercise, framework, mistake, source):
    # Any exception other than CheckFailure is a crash of a check itself, and fails this test.
    with np.errstate(all="ignore"):
        failed = failed_checks(_prepare(framework, source), framework, exercise)
    assert failed, f"{exercise}: {mistake} passes"


def test_mean_pooling_fails_the_hidden_accuracy_in_both_frameworks():
    """The exercise genuinely needs attention: the same model with mean pooling stays below 90 %."""
    for framework, source in (("torch", _MEAN_POOLING_TORCH), ("tf", _MEAN_POOLING_TF)):
        failed = failed_checks(_prepare(framework, source), framework, TRAINED)
        assert any(f.startswith("test_train_hidden_accuracy") for f in failed), (framework, failed)


def test_every_exercise_has_mutants_in_both_frameworks():
    assert {(e, fw) for e, fw, _, _ in MUTANTS} == {(e, fw) for e in EXERCISES for fw in FRAMEWORKS}


def test_mutants_lose_their_points_through_the_grader_runner():
    """One run of the real check runner: the three mutated exercises lose points."""
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
    ("image_to_patches", "torch", """
def image_to_patches(images, patch_size):
    # unfold height then width: (B, H/p, W/p, C, p, p); move the channel last
    p = patch_size
    blocks = images.unfold(1, p, p).unfold(2, p, p)                 # (B, H/p, W/p, C, p_row, p_col)
    blocks = blocks.permute(0, 1, 2, 4, 5, 3)                       # (B, H/p, W/p, p, p, C)
    return blocks.reshape(images.shape[0], -1, p * p * images.shape[-1])
"""),
    ("image_to_patches", "torch", """
def image_to_patches(images, patch_size):
    p = patch_size
    b, h, w, c = images.shape
    rows = []
    for i in range(0, h, p):
        for j in range(0, w, p):
            rows.append(images[:, i:i + p, j:j + p, :].reshape(b, -1))
    return torch.stack(rows, dim=1)
"""),
    ("image_to_patches", "tf", """
def image_to_patches(images, patch_size):
    images = tf.convert_to_tensor(images)
    p = patch_size
    patches = tf.image.extract_patches(images, sizes=[1, p, p, 1], strides=[1, p, p, 1], rates=[1, 1, 1, 1],
                                       padding="VALID")             # (B, H/p, W/p, p*p*C), (row, col, channel)
    return tf.reshape(patches, (tf.shape(images)[0], -1, p * p * images.shape[-1]))
"""),
    ("target_attention", "torch", """
def target_attention(target, history, mask=None):
    scores = torch.einsum("...nd,...d->...n", history, target) / history.shape[-1] ** 0.5
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    mask = mask.broadcast_to(scores.shape)
    weights = torch.softmax(scores.masked_fill(~mask, -1e30), dim=-1) * mask
    weights = torch.where(mask.any(dim=-1, keepdim=True), weights, torch.zeros_like(weights))
    return torch.einsum("...n,...nd->...d", weights, history), weights
"""),
    ("target_attention", "tf", """
def target_attention(target, history, mask=None):
    history = tf.convert_to_tensor(history)
    scores = tf.einsum("...nd,...d->...n", history, tf.convert_to_tensor(target)) / history.shape[-1] ** 0.5
    mask = tf.ones_like(scores, tf.bool) if mask is None else tf.broadcast_to(mask, tf.shape(scores))
    weights = tf.nn.softmax(tf.where(mask, scores, -1e30), axis=-1) * tf.cast(mask, scores.dtype)
    weights = tf.where(tf.reduce_any(mask, axis=-1, keepdims=True), weights, tf.zeros_like(weights))
    return tf.einsum("...n,...nd->...d", weights, history), weights
"""),
]


@pytest.mark.parametrize("exercise, framework, source", ALTERNATIVES,
                         ids=[f"{e}-{fw}-{i}" for i, (e, fw, _) in enumerate(ALTERNATIVES)])
def test_correct_alternative_keeps_full_marks(exercise, framework, source):
    assert shared.passes_every_seed(CHAPTER, framework, exercise, source) == []
