"""Chapter 05 (applications): the NumPy reference for its three exercises, and the grader's data.

Each function follows `../shared/CONTRACT.md` ("05_applications"):
- `image_to_patches(images, patch_size)`: `(B, H, W, C)` -> `(B, (H/p)(W/p), p*p*C)`, patches in
  row-major order over the grid, each flattened in (row, column, channel) order;
- `target_attention(target, history, mask=None)` -> `(interest (..., d), weights (..., n))`:
  scores `history . target / sqrt(d)`, softmax over the allowed history items, a weighted sum;
  a history with no allowed item gives zero weights and a zero interest;
- `train_aspect_sentiment(train_tokens, train_mask, train_labels, test_tokens, test_mask)`: the
  student's function trains a classifier; here the *rule* that made the labels, read off the
  tokens, is the reference: the sentiment of the phrase about the aspect named by the first token.

That task's data come from `aspect_corpus` in `autograder/checks/ch05_applications.py`: the checks
draw hidden data with it from a seed the student never sees (the public checks too, which the
release bundles without the oracle); the book's pages have their own generators
(`book/applications.py`).
"""
from __future__ import annotations

import numpy as np

# --- image_to_patches ----------------------------------------------------------------------------


def image_to_patches(images, patch_size: int) -> np.ndarray:
    """`(B, H, W, C)` -> `(B, (H/p)(W/p), p*p*C)`, by explicit loops over the patch grid."""
    images = np.asarray(images)
    batch, height, width, channels = images.shape
    p = int(patch_size)
    assert height % p == 0 and width % p == 0, "H and W must be multiples of patch_size"
    patches = []
    for row in range(height // p):              # the patch grid, row-major: row by row
        for col in range(width // p):
            block = images[:, row * p:(row + 1) * p, col * p:(col + 1) * p, :]   # (B, p, p, C)
            patches.append(block.reshape(batch, p * p * channels))             # (row, column, channel)
    return np.stack(patches, axis=1)


# --- target_attention ----------------------------------------------------------------------------


def target_attention(target, history, mask=None):
    """`(interest (..., d), weights (..., n))`, in float64, cast to float32 at the end."""
    target = np.asarray(target, np.float64)
    history = np.asarray(history, np.float64)
    d = history.shape[-1]
    scores = np.einsum("...nd,...d->...n", history, target) / np.sqrt(d)      # (..., n)
    allowed = np.ones(scores.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool),
                                                                                 scores.shape)
    masked = np.where(allowed, scores, -np.inf)
    top = masked.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    exps = np.where(allowed, np.exp(masked - top), 0.0)
    total = exps.sum(axis=-1, keepdims=True)
    weights = np.divide(exps, total, out=np.zeros_like(exps), where=total > 0)
    interest = np.einsum("...n,...nd->...d", weights, history)
    return interest.astype(np.float32), weights.astype(np.float32)


# --- the aspect-sentiment corpus and its rule ---------------------------------------------------

PAD, NOT, GOOD, BAD = 0, 1, 2, 3     # the corpus's token ids (its generator, `aspect_corpus`, is in
ASPECTS = (4, 5, 6, 7)               # the checks module: public checks draw with it, and the release
                                     # bundles public checks' code but never the oracle)


def aspect_rule(tokens, mask) -> np.ndarray:
    """The labels read off the tokens by the corpus's rule, review by review (no learning)."""
    tokens, mask = np.asarray(tokens), np.asarray(mask, bool)
    labels = np.zeros(len(tokens), np.int64)
    for i, (review, keep) in enumerate(zip(tokens, mask)):
        review = review[keep]
        asked = review[0]
        for j in range(1, len(review)):
            if review[j] == asked:                        # the asked aspect's phrase starts here
                negated = review[j + 1] == NOT
                word = review[j + 2] if negated else review[j + 1]
                labels[i] = int((word == GOOD) != negated)
                break
    return labels


def train_aspect_sentiment(train_tokens, train_mask, train_labels, test_tokens, test_mask) -> np.ndarray:
    """The reference answer for the test reviews: the rule's labels (the training data is unused)."""
    return aspect_rule(test_tokens, test_mask)
