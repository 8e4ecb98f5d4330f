"""What the student side does around every call (autograder/sandbox/calls.py): it seeds the
notebook's framework, NumPy and `random` from the request's "seed", so a training-graded exercise
(chapter 05) scores the same every time; and it measures the call's peak memory ("peak_bytes" in
the reply), so a check can bound it (chapter 06's flash_attention must not build the n x n matrix).

Both run in the student's kernel (`check()`) and in the sandbox, at the two isolation levels whose
child differs in what it may do with /proc/self: bubblewrap (uid nobody in a user namespace) and
uid-drop (a plain unprivileged uid, in a child forked from a non-dumpable worker).
"""
from __future__ import annotations

import numpy as np
import pytest

from autograder import isolation
from autograder.checks.runner import LocalBackend
from autograder.session import Runner
from autograder.workers import Limits, Sandbox

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sandbox")]

MB = 10**6
BIG = 100_000_000   # float32 numbers: 400 MB
# The peak is the rise over the resident set when the call began, so pages the process gives back
# during the call (Python's allocator returning an arena, glibc trimming its heap) come off it:
# 0.1-0.3 MB measured here. A check bounding a peak works in tens of MB, not in pages.
GIVEN_BACK = 1 << 20

NOTEBOOK = {
    "torch": """
import random
import numpy as np
import torch
from torch import nn

def allocate(n):                 # n float32 ones, written (so resident), freed on return
    x = torch.ones(n)
    return x[-1:] * 2

def allocate_numpy(n):
    x = np.ones(n, np.float32)
    return torch.from_numpy(x[-1:] * 2)

def nothing(x):
    return x

def draws():
    return torch.rand(3), torch.from_numpy(np.random.rand(3)), torch.tensor([random.random()])

def train(x, y):                 # chapter 05's kind: random init, dropout, a few SGD steps
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.detach()

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.proj(x))
""",
    "tf": """
import random
import numpy as np
import tensorflow as tf
import keras

def allocate(n):
    x = tf.ones((n,))
    return x[-1:] * 2

def allocate_numpy(n):
    x = np.ones(n, np.float32)
    return tf.constant(x[-1:] * 2)

def nothing(x):
    return x

def draws():
    return (tf.random.uniform((3,)), tf.random.uniform((3,), seed=1), tf.constant(np.random.rand(3)),
            tf.constant([random.random()]), keras.random.uniform((3,)))

def train(x, y):
    model = keras.Sequential([keras.layers.Dense(8), keras.layers.Dropout(0.5), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.1)
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x, training=True) - y) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

class Net(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.proj = keras.layers.Dense(2)
        self.drop = keras.layers.Dropout(0.5)

    def call(self, x):
        return self.drop(self.proj(x), training=True)
""",
}

PLACES = [("torch", "kernel"), ("tf", "kernel"), ("torch", isolation.BUBBLEWRAP), ("tf", isolation.BUBBLEWRAP),
          ("torch", isolation.UID_DROP)]


class Sandboxed:
    """A notebook in a sandbox at one isolation level, asked through the grader's own Runner."""

    def __init__(self, framework: str, level: str):
        if level == isolation.BUBBLEWRAP and isolation.bubblewrap_problem():
            pytest.skip(isolation.bubblewrap_problem())
        self.box = Sandbox(framework, Limits(call_seconds=60), level=level)
        self.runner = Runner(self.box, [(0, NOTEBOOK[framework])])
        outcome = self.runner.run_cells()[0]
        assert outcome.ok, outcome.error

    def request(self, request: dict, args=(), kwargs=None):
        return self.runner.request(request, args, kwargs or {})

    def close(self):
        self.runner.close()
        self.box.close()


class InKernel:
    def __init__(self, framework: str):
        namespace: dict = {}
        exec(NOTEBOOK[framework], namespace)
        self.backend = LocalBackend(namespace, framework)

    def request(self, request: dict, args=(), kwargs=None):
        return self.backend.request(request, args, kwargs or {})

    def close(self):
        pass


@pytest.fixture(scope="module", params=PLACES, ids=["-".join(p) for p in PLACES])
def place(request):
    framework, where = request.param
    if where == isolation.UID_DROP and request.getfixturevalue("python_reachable"):
        pytest.skip(isolation.uid_drop_problem())
    notebook = InKernel(framework) if where == "kernel" else Sandboxed(framework, where)
    yield notebook
    notebook.close()


def ok(reply):
    assert reply.status == "ok", reply.error
    return reply


def test_seed_makes_every_random_source_repeat(place):
    first = ok(place.request({"name": "draws", "seed": 7})).value
    again = ok(place.request({"name": "draws", "seed": 7})).value
    other = ok(place.request({"name": "draws", "seed": 8})).value
    assert len(first) >= 3   # the framework's own, NumPy's global and Python's `random`
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_without_a_seed_nothing_is_reset(place):
    first = ok(place.request({"name": "draws"})).value
    second = ok(place.request({"name": "draws"})).value
    for a, b in zip(first, second):
        assert not np.array_equal(a, b)


def test_training_scores_the_same_every_time(place):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    losses = [float(ok(place.request({"name": "train", "seed": 3}, (x, y))).value) for _ in range(3)]
    assert losses[0] == losses[1] == losses[2]
    assert float(ok(place.request({"name": "train", "seed": 4}, (x, y))).value) != losses[0]


def test_construction_and_module_calls_are_seeded(place):
    x = np.ones((2, 4), np.float32)

    def run(seed):
        handle = ok(place.request({"kind": "new", "name": "Net", "seed": seed})).value
        return ok(place.request({"kind": "call", "handle": handle.id, "seed": seed}, (x,))).value

    np.testing.assert_array_equal(run(11), run(11))
    assert not np.array_equal(run(11), run(12))


@pytest.mark.parametrize("function", ["allocate", "allocate_numpy"])
def test_peak_of_a_call_that_allocates_400_mb(place, function):
    ok(place.request({"name": function}, (1000,)))   # first use: the library's code pages in
    reply = ok(place.request({"name": function}, (BIG,)))
    assert 4 * BIG - GIVEN_BACK <= reply.peak_bytes < 4 * BIG + 100 * MB
    # freed on return: the next call's peak starts from the resident set then, not from the old peak
    reply = ok(place.request({"name": function}, (1000,)))
    assert reply.peak_bytes < 4 * MB


def test_peak_of_a_call_that_allocates_nothing(place):
    x = np.ones((4, 4), np.float32)
    ok(place.request({"name": "nothing"}, (x,)))
    for _ in range(3):
        assert ok(place.request({"name": "nothing"}, (x,))).peak_bytes < 1 * MB


def test_peak_is_measured_for_seeded_calls_too(place):
    assert ok(place.request({"name": "allocate", "seed": 1}, (BIG,))).peak_bytes >= 4 * BIG - GIVEN_BACK
