"""What every chapter page starts with: imports, seeds, the running example and the plots.

A page's first code cell is `from book.pages import *`. It gives the page:
- NumPy, Matplotlib, PyTorch (`torch`, `F`), TensorFlow (`tf`) and Keras, seeded, with TensorFlow's
  start-up logs silenced;
- the running example of chapter 02, "the cat sat down", written by hand so that every weight
  can be read (see `chapters/02_principles/index.md`);
- the plots every page uses (`show_weights`, `show_mask`, `show_table`);
- float64 NumPy references, loop-based and literal, for the collapsed checks (`reference_*`).
In a Jupyter kernel it also keeps the PyTorch and TensorFlow twins' variables apart
(`book/kernel.py`).

Only the names in `__all__` are exported. None of them is an exercise's name: a page that imports
this module must not hand a student a graded function.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")    # TensorFlow's C++ start-up logs
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")   # TF's oneDNN clashes with torch's: wrong numbers

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

__all__ = [
    "F", "keras", "np", "plt", "tf", "torch", "rng",
    "TOKENS", "KEY_FEATURES", "VALUE_FEATURES", "FRENCH", "POS",
    "keys_np", "queries_np", "values_np", "french_queries_np", "embeddings_np", "grammar_np",
    "show_weights", "show_mask", "show_table", "show_heatmap", "show_measured",
    "median_seconds", "cpu_seconds", "peak_bytes_torch", "glue_values",
    "reference_softmax", "reference_attention",
]

SEED = 0
torch.manual_seed(SEED)
tf.random.set_seed(SEED)
keras.utils.set_random_seed(SEED)
rng = np.random.default_rng(SEED)
np.set_printoptions(precision=3, suppress=True)
torch.set_printoptions(precision=3, sci_mode=False)

# --- the running example: "the cat sat down" -----------------------------------------------------
# A key says what a word offers, a query what it looks for, both in the same three features; a
# value says what the word hands over. The numbers are chosen so that each row can be argued:
# "sat" looks for a thing (its subject) and a little for a modifier; "cat" is the only thing.
TOKENS = ["the", "cat", "sat", "down"]
KEY_FEATURES = ["thing", "action", "modifier"]
VALUE_FEATURES = ["alive", "moving"]

#                   thing action modifier
keys_np = np.array([[0.2, 0.0, 1.0],      # the:  a modifier, leaning towards a thing
                    [1.0, 0.0, 0.0],      # cat:  a thing
                    [0.0, 1.0, 0.0],      # sat:  an action
                    [0.0, 0.5, 1.0]],     # down: a modifier, leaning towards an action
                   dtype=np.float32)      # (n_k, d_k) = (4, 3)
queries_np = np.array([[2.0, 0.0, 0.0],   # the:  looks for a thing (its noun)
                       [0.0, 2.0, 0.0],   # cat:  looks for an action (its verb)
                       [2.0, 0.0, 1.0],   # sat:  looks for a thing (its subject), a little for a modifier
                       [0.0, 3.0, 0.0]],  # down: looks hard for an action
                      dtype=np.float32)   # (n_q, d_k) = (4, 3)
#                     alive moving
values_np = np.array([[0.0, 0.0],         # the
                      [1.0, 0.0],         # cat
                      [0.0, 1.0],         # sat
                      [0.0, 0.5]],        # down
                     dtype=np.float32)    # (n_k, d_v) = (4, 2)

# The French translation's queries for cross-attention, in the same three features.
FRENCH = ["le", "chat", "s'assit"]
french_queries_np = np.array([[1.5, -1.0, 2.0],   # le: a modifier of a thing, not of an action
                              [3.0, 0.0, 0.0],    # chat: a thing
                              [0.0, 3.0, 1.5]],   # s'assit: an action, with its modifier
                             dtype=np.float32)    # (n_q, d_k) = (3, 3)

# Embeddings for the pages that learn or factor projections: each word's part of speech, one-hot,
# and a "grammar table" saying which part of speech looks for which (row looks for column).
POS = ["article", "noun", "verb", "adverb"]
embeddings_np = np.eye(4, dtype=np.float32)        # (T, D) = (4, 4): the, cat, sat, down
grammar_np = 3.0 * np.array([[0, 1, 0, 0],         # an article looks for its noun
                             [0, 0, 1, 0],         # a noun looks for its verb
                             [0, 1, 0, 0.5],       # a verb: its subject, and a little its adverb
                             [0, 0, 1, 0]],        # an adverb looks for its verb
                            dtype=np.float32)      # (D, D)


# --- plots ---------------------------------------------------------------------------------------
def _grid_axes(ax, rows, cols, xlabel, ylabel, title):
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return ax


def show_weights(weights, rows, cols, title="", ax=None, xlabel="key", ylabel="query",
                 vmin=0.0, vmax=1.0, cmap="Blues"):
    """Heatmap of an attention matrix, one row per query, one column per key, values written in."""
    weights = np.asarray(weights)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 2.8))
    ax.imshow(weights, cmap=cmap, vmin=vmin, vmax=vmax)
    dark = vmin + 0.6 * (vmax - vmin)
    for i in range(weights.shape[0]):
        for j in range(weights.shape[1]):
            ax.text(j, i, f"{weights[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if weights[i, j] > dark else "black")
    return _grid_axes(ax, rows, cols, xlabel, ylabel, title)


def show_mask(mask, rows, cols, title="", ax=None, xlabel="key", ylabel="query"):
    """A boolean mask as a grid: dark = may attend (True), white = masked (False)."""
    mask = np.asarray(mask, dtype=bool)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.8, 2.6))
    ax.imshow(mask, cmap="Greys", vmin=0, vmax=1.6)
    ax.set_xticks(np.arange(-0.5, mask.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, mask.shape[0]), minor=True)
    ax.grid(which="minor", color="black", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    return _grid_axes(ax, rows, cols, xlabel, ylabel, title)


def show_table(array, rows, cols, title=""):
    """Print a small matrix with named rows and columns."""
    array = np.asarray(array)
    width = max(7, *(len(c) + 1 for c in cols))
    label = max(len(r) for r in rows) + 2
    if title:
        print(title)
    print(" " * label + "".join(f"{c:>{width}}" for c in cols))
    for name, row in zip(rows, array):
        print(f"{name:<{label}}" + "".join(f"{x:>{width}.3f}" for x in row))


def show_heatmap(array, xlabel, ylabel, colorbar_label, title="", ax=None, cmap="RdBu_r"):
    """A large matrix as a heatmap with a labelled colour bar (no numbers written in)."""
    array = np.asarray(array)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.0))
    limit = np.abs(array).max()
    image = ax.imshow(array, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto",
                      interpolation="nearest")
    plt.colorbar(image, ax=ax, label=colorbar_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return ax


def show_measured(ax, x, measured, prediction=None, xlabel="", ylabel="", title="",
                  prediction_label="prediction"):
    """Measurements against a size on log-log axes, one marked line per entry of `measured`
    ({label: values}), and a dashed prediction line scaled to meet the first series at its largest x."""
    x = np.asarray(x, dtype=float)
    for marker, (label, values) in zip("os^vD", measured.items()):
        ax.plot(x, values, marker + "-", label=label)
    if prediction is not None:
        first = np.asarray(next(iter(measured.values())), dtype=float)
        prediction = np.asarray(prediction, dtype=float)
        ax.plot(x, prediction * first[-1] / prediction[-1], "k--", linewidth=1,
                label=prediction_label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return ax


# --- measuring time and memory ----------------------------------------------------------------------
def _call_times(run, repeats, clock) -> list[float]:
    """`clock()` differences over `repeats` calls of `run()`, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return times


