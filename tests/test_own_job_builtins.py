"""Built-ins that do an exercise's whole job (a record's `own_job`): `torch.softmax` in chapter 01's
`softmax`, `torch.logsumexp` in chapter 03's `logsumexp`, `torch.autograd.functional.jacobian` in
`softmax_jacobian`, a `Categorical(...).entropy()` in `attention_entropy`.

The scan charges the listed exercise with any of those names it reaches, read as an attribute or
imported from a framework; the same names elsewhere (another exercise, a verification cell the
exercise does not reach) charge nothing. Then real graded runs: the chapter-01 master whose
`softmax` returns `torch.softmax(x, -1)` (a right answer) loses exactly that exercise's points.
"""
from __future__ import annotations

import pytest

from autograder import notebooks, scan
from autograder.chapters import all_chapters, chapter
from check_functions import graded_master_with

CHARGED = {   # (chapter, exercise, cells before, the exercise's source, the name charged)
    "torch.softmax": ("01_background", "softmax", "import torch\n",
                      "def softmax(x):\n    return torch.softmax(x, dim=-1)\n", "softmax"),
    "a tensor's own method": ("01_background", "softmax", "",
                              "def softmax(x):\n    return x.softmax(-1)\n", "softmax"),
    "tf.nn.softmax through a helper": ("01_background", "softmax", "import tensorflow as tf\n"
                                       "def _norm(x):\n    return tf.nn.softmax(x)\n",
                                       "def softmax(x):\n    return _norm(x)\n", "softmax"),
    "imported under another name": ("01_background", "softmax", "from torch.special import softmax as sm\n",
                                    "def softmax(x):\n    return sm(x, 0)\n", "softmax"),
    "tf.reduce_logsumexp": ("03_math", "logsumexp", "import tensorflow as tf\n",
                            "def logsumexp(x, axis=-1):\n    return tf.reduce_logsumexp(x, axis=axis)\n",
                            "reduce_logsumexp"),
    "jacobian by autograd": ("03_math", "softmax_jacobian", "import torch\n",
                             "def softmax_jacobian(p):\n    return torch.autograd.functional.jacobian(f, p)\n",
                             "jacobian"),
    "Categorical entropy": ("03_math", "attention_entropy", "import torch\n",
                            "def attention_entropy(w):\n"
                            "    return torch.distributions.Categorical(probs=w).entropy()\n", "entropy"),
}
HONEST = {   # (chapter, exercise, cells, the exercise's source)
    "exp and sum": ("01_background", "softmax", "import torch\n",
                    "def softmax(x):\n    e = torch.exp(x - x.max())\n    return e / e.sum()\n"),
    "checked against the built-in outside the exercise": (
        "01_background", "softmax", "import torch\nassert torch.allclose(torch.softmax(torch.ones(3), 0), "
        "torch.ones(3) / 3)\n", "def softmax(x):\n    e = torch.exp(x - x.max())\n    return e / e.sum()\n"),
    "softmax allowed in another exercise": (
        "01_background", "attention_pool", "import torch\n",
        "def attention_pool(query, keys, values):\n    w = torch.softmax(keys @ query, 0)\n    return w @ values, w\n"),
}


def _scan(slug, exercise, prelude, body):
    record = chapter(slug)
    return scan.scan([(0, prelude), (1, body)], [exercise], record.no_autograd, record.own_job)


@pytest.mark.parametrize("name", sorted(CHARGED))
def test_a_builtin_that_does_the_whole_job_is_charged(name):
    slug, exercise, prelude, body, shown = CHARGED[name]
    assert shown in _scan(slug, exercise, prelude, body).charged.get(exercise, []), name


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_code_is_not_charged(name):
    slug, exercise, prelude, body = HONEST[name]
    assert not _scan(slug, exercise, prelude, body).charged


def test_records_name_only_their_own_exercises():
    for record in all_chapters():
        assert {exercise for exercise, _ in record.own_job} <= set(record.exercises), record.slug
        assert not [p for p in record.audit() if "built-ins in" in p]


def test_the_reference_masters_are_not_charged():
    for record in all_chapters():
        for framework in ("torch", "tf"):
            if not record.exercises:
                continue
            sub = notebooks.read(notebooks.master_path(record.slug, framework))
            cells = [(i, "".join(c.source)) for i, c in enumerate(sub.cells) if c.cell_type == "code"]
            findings = scan.scan(cells, list(record.exercises), record.no_autograd, record.own_job)
            assert not findings.charged, (record.slug, framework, findings.charged)


@pytest.mark.slow
@pytest.mark.xdist_group("sandbox")
@pytest.mark.parametrize("framework, source", [
    ("torch", "def softmax(x):\n    return torch.softmax(x, dim=-1)\n"),
    ("tf", "def softmax(x):\n    return tf.nn.softmax(x)\n"),
])
def test_softmax_by_the_builtin_loses_exactly_its_points(tmp_path, framework, source):
    result = graded_master_with("01_background", framework, "softmax", source, tmp_path)
    assert result.error is None, result.error
    assert result.builtins == {"softmax": ["softmax"]}, result.builtins
    for c in result.checks:
        if c.exercise == "softmax":
            assert c.score == 0, c.name
        elif c.exercise != "notebook":
            assert c.passed, (c.name, c.output[:300])
