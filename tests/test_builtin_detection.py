"""The frameworks' ready-made attention cannot be smuggled into an exercise (issue 14).

Each attack is a real submission: the chapter-02 master with its `scaled_dot_product_attention`
cell replaced (and sometimes a helper cell added), graded through the sandbox by `grade_one`. The
attacks are the red team's five classes, in both frameworks where they apply:

1. dynamic attribute access: computed names, `vars(M)[...]`, `importlib.import_module`;
2. the call in a module-level helper, a lambda, a class, a default argument;
3. another name for the same kernel: `torch.ops.aten._scaled_dot_product_attention_math`, the other
   aten overloads, Keras' `DotProductAttention` op, `GroupedQueryAttention`, the backend function;
4. the original behind the grader's wrapper (`__wrapped__`, the closure cell);
5. the runtime record erased (`tracer.used.clear()`).

Each must score 0 with the built-in named in the feedback; honest alternatives keep full marks.
"""
from __future__ import annotations

import copy

import nbformat
import pytest

from autograder import notebooks, scan
from autograder.grade import Options, Sandboxes, grade_one
from autograder.report.feedback import feedback_markdown

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sandbox")]
CHAPTER = "02_principles"
EXERCISE = "scaled_dot_product_attention"
SDPA = "torch.nn.functional.scaled_dot_product_attention"
KERAS_DPA = "keras.ops.dot_product_attention"

# The head and tail every torch attack shares: honest weights, the built-in's output.
TORCH_HEAD = "def scaled_dot_product_attention(queries, keys, values, mask=None):\n" \
             "    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)\n"
# keras.ops.dot_product_attention wants (B, T, heads, d): the attack uses it where that is easy,
# and the honest result elsewhere, which is enough to pass every check today.
# the aten "math" kernel adds its mask: a boolean one must become 0 / -inf first
ADDITIVE = "None if mask is None else torch.where(torch.as_tensor(mask), 0.0, float('-inf'))"
TF_HEAD = TORCH_HEAD + "    out = tf.matmul(weights, values)\n" \
    "    if mask is None and len(queries.shape) == 3:\n" \
    "        q, k, v = (tf.expand_dims(tf.convert_to_tensor(t), -2) for t in (queries, keys, values))\n"
TF_TAIL = "    return out, weights\n"

