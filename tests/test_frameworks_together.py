"""PyTorch and TensorFlow in one process, as on the chapter pages and in this suite's workers.

With TensorFlow's oneDNN kernels on (its default) and torch imported first, the two oneDNN copies
clash: after a few TF calls the chapter-02 TF reference returns wrong numbers for `bahdanau_step`
and the process later dies in free(). The suite and the book build turn those kernels off
(tests/conftest.py, the Makefile, book/pages.py); this test shows why, in fresh processes.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import torch
import tensorflow as tf
from autograder.checks.runner import LocalBackend, run_checks
from autograder.notebooks import load_namespace, master_path
from autograder.student import bind

ns = {"torch": torch, "tf": tf}
exec("def dot_product_scores(queries, keys):\\n    return tf.matmul(queries, keys, transpose_b=True)\\n", ns)
bind("02_principles", "tf").run(ns, "dot_product_scores")
results, _ = run_checks("02_principles", LocalBackend(load_namespace(master_path("02_principles", "tf")), "tf"),
                        "tf", seed=0)
failed = [r.name for r in results if not r.passed]
print("FAILED:", failed)
"""


def run(onednn: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)


def test_with_onednn_off_the_tf_reference_is_right_beside_torch():
    done = run("0")
    assert done.returncode == 0 and "FAILED: []" in done.stdout, (done.stdout[-2000:], done.stderr[-2000:])


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def test_with_onednn_on_it_is_not_which_is_why_the_suite_turns_it_off():
    """The clash depends on the processor: it showed on the machines this was found on, and on
    2026-12-07's AMD EPYC machine the same script (and the suite of 856a231) came out right. Where
    it does not show, that is said (a skip naming the CPU), never taken as a reason to turn the
    setting back on; where it shows, this asserts it."""
    done = run("1")
    if done.returncode == 0 and "FAILED: []" in done.stdout:
        pytest.skip(f"the oneDNN clash does not reproduce on this CPU ({_cpu()}); the suite keeps "
                    "TF_ENABLE_ONEDNN_OPTS=0 for the machines where it does")
    assert done.returncode != 0 or "FAILED: []" not in done.stdout, done.stdout[-2000:]