def median_seconds(run, repeats=5):
    """Median wall-clock time of `run()` over `repeats` calls, after one warm-up call."""
    return float(np.median(_call_times(run, repeats, time.perf_counter)))


def cpu_seconds(run, repeats=7):
    """Least CPU time (every thread of this process) of `run()` over `repeats` calls, after a
    warm-up call. Time spent waiting for a core is not counted, so a build that shares its cores
    measures the same work as an idle one (wall-clock slopes fell to 1.1 under load, CPU time's did
    not); the least of several calls drops the ones another process's cache traffic slowed."""
    return float(min(_call_times(run, repeats, time.process_time)))



def peak_bytes_torch(run):
    """Peak of the CPU memory that PyTorch's operators hold (allocations net of frees) during
    `run()`, from the profiler's events in time order, each counting only its own allocations."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


# --- numbers for the prose ----------------------------------------------------------------------------
def glue_values(**named):
    """Glue each number (or string) under its name for the page's prose, `{glue:text}`name:.2f``,
    without displaying it: a number the prose quotes is the one this run printed, never typed
    (tests/test_typed_numbers.py). NumPy scalars become Python ones, whose text myst-nb can format."""
    from myst_nb import glue

    for name, value in named.items():
        if isinstance(value, np.generic):
            value = value.item()
        glue(name, value, display=False)


# --- float64 references for the pages' collapsed checks -------------------------------------------
def reference_softmax(scores, mask=None):
    """Row by row, as the formula reads: softmax over the allowed keys of each row, in float64.
    A row with no allowed key gets zeros."""
    scores = np.asarray(scores, np.float64)
    allowed = np.broadcast_to(True if mask is None else np.asarray(mask, bool), scores.shape)
    out = np.zeros_like(scores)
    for row in np.ndindex(scores.shape[:-1]):
        keep = allowed[row]
        if keep.any():
            e = np.exp(scores[row][keep] - scores[row][keep].max())
            out[row + (keep,)] = e / e.sum()
    return out


def reference_attention(queries, keys, values, mask=None, scale=None):
    """(output, weights) in float64 by einsum; scale defaults to 1/sqrt(d_k)."""
    q, k, v = (np.asarray(a, np.float64) for a in (queries, keys, values))
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    weights = reference_softmax(np.einsum("...qd,...kd->...qk", q, k) * scale, mask)
    return np.einsum("...qk,...kv->...qv", weights, v), weights


def _in_a_kernel():
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


if _in_a_kernel():
    from book.kernel import keep_frameworks_apart

    keep_frameworks_apart()


# --- chapter 06 ---
# Measuring any framework's memory, and reading the benchmark's committed results.
def peak_rise_bytes(run, repeats=2):
    """The rise of this process's peak resident memory during `run()`, in bytes, whatever allocated
    it (PyTorch, TensorFlow, NumPy): Linux's VmHWM after resetting it with /proc/self/clear_refs,
    as the grader measures one call (autograder/sandbox/peak.py). Large blocks are mapped, not
    taken from the heap, and freed heap is given back first (malloc_trim), so that memory an
    earlier cell freed is not reused unseen. The smallest rise of `repeats` calls: what disturbs
    the measure only adds (library code paged in by a first call, a thread's new malloc arena on a
    busy machine): measured once, the tiling page's loop at n = 4096 rose by 13 MiB in one build
    and by about 18 MiB in another."""
    import ctypes

    from autograder.sandbox.peak import PeakMeter

    try:
        libc = ctypes.CDLL("libc.so.6")
        # as the grader's workers: blocks of 1 MiB and more are mapped and unmapped, never kept in
        # the heap (glibc's M_MMAP_THRESHOLD = -3; setting it also stops glibc raising it on its own)
        libc.mallopt(-3, 1 << 20)
    except (OSError, AttributeError):
        libc = None
    meter = PeakMeter()
    rises = []
    for _ in range(repeats):
        if libc is not None:
            libc.malloc_trim(0)
        started = meter.start("torch")      # "torch": the resident set only (no allocator statistics)
        result = run()
        rises.append(meter.stop(started))
        del result
    return min(rises)


BENCHMARK_RESULTS = "benchmarks/results/attention.json"


def benchmark_results():
    """The committed output of `benchmarks/attention.py --out benchmarks/results/attention.json`."""
    import json
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parents[1] / BENCHMARK_RESULTS).read_text())


import math  # noqa: E402  (the chapter's pages use math.inf and math.sqrt beside the frameworks)

__all__ += ["math", "peak_rise_bytes", "benchmark_results"]