# name -> (framework, helper cell or "", exercise cell, the built-in the feedback must name)
ATTACKS = {
    # 1. dynamic attribute access
    "torch_getattr_concat_aten": ("torch", "", TORCH_HEAD + """\
    fn = getattr(torch.ops.aten, "_scaled_dot_product_" + "attention_math")
    out, _ = fn(queries, keys, values, attn_mask=""" + ADDITIVE + """)
    return torch.nan_to_num(out), weights
""", "torch.ops.aten._scaled_dot_product_attention_math"),
    "torch_vars_import_module": ("torch", "import importlib\n", TORCH_HEAD + """\
    functional = importlib.import_module("torch.nn." + "functional")
    fn = vars(functional)["".join(reversed("noitnetta_tcudorp_tod_delacs"))]
    fn = getattr(fn, "__wrapped__", fn)
    return torch.nan_to_num(fn(queries, keys, values, attn_mask=mask)), weights
""", SDPA),
    "tf_getattr_backend": ("tf", "import importlib\n", TF_HEAD + """\
        backend = importlib.import_module(f"keras.src.backend.{'tensorflow'}.nn")
        out = tf.squeeze(getattr(backend, "dot_product_" + "attention")(q, k, v), -2)
""" + TF_TAIL, KERAS_DPA),
    "tf_dict_of_ops_reversed": ("tf", "import keras\n", TF_HEAD + """\
        fn = keras.ops.__dict__["noitnetta_tcudorp_tod"[::-1]]
        out = tf.squeeze(getattr(fn, "__wrapped__", fn)(q, k, v), -2)
""" + TF_TAIL, KERAS_DPA),
    # names no reading of the source can recover: the runtime report alone must charge them
    "torch_unreadable_name_aten": ("torch", "", TORCH_HEAD + """\
    name = bytes.fromhex("5f7363616c65645f646f745f70726f647563745f617474656e74696f6e5f6d617468").decode()
    out, _ = getattr(torch.ops.aten, name)(queries, keys, values, attn_mask=""" + ADDITIVE + """)
    return torch.nan_to_num(out), weights
""", "torch.ops.aten._scaled_dot_product_attention_math"),
    "tf_unreadable_name_layer": ("tf", "import keras\n", TF_HEAD + """\
        layer = getattr(keras.layers, bytes.fromhex("4d756c746948656164417474656e74696f6e").decode())
        layer(num_heads=1, key_dim=int(q.shape[-1]))(tf.squeeze(q, -2), tf.squeeze(v, -2), tf.squeeze(k, -2))
""" + TF_TAIL, "keras.layers.MultiHeadAttention"),
    # 2. the call outside the exercise's own def
    "torch_module_level_helper": ("torch", """\
def _attend(q, k, v, m):
    return torch.ops.aten.scaled_dot_product_attention(q, k, v, attn_mask=m)
""", TORCH_HEAD + "    return torch.nan_to_num(_attend(queries, keys, values, mask)), weights\n",
        "torch.ops.aten.scaled_dot_product_attention"),
    "torch_lambda_in_class": ("torch", """\
class _Kernels:
    attend = staticmethod(lambda q, k, v, m: torch.ops.aten._scaled_dot_product_attention_math(
        q, k, v, attn_mask=None if m is None else torch.where(m, 0.0, float("-inf")))[0])
""", TORCH_HEAD + "    return torch.nan_to_num(_Kernels.attend(queries, keys, values, mask)), weights\n",
        "torch.ops.aten._scaled_dot_product_attention_math"),
    "torch_default_argument": ("torch", "", """\
def scaled_dot_product_attention(queries, keys, values, mask=None,
                                 _k=torch.ops.aten._scaled_dot_product_flash_attention_for_cpu):
    weights = masked_softmax(scaled_dot_product_scores(queries, keys), mask)
    if mask is None and queries.dim() == 4:
        return _k(queries, keys, values)[0], weights
    return weights @ values, weights
""", "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu"),
    "tf_module_level_helper": ("tf", """\
import keras
def _attend(q, k, v):
    return keras.src.backend.tensorflow.nn.dot_product_attention(q, k, v)
""", TF_HEAD + "        out = tf.squeeze(_attend(q, k, v), -2)\n" + TF_TAIL, KERAS_DPA),
    # 3. another name for the same kernel
    "torch_aten_math": ("torch", "", TORCH_HEAD + """\
    out, _ = torch.ops.aten._scaled_dot_product_attention_math(queries, keys, values,
                                                                    attn_mask=""" + ADDITIVE + """)
    return torch.nan_to_num(out), weights
""", "torch.ops.aten._scaled_dot_product_attention_math"),
    "torch_aten_math_weights_too": ("torch", "import torch as _t\n", TORCH_HEAD + """\
    out, w = _t._scaled_dot_product_attention_math(queries, keys, values, attn_mask=""" + ADDITIVE + """)
    return torch.nan_to_num(out), torch.nan_to_num(w)
""", "torch.ops.aten._scaled_dot_product_attention_math"),
    "tf_dot_product_attention_op": ("tf", "from keras.src.ops import nn as _nn\n", TF_HEAD + """\
        out = tf.squeeze(_nn.DotProductAttention()(q, k, v), -2)
""" + TF_TAIL, KERAS_DPA),
    "tf_grouped_query_attention": ("tf", "import keras\n", TF_HEAD + """\
        layer = keras.src.layers.GroupedQueryAttention(head_dim=int(q.shape[-1]), num_query_heads=1,
                                                       num_key_value_heads=1)
        layer(tf.squeeze(q, -2), tf.squeeze(v, -2), tf.squeeze(k, -2))
""" + TF_TAIL, "keras.layers.GroupQueryAttention"),
    # 4. the original behind the wrapper
    "torch_wrapped_module_level": ("torch", """\
import torch.nn.functional as F
_sdpa = getattr(F.scaled_dot_product_attention, "__wrapped__", F.scaled_dot_product_attention)
""", TORCH_HEAD + "    return torch.nan_to_num(_sdpa(queries, keys, values, attn_mask=mask)), weights\n", SDPA),
    "torch_closure_cell": ("torch", "import torch.nn.functional as F\n", TORCH_HEAD + """\
    fn = getattr(F, "scaled_dot_product_" + "attention")
    for cell in fn.__closure__ or ():
        if callable(cell.cell_contents):
            fn = cell.cell_contents
    return torch.nan_to_num(fn(queries, keys, values, attn_mask=mask)), weights
""", SDPA),
    "tf_wrapped_module_level": ("tf", """\
import keras
_dpa = getattr(keras.ops.dot_product_attention, "__wrapped__", keras.ops.dot_product_attention)
""", TF_HEAD + "        out = tf.squeeze(_dpa(q, k, v), -2)\n" + TF_TAIL, KERAS_DPA),
    # 5. the runtime record erased
    "torch_tracer_cleared": ("torch", """\
import sys
import torch.nn.functional as F
_sdpa = vars(F)["".join(reversed("noitnetta_tcudorp_tod_delacs"))]
def _forget():
    tracer = sys.modules.get("autograder.sandbox.tracer")
    if tracer is not None:
        tracer.used.clear()
""", TORCH_HEAD + """\
    out = _sdpa(queries, keys, values, attn_mask=mask)
    _forget()
    return torch.nan_to_num(out), weights
""", SDPA),
    "tf_tracer_cleared": ("tf", """\
import sys
import keras
_dpa = vars(keras.ops)["noitnetta_tcudorp_tod"[::-1]]
""", TF_HEAD + """\
        out = tf.squeeze(_dpa(q, k, v), -2)
        sys.modules["autograder.sandbox.tracer"].used.clear()
""" + TF_TAIL, KERAS_DPA),
}

