"""The chapter-05 reference solutions (the masters) against the oracle, each other, and the built-ins;
the oracle and the grader's corpus against independent computations.

- image_to_patches: both masters equal the loop-based oracle on non-square, multi-channel images,
  and equal torch's `Tensor.unfold` and TensorFlow's `tf.image.extract_patches` (the built-ins are
  the independent witness here; the exercise may use them too).
- target_attention: both masters equal the oracle (masks, empty histories, leading dimensions), each
  other, and torch's scaled_dot_product_attention with the target as a one-row query; the oracle
  equals the book's loop-based float64 reference.
- aspect_corpus: every aspect has exactly one phrase in the review, labels are balanced, and the
  rule (`aspect_rule`, the oracle's answer) agrees with a reading of the decoded words.
"""
import os
import re

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

from autograder.notebooks import load_namespace, master_path
from autograder.oracle import ch05_applications as oracle
from autograder.checks.ch05_applications import aspect_corpus

pytestmark = pytest.mark.xdist_group("frameworks")

CHAPTER = "05_applications"


@pytest.fixture(scope="module")
def namespaces():
    return {fw: load_namespace(master_path(CHAPTER, fw)) for fw in ("torch", "tf")}


def _to(framework, x):
    return torch.from_numpy(np.array(x)) if framework == "torch" else tf.constant(x)


def _np(value):
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("shape, p", [((3, 8, 16, 3), 2), ((2, 6, 6, 1), 3), ((1, 4, 4, 2), 4), ((2, 3, 5, 2), 1)])
def test_image_to_patches_equals_the_oracle(namespaces, framework, shape, p):
    images = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = _np(namespaces[framework]["image_to_patches"](_to(framework, images), p))
    np.testing.assert_array_equal(got, oracle.image_to_patches(images, p))


def test_image_to_patches_equals_the_builtins(namespaces):
    images = np.random.default_rng(1).standard_normal((2, 8, 12, 3)).astype(np.float32)
    p = 4
    # torch: unfold rows then columns -> (B, H/p, W/p, C, p, p); channels last, then flatten
    unfolded = torch.from_numpy(images).unfold(1, p, p).unfold(2, p, p).permute(0, 1, 2, 4, 5, 3)
    want = unfolded.reshape(2, -1, p * p * 3).numpy()
    np.testing.assert_array_equal(_np(namespaces["torch"]["image_to_patches"](torch.from_numpy(images), p)), want)
    extracted = tf.image.extract_patches(images, sizes=[1, p, p, 1], strides=[1, p, p, 1], rates=[1, 1, 1, 1],
                                         padding="VALID").numpy().reshape(2, -1, p * p * 3)
    np.testing.assert_array_equal(_np(namespaces["tf"]["image_to_patches"](tf.constant(images), p)), extracted)
    np.testing.assert_array_equal(oracle.image_to_patches(images, p), want)


def test_image_to_patches_oracle_on_the_worked_example():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(oracle.image_to_patches(image, 2)[0],
                                  [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])


def _target_cases(rng):
    mask = rng.random((4, 6)) < 0.6
    mask[:, 0] = True
    mask[1] = False
    leading = rng.random((1, 3, 5)) < 0.7
    leading[..., 0] = True
    return [
        (rng.standard_normal((4, 8)), rng.standard_normal((4, 6, 8)), mask),
        (rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 5, 4)), leading),
        (100 * rng.standard_normal((3, 4)), 100 * rng.standard_normal((3, 7, 4)), None),
    ]


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_target_attention_equals_the_oracle(namespaces, framework):
    for target, history, mask in _target_cases(np.random.default_rng(2)):
        target, history = target.astype(np.float32), history.astype(np.float32)
        got = namespaces[framework]["target_attention"](_to(framework, target), _to(framework, history),
                                                        None if mask is None else _to(framework, mask))
        want = oracle.target_attention(target, history, mask)
        for g, w in zip(got, want):
            np.testing.assert_allclose(_np(g), w, rtol=1e-5, atol=1e-5)


def test_target_attention_torch_equals_tf_and_sdpa(namespaces):
    rng = np.random.default_rng(3)
    target = rng.standard_normal((5, 8)).astype(np.float32)
    history = rng.standard_normal((5, 9, 8)).astype(np.float32)
    mask = np.arange(9)[None] < np.array([1, 9, 4, 6, 2])[:, None]
    pt = [_np(x) for x in namespaces["torch"]["target_attention"](*map(torch.from_numpy, (target, history, mask)))]
    tf_ = [_np(x) for x in namespaces["tf"]["target_attention"](*map(tf.constant, (target, history, mask)))]
    for a, b in zip(pt, tf_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    sdpa = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(target)[:, None], torch.from_numpy(history), torch.from_numpy(history),
        attn_mask=torch.from_numpy(mask)[:, None])[:, 0]
    np.testing.assert_allclose(pt[0], sdpa.numpy(), rtol=1e-5, atol=1e-6)


def test_target_attention_oracle_equals_the_books_reference():
    from book.pages import reference_attention

    for target, history, mask in _target_cases(np.random.default_rng(4)):
        out, weights = reference_attention(target[..., None, :], history, history,
                                           None if mask is None else np.asarray(mask)[..., None, :])
        got_out, got_weights = oracle.target_attention(target, history, mask)
        np.testing.assert_allclose(got_weights, weights[..., 0, :], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_out, out[..., 0, :], rtol=1e-4, atol=1e-4)


WORDS = {oracle.NOT: "not", oracle.GOOD: "good", oracle.BAD: "bad",
         **{a: f"aspect{k}" for k, a in enumerate(oracle.ASPECTS)}}


def test_aspect_corpus_holds_one_phrase_per_aspect_and_the_rule_reads_it():
    for garbage in (False, True):
        tokens, mask, labels = aspect_corpus(np.random.default_rng(5), 400, garbage_padding=garbage)
        assert abs(labels.mean() - 0.5) < 0.08
        np.testing.assert_array_equal(oracle.aspect_rule(tokens, mask), labels)
        for review, keep, label in zip(tokens, mask, labels):
            text = " ".join(WORDS.get(int(t), "w") for t in review[keep])
            asked, body = text.split(" ", 1)
            for aspect in (f"aspect{k}" for k in range(4)):
                assert body.split().count(aspect) == 1
            match = re.search(rf"\b{asked} (not )?(good|bad)\b", body)
            assert match is not None
            assert label == int((match.group(2) == "good") != bool(match.group(1)))
        if garbage:
            assert np.isin(tokens[~mask], oracle.ASPECTS).any()   # the padding holds aspects too
