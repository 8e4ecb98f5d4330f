"""The checks can fail: each plausible mistake loses points, and correct alternatives don't.

Each case takes the reference solution's namespace, replaces one function with a mutant, and runs
that exercise's checks (public and hidden) in this process, as `check()` does in a kernel.
"""
from __future__ import annotations

import textwrap

import nbformat
import pytest

from autograder import notebooks
from autograder.checks.runner import LocalBackend, run_checks

pytestmark = pytest.mark.xdist_group("frameworks")
CHAPTER = "02_principles"

MUTANTS = {
    "torch": {
        "masked_softmax": {
            "wrong axis": """
                def masked_softmax(scores, mask=None):
                    if mask is not None:
                        scores = scores.masked_fill(~mask, -1e9)
                    return torch.softmax(scores, dim=-2)
                """,
            "inverted mask": """
                def masked_softmax(scores, mask=None):
                    if mask is not None:
                        scores = scores.masked_fill(mask, -1e9)
                    return torch.softmax(scores, dim=-1)
                """,
            "NaN on fully masked rows": """
                def masked_softmax(scores, mask=None):
                    if mask is not None:
                        scores = scores.masked_fill(~mask, float("-inf"))
                    return torch.softmax(scores, dim=-1)
                """,
            "unstable softmax": """
                def masked_softmax(scores, mask=None):
                    e = torch.exp(scores)
                    if mask is not None:
                        e = e * mask
                    total = e.sum(dim=-1, keepdim=True)
                    return torch.where(total > 0, e / total, torch.zeros_like(e))
                """,
        },
        "scaled_dot_product_scores": {
            "missing scale": """
                def scaled_dot_product_scores(queries, keys):
                    return queries @ keys.transpose(-2, -1)
                """,
        },
        "dot_product_scores": {
            "swapped transposes": """
                def dot_product_scores(queries, keys):
                    return (keys @ queries.transpose(-2, -1)).transpose(-2, -1).transpose(-2, -1)
                """,
        },
        "scaled_dot_product_attention": {
            "missing scale": """
                def scaled_dot_product_attention(queries, keys, values, mask=None):
                    weights = masked_softmax(queries @ keys.transpose(-2, -1), mask)
                    return weights @ values, weights
                """,
            "weights over queries": """
                def scaled_dot_product_attention(queries, keys, values, mask=None):
                    scores = queries @ keys.transpose(-2, -1) / keys.shape[-1] ** 0.5
                    weights = masked_softmax(scores.transpose(-2, -1), None if mask is None else
                                             mask.transpose(-2, -1)).transpose(-2, -1)
                    return weights @ values, weights
                """,
        },
        "causal_mask": {
            "top-left aligned": """
                def causal_mask(n_q, n_k=None):
                    n_k = n_q if n_k is None else n_k
                    return torch.arange(n_k)[None, :] <= torch.arange(n_q)[:, None]
                """,
        },
        "padding_mask": {
            "off by one": """
                def padding_mask(valid_lens, n_k):
                    return (torch.arange(n_k)[None, :] <= valid_lens[:, None])[:, None, :]
                """,
        },
        "tree_mask": {
            "parent only": """
                def tree_mask(parents):
                    n = parents.shape[0]
                    mask = torch.eye(n, dtype=torch.bool)
                    for i in range(n):
                        if parents[i] >= 0:
                            mask[i, parents[i]] = True
                    return mask
                """,
        },
    },
    "tf": {
        "masked_softmax": {
            "wrong axis": """
                def masked_softmax(scores, mask=None):
                    scores = tf.convert_to_tensor(scores)
                    if mask is not None:
                        scores = tf.where(mask, scores, -1e9)
                    return tf.nn.softmax(scores, axis=-2)
                """,
            "NaN on fully masked rows": """
                def masked_softmax(scores, mask=None):
                    scores = tf.convert_to_tensor(scores)
                    if mask is not None:
                        scores = tf.where(mask, scores, float("-inf"))
                    return tf.nn.softmax(scores, axis=-1)
                """,
        },
        "scaled_dot_product_scores": {
            "missing scale": """
                def scaled_dot_product_scores(queries, keys):
                    return tf.matmul(queries, keys, transpose_b=True)
                """,
        },
    },
}

ALTERNATIVES = {
    "torch": {
        "dot_product_scores": """
            def dot_product_scores(queries, keys):
                return torch.einsum("...qd,...kd->...qk", queries, keys)
            """,
        "masked_softmax": """
            def masked_softmax(scores, mask=None):
                if mask is None:
                    mask = torch.ones_like(scores, dtype=torch.bool)
                mask = torch.broadcast_to(mask, scores.shape)
                flat, keep = scores.reshape(-1, scores.shape[-1]), mask.reshape(-1, scores.shape[-1])
                rows = []
                for row, ok in zip(flat, keep):
                    out = torch.zeros_like(row)
                    if ok.any():
                        shifted = torch.exp(row[ok] - row[ok].max())
                        out[ok] = shifted / shifted.sum()
                    rows.append(out)
                return torch.stack(rows).reshape(scores.shape)
            """,
        "scaled_dot_product_attention": """
            def scaled_dot_product_attention(queries, keys, values, mask=None):
                scores = torch.einsum("...qd,...kd->...qk", queries, keys) / keys.shape[-1] ** 0.5
                weights = masked_softmax(scores, mask)
                return torch.einsum("...qk,...kv->...qv", weights, values), weights
            """,
    },
    "tf": {
        "dot_product_scores": """
            def dot_product_scores(queries, keys):
                return tf.einsum("...qd,...kd->...qk", queries, keys)
            """,
    },
}


@pytest.fixture(scope="module")
def namespaces():
    return {fw: notebooks.load_namespace(notebooks.master_path(CHAPTER, fw)) for fw in ("torch", "tf")}


def _score(namespace: dict, framework: str, exercise: str, code: str | None) -> tuple[float, float, list]:
    ns = dict(namespace)
    if code:
        exec(textwrap.dedent(code), ns)
    results, _ = run_checks(CHAPTER, LocalBackend(ns, framework), framework, exercise=exercise)
    assert results, f"no checks ran for {exercise}"
    return sum(r.score for r in results), sum(r.max_score for r in results), results


CASES = [(fw, ex, name, code) for fw, exs in MUTANTS.items() for ex, ms in exs.items() for name, code in ms.items()]


@pytest.mark.parametrize("framework, exercise, mistake, code", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_a_mutant_loses_points(namespaces, framework, exercise, mistake, code):
    got, top, results = _score(namespaces[framework], framework, exercise, code)
    assert got < top, f"{mistake} kept full marks on {exercise}"
    assert all(r.output for r in results if not r.passed), "every failure says why"


ALT = [(fw, ex, code) for fw, exs in ALTERNATIVES.items() for ex, code in exs.items()]


@pytest.mark.parametrize("framework, exercise, code", ALT, ids=[f"{a[0]}-{a[1]}" for a in ALT])
def test_a_correct_alternative_keeps_full_marks(namespaces, framework, exercise, code):
    got, top, results = _score(namespaces[framework], framework, exercise, code)
    assert got == top, [r.output for r in results if not r.passed]


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_the_reference_gets_full_marks_on_every_exercise(namespaces, framework):
    results, _ = run_checks(CHAPTER, LocalBackend(dict(namespaces[framework]), framework), framework)
    failed = [(r.name, r.output) for r in results if not r.passed]
    assert not failed
    assert {r.exercise for r in results} == set(notebooks.exercises(nbformat.read(notebooks.master_path(CHAPTER, framework), as_version=4)))
