"""Seed a call's random sources from the trusted side's seed, cheaply enough to do before every call.

Seeded: Python's `random`, NumPy's global generator (`np.random.*`; a `default_rng()` without a
seed cannot be reached) and the notebook's framework, if the process has imported it (one it has
not imported holds no state to reset):
- PyTorch: its CPU generator, directly. `torch.manual_seed` also visits every accelerator backend:
  0.15-0.3 ms a call, against 2 us.
- TensorFlow and Keras: what `keras.utils.set_random_seed` does (Keras' global SeedGenerator,
  behind `keras.random`, layers' dropout and unseeded initialisers, and TensorFlow's global seed).
  `tf.random.set_seed` also empties the eager kernel cache, because a cached stateful random
  kernel (`tf.random.uniform`, `tf.nn.dropout`) keeps its stream going across a reseed; the
  kernels are then built again, which costs 7 ms on a multi-head attention forward pass and
  25 ms on five training steps. So the cache is emptied only when such an op has drawn a seed
  since the last reseed (every one asks `random_seed.get_seed`, watched here); otherwise the
  same seed is set without it (Keras' own random ops are stateless and need no emptying).
Not reached: `tf.random.Generator`s and stateful random ops inside a `tf.function`, whose
kernels live in the traced function.
"""
from __future__ import annotations

import random
import sys

SEED_RANGE = 2**32   # NumPy's legacy seeding takes [0, 2**32)


def seed_everything(seed: int, framework: str) -> None:
    seed %= SEED_RANGE
    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    if framework == "torch" and "torch" in sys.modules:
        sys.modules["torch"]._C.default_generator.manual_seed(seed)
    elif framework == "tf" and "tensorflow" in sys.modules:
        _seed_tensorflow(seed)


_watch = {"installed": False, "drawn": True}   # drawn: a stateful TF random op may have run since


def _seed_tensorflow(seed: int) -> None:
    try:   # TensorFlow's and Keras' private names: on a version without them, the slow sure way
        if "keras" in sys.modules:
            _reset_keras(seed)
        if not _watch["installed"]:
            _watch_stateful_random_ops()
        if not _watch["drawn"]:
            from tensorflow.python.eager import context

            ctx = context.context()   # what Context._set_global_seed does, but for emptying the cache
            ctx._seed, ctx._rng = seed, random.Random(seed)
            return
    except (ImportError, AttributeError):
        if "keras" in sys.modules:
            sys.modules["keras"].utils.set_random_seed(seed)
    sys.modules["tensorflow"].random.set_seed(seed)   # empties the kernel cache
    _watch["drawn"] = False


def _reset_keras(seed: int) -> None:
    """keras.utils.set_random_seed without its tf.random.set_seed (done above, only when needed)."""
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)


def _watch_stateful_random_ops() -> None:
    from tensorflow.python.framework import random_seed

    original = random_seed.get_seed

    def get_seed(op_seed):
        _watch["drawn"] = True
        return original(op_seed)

    random_seed.get_seed = get_seed
    _watch["installed"] = True
