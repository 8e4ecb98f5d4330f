"""Grading checks for chapter 05 (applications): cutting images into patches, target attention over
a history, and a classifier graded by training it.

Public checks (what `check("name")` runs in the notebook) use the notebook's worked examples and a
shape. Hidden checks compare with the oracle on random inputs and probe what the contract fixes:
non-square images and several channels, one patch per image, patch size 1; leading batch
dimensions, masked and fully masked histories, large scores; and, for the trained classifier,
accuracy on reviews drawn from a seed the student never sees, and padding that holds other tokens.
Each failure's first line ends with a fixed hint; hidden inputs are never named in it.
"""
import numpy as np

from autograder.checks.api import CheckFailure, assert_close_or_hint, assert_shape, check, detail


def _normal(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# --- image_to_patches ----------------------------------------------------------------------------

PATCH_HINT = ("patch k is the k-th block of the grid read row by row (left to right, then down); "
              "inside a patch, flatten in (row, column, channel) order, so the channels of one pixel "
              "stay together. A plain reshape of (B, H, W, C) mixes rows of different patches: "
              "reshape to (B, H/p, p, W/p, p, C) and move the axes first.")


def _same_patches(student, oracle, images, p, what="patches"):
    count, height, width, depth = np.shape(images)   # what the patches of `images` must add up to
    got = student.image_to_patches(images, p)
    assert_shape(got, (count, (height // p) * (width // p), p * p * depth), what=what)
    assert_close_or_hint(got, oracle.image_to_patches(images, p), what, PATCH_HINT, atol=0, rtol=0)


@check("image_to_patches", public=True, fixed=True)
def test_patches_worked_example(student, oracle, rng):
    """matches the worked example: one 4x4 grey image, 2x2 patches"""
    images = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    _same_patches(student, oracle, images, 2)


@check("image_to_patches", points=1, public=True)
def test_patches_shape_rgb(student, oracle, rng):
    """two 6x6 RGB images with 3x3 patches give (2, 4, 27)"""
    _same_patches(student, oracle, _normal(rng, 2, 6, 6, 3), 3)


@check("image_to_patches", points=2)
def test_patches_not_square(student, oracle, rng):
    """a 4x8 grid of patches (H != W) with 3 channels: row-major order, (row, column, channel) inside"""
    _same_patches(student, oracle, _normal(rng, 3, 8, 16, 3), 2)


@check("image_to_patches", points=1)
def test_patches_edges(student, oracle, rng):
    """patch size 1 (one pixel per patch), and one patch covering the whole image"""
    images = _normal(rng, 2, 3, 5, 4)
    _same_patches(student, oracle, images, 1)
    _same_patches(student, oracle, _normal(rng, 2, 4, 4, 2), 4)


@check("image_to_patches", points=1)
def test_patches_keep_the_dtype(student, oracle, rng):
    """uint8 images give uint8 patches, and float64 images float64 ones: the pixels, in the input's dtype"""
    for images in (rng.integers(0, 256, size=(2, 6, 4, 3), dtype=np.uint8), _normal(rng, 1, 4, 6, 2).astype(np.float64)):
        got = student.image_to_patches(images, 2)
        if isinstance(got, np.ndarray) and got.dtype != images.dtype:
            raise CheckFailure(detail(f"patches of {images.dtype} images: expected dtype {images.dtype}, got "
                                      "another dtype. Hint: the patches are the pixels unchanged, in the input's "
                                      "dtype: reshape and transpose them, never cast.", f"got dtype {got.dtype}"))
        assert_close_or_hint(got, oracle.image_to_patches(images, 2), f"patches of {images.dtype} images",
                             PATCH_HINT, atol=0, rtol=0)


@check("image_to_patches", points=1)
def test_patches_digits_size(student, oracle, rng):
    """8x8 images with 2x2 and 4x4 patches, as the chapter's Vision Transformer uses them"""
    images = rng.random((5, 8, 8, 1)).astype(np.float32)
    for p in (2, 4):
        _same_patches(student, oracle, images, p)


# --- target_attention ----------------------------------------------------------------------------

TARGET_OUT = ("interest", "weights")
TARGET_HINT = ("score each history item by history . target / sqrt(d), softmax over the history axis "
               "(the last axis of the scores) among the allowed items only, then sum the history rows "
               "weighted by it; a history with no allowed item gets zero weights and a zero interest.")


def _same_target(student, oracle, target, history, mask=None, hint=TARGET_HINT):
    got = student.target_attention(target, history, mask)
    want = oracle.target_attention(target, history, mask)
    if not isinstance(got, tuple) or len(got) != 2:
        raise CheckFailure("target_attention: expected a tuple (interest, weights).")
    assert_shape(got[0], want[0].shape, what="interest")
    assert_shape(got[1], want[1].shape, what="weights")
    assert_close_or_hint(got, want, TARGET_OUT, hint)


def _target_example():
    target = np.array([[1.0, 0.0]], np.float32)                           # (B=1, d=2)
    history = np.array([[[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]], np.float32)   # (B=1, n=3, d=2)
    return target, history


@check("target_attention", public=True, fixed=True)
def test_target_attention_worked_example(student, oracle, rng):
    """matches the worked example, without and with a mask"""
    target, history = _target_example()
    _same_target(student, oracle, target, history)
    _same_target(student, oracle, target, history, np.array([[False, True, True]]))


@check("target_attention", points=1, public=True)
def test_target_attention_shapes(student, oracle, rng):
    """a batch of 4 targets (d = 8) over histories of 6 items gives (4, 8) and (4, 6)"""
    _same_target(student, oracle, _normal(rng, 4, 8), _normal(rng, 4, 6, 8))


@check("target_attention", points=1)
def test_target_attention_masked(student, oracle, rng):
    """histories of different lengths (padding masked), d = 16, where the 1/sqrt(d) scale matters"""
    lengths = np.array([1, 5, 9, 3, 7])
    mask = np.arange(9)[None, :] < lengths[:, None]
    _same_target(student, oracle, _normal(rng, 5, 16), _normal(rng, 5, 9, 16), mask)


@check("target_attention", points=1)
def test_target_attention_empty_history(student, oracle, rng):
    """a user with no allowed history item gets zero weights and a zero interest, never NaN"""
    mask = rng.random((4, 5)) < 0.6
    mask[:, 0] = True
    mask[2] = False
    _same_target(student, oracle, _normal(rng, 4, 3), _normal(rng, 4, 5, 3), mask)


@check("target_attention", points=1)
def test_target_attention_leading_dims(student, oracle, rng):
    """leading batch dimensions (2, 3), a mask that broadcasts over the first, and scores near 1e4"""
    mask = rng.random((1, 3, 7)) < 0.7
    mask[..., 0] = True
    _same_target(student, oracle, _normal(rng, 2, 3, 4), _normal(rng, 2, 3, 7, 4), mask)
    target, history = 100 * _normal(rng, 3, 4), 100 * _normal(rng, 3, 6, 4)
    _same_target(student, oracle, target, history,
                 hint="subtract each row's largest score before exp, so scores near 1e4 do not overflow.")


# --- train_aspect_sentiment ----------------------------------------------------------------------

PAD, NOT, GOOD, BAD = 0, 1, 2, 3
ASPECTS = (4, 5, 6, 7)          # four aspects ("food", "service", "price", "room")
VOCAB = 40                      # 8 .. 39: filler words
MAX_LEN = 60


def aspect_corpus(rng, n: int, min_len: int = 30, max_len: int = MAX_LEN, garbage_padding: bool = False):
    """`(tokens (n, max_len) int64, mask (n, max_len) bool, labels (n,) int64)`.

    A review: token 0 names the aspect asked about; the body is filler with one phrase per aspect at
    random places: `aspect good`, `aspect bad`, `aspect not good` or `aspect not bad`. The label is
    1 when the phrase about the asked aspect is positive (good, or not bad). Every aspect's phrase is
    there, so the words good, bad and not say nothing by themselves: the model must find the phrase
    of the asked aspect. Positions past a review's length are padding (`mask` False), filled with
    PAD, or, when `garbage_padding`, with more review text (filler and phrases about random aspects, the
    asked one included) that only the mask tells apart from the review.
    """
    tokens = np.zeros((n, max_len), np.int64)
    mask = np.zeros((n, max_len), bool)
    labels = np.zeros(n, np.int64)
    for which in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        review = rng.integers(ASPECTS[-1] + 1, VOCAB, length)
        asked = int(rng.integers(len(ASPECTS)))
        review[0] = ASPECTS[asked]
        # one phrase per aspect, in 4-token slots that never overlap
        slots = np.sort(rng.choice((length - 1) // 4, len(ASPECTS), replace=False)) * 4 + 1
        for slot, aspect in zip(slots, rng.permutation(len(ASPECTS))):
            negated, good = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
            phrase = [ASPECTS[aspect]] + ([NOT] if negated else []) + [GOOD if good else BAD]
            review[slot:slot + len(phrase)] = phrase
            if aspect == asked:
                labels[which] = int(good != negated)
        tokens[which, :length] = review
        mask[which, :length] = True
        if garbage_padding:           # more review text: filler and phrases, the asked aspect's too
            tokens[which, length:] = rng.integers(ASPECTS[-1] + 1, VOCAB, max_len - length)
            for slot in range(length + 1, max_len - 3, 4):
                negated, good = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
                phrase = [ASPECTS[int(rng.integers(len(ASPECTS)))]] + ([NOT] if negated else []) + [GOOD if good else BAD]
                tokens[which, slot:slot + len(phrase)] = phrase
    return tokens, mask, labels




TARGET_ACCURACY = 0.9
TRAIN_SECONDS = 60          # one training call: the reference takes ~5 s on 2 cores
TRAIN_HINT = ("attend from the asked aspect (token 0) over the review: a query from its embedding, "
              "keys and values from an encoder that sees each word's neighbours (a convolution of "
              "width 5, or a GRU); a mean of the words cannot tell which phrase was asked about.")


def _labels(got, n: int) -> np.ndarray:
    if not isinstance(got, np.ndarray):
        raise CheckFailure("train_aspect_sentiment: expected a tensor of predicted labels.")
    assert_shape(got, (n,), what="predicted labels")
    if not (np.issubdtype(got.dtype, np.integer) or got.dtype == bool):
        raise CheckFailure(f"predicted labels: expected integers 0 or 1 (the argmax of the logits), got dtype "
                           f"{got.dtype}.")
    if not np.isin(got, (0, 1)).all():
        raise CheckFailure("predicted labels: expected only 0 and 1.")
    return got.astype(np.int64)


def _accuracy(student, oracle, rng, n_train=3000, n_test=1000, garbage_padding=False, what="test reviews"):
    train = aspect_corpus(rng, n_train, garbage_padding=garbage_padding)
    test_tokens, test_mask, _ = aspect_corpus(rng, n_test, garbage_padding=garbage_padding)
    got = _labels(student.train_aspect_sentiment(*train, test_tokens, test_mask), n_test)
    want = oracle.train_aspect_sentiment(*train, test_tokens, test_mask)
    accuracy = float((got == want).mean())
    if accuracy < TARGET_ACCURACY:
        raise CheckFailure(detail(f"accuracy on the {what}: below the target of {TARGET_ACCURACY:.0%}. "
                                  f"Hint: {TRAIN_HINT}", f"accuracy {accuracy:.1%}"))


@check("train_aspect_sentiment", points=1, public=True, seconds=TRAIN_SECONDS)
def test_train_returns_labels(student, oracle, rng):
    """returns one label, 0 or 1, per test review (a small training set)"""
    train = aspect_corpus(rng, 200)
    test_tokens, test_mask, _ = aspect_corpus(rng, 50)
    _labels(student.train_aspect_sentiment(*train, test_tokens, test_mask), 50)


@check("train_aspect_sentiment", public=True, fixed=True, seconds=TRAIN_SECONDS)
def test_train_accuracy_on_the_notebooks_reviews(student, oracle, rng):
    """reaches 90% accuracy on 1000 new reviews after training on 3000 (the notebook's data)"""
    _accuracy(student, oracle, np.random.default_rng(2026))


@check("train_aspect_sentiment", points=2, seconds=TRAIN_SECONDS)
def test_train_hidden_accuracy(student, oracle, rng):
    """reaches 90% accuracy on reviews drawn from a seed the notebook never sees"""
    _accuracy(student, oracle, rng)


@check("train_aspect_sentiment", points=1, seconds=TRAIN_SECONDS)
def test_train_padding_holds_other_tokens(student, oracle, rng):
    """reaches 90% when the padding holds phrases about the aspects: the mask must be used"""
    _accuracy(student, oracle, rng, garbage_padding=True, what="reviews whose padding holds other phrases")