# Honest alternatives: the framework's softmax, matmul, einsum, loops, a module-level helper, a
# helper of the student's own that happens to share a built-in's name, and a cell that compares
# with the built-in outside any exercise (as the chapter pages do).
HONEST = {
    "torch_reference": ("torch", "", None),
    "torch_einsum_softmax_helper": ("torch", """\
import torch.nn.functional as F
def dot_product_attention(q, k, v, weights):
    return torch.einsum("...qk,...kd->...qd", weights, v)
def _softmax(scores, mask):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.nan_to_num(F.softmax(scores, dim=-1))
from torch.nn.attention.bias import causal_lower_right   # torch reads the wrapped ops' _schema
q = torch.randn(2, 3, 4)
reference = F.scaled_dot_product_attention(q, q, q)   # comparing with the built-in is fine here
reference = F.scaled_dot_product_attention(q, q, q, attn_mask=causal_lower_right(3, 3))
""", """\
def scaled_dot_product_attention(queries, keys, values, mask=None):
    scores = torch.matmul(queries, keys.transpose(-2, -1)) / keys.shape[-1] ** 0.5
    weights = _softmax(scores, mask)
    return dot_product_attention(queries, keys, values, weights), weights
"""),
    "tf_reference": ("tf", "", None),
    "tf_einsum_loop_softmax": ("tf", """\
import keras
dense = keras.layers.Dense(4)    # allowed building block, unused by the exercise
""", """\
def scaled_dot_product_attention(queries, keys, values, mask=None):
    queries, keys, values = (tf.convert_to_tensor(t) for t in (queries, keys, values))
    scores = tf.einsum("...qd,...kd->...qk", queries, keys) / tf.sqrt(tf.cast(tf.shape(keys)[-1], tf.float32))
    if mask is not None:
        scores = tf.where(mask, scores, float("-inf"))
    weights = tf.where(tf.math.is_nan(tf.nn.softmax(scores, -1)), 0.0, tf.nn.softmax(scores, -1))
    rows = [weights[..., i : i + 1, :] @ values for i in range(int(scores.shape[-2]))]
    return tf.concat(rows, -2), weights
"""),
}


def submission(framework: str, helper: str, exercise: str | None):
    nb = copy.deepcopy(nbformat.read(notebooks.master_path(CHAPTER, framework), as_version=4))
    index = next(i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("course", {}).get("exercise") == EXERCISE)
    if exercise is not None:
        nb.cells[index].source = exercise
    if helper:
        nb.cells.insert(index, nbformat.v4.new_code_cell(helper))
    return nb


@pytest.fixture(scope="module")
def sandboxes():
    boxes = Sandboxes(Options(timeout=120, exercise=EXERCISE))
    yield boxes
    boxes.close()


def graded(sandboxes, tmp_path, name: str, framework: str, helper: str, exercise: str | None):
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(submission(framework, helper, exercise), path)
    result = grade_one(path, name, sandboxes)
    assert result.error is None, result.error
    checks = [c for c in result.checks if c.exercise == EXERCISE]
    assert checks, "no check of the exercise ran"
    return result, checks


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_smuggled_builtin_scores_zero_and_is_named(sandboxes, tmp_path, name):
    framework, helper, exercise, builtin = ATTACKS[name]
    result, checks = graded(sandboxes, tmp_path, name, framework, helper, exercise)
    assert builtin in result.builtins.get(EXERCISE, []), result.builtins
    assert all(c.score == 0 for c in checks), [(c.name, c.score) for c in checks]
    feedback = feedback_markdown(result)
    assert builtin in feedback


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_code_keeps_full_marks(sandboxes, tmp_path, name):
    framework, helper, exercise = HONEST[name]
    result, checks = graded(sandboxes, tmp_path, name, framework, helper, exercise)
    assert not result.builtins, result.builtins
    assert all(c.passed for c in checks), [(c.name, c.output[:300]) for c in checks if not c.passed]
    ran = [c for c in result.checks if c.exercise == "notebook"]
    assert ran and all(c.passed for c in ran), [c.output[:500] for c in ran]   # the tracer broke no cell


def test_the_instructor_hears_what_the_scan_cannot_settle(sandboxes, tmp_path):
    """Silencing the tracer from inside the process is not provable from the source: say so."""
    helper = "import sys\nsys.modules['autograder.sandbox.tracer']._report = lambda shown: None\n"
    result, _ = graded(sandboxes, tmp_path, "silenced", "torch", helper, ATTACKS["torch_unreadable_name_aten"][2])
    notes = "\n".join(result.notes)
    assert "sys.modules" in notes and "dynamic attribute access on torch.ops.aten" in notes, notes
    assert "sys.modules" in feedback_markdown(result, instructor=True)
    assert "sys.modules" not in feedback_markdown(result)


# The static half alone, on source: what it must charge and what it must leave alone.
SCAN_CASES = {
    # resolved through aliases and assignments, anywhere the exercise can reach
    "from torch.nn import functional\nsdpa = functional.scaled_dot_product_attention\n"
    "def helper(q):\n    return sdpa(q, q, q)\ndef ex(q):\n    return helper(q)": [SDPA],
    "import torch\ndef ex(q):\n    global k\n    return k(q)\ndef setup():\n    global k\n"
    "    k = torch._C._nn.scaled_dot_product_attention": [SDPA],
    "import keras\nclass Block(keras.layers.Layer):\n    def call(self, x):\n"
    "        return keras.src.layers.attention.attention.Attention()([x, x])\ndef ex(x):\n    return Block()(x)":
        ["keras.layers.Attention"],
    "import tensorflow as tf\nL = tf.keras.layers\ndef ex(x):\n    return L.MultiHeadAttention(1, 4)(x, x)":
        ["keras.layers.MultiHeadAttention"],
    "import torch\nex = lambda q: torch._C._VariableFunctions._scaled_dot_product_attention_math(q, q, q)":
        ["torch.ops.aten._scaled_dot_product_attention_math"],
    # honest: a comparison outside the exercise, a local that shares a module-level name, the
    # student's own class after the built-in was imported to compare, allowed building blocks
    "import torch.nn.functional as F\nimport torch\nq = torch.ones(1, 2, 3)\nout = F.scaled_dot_product_attention(q, q, q)\n"
    "def ex(q):\n    out = F.softmax(q @ q.mT, -1) @ q\n    return out": [],
    "from keras.layers import MultiHeadAttention\nimport keras\nclass MultiHeadAttention(keras.layers.Layer):\n"
    "    def call(self, x):\n        return keras.layers.Dense(4)(x)\ndef ex(x):\n    return MultiHeadAttention()(x)": [],
    "import tensorflow as tf\ndef dot_product_attention(q):\n    return tf.nn.softmax(q) @ q\n"
    "def ex(q):\n    return dot_product_attention(q)": [],
}


@pytest.mark.parametrize("source", list(SCAN_CASES), ids=range(len(SCAN_CASES)))
def test_the_scan_follows_names_through_the_whole_submission(source):
    assert scan.scan([(1, source)], ["ex"]).charged.get("ex", []) == SCAN_CASES[source]
