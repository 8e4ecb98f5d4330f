"""Suite-wide markers for `make test-fast`: the edit-test loop skips the browser and the gallery.

A test belongs to the browser or the gallery when its `xdist_group` mark says so.

The suite runs with `--dist loadfile`, not `loadgroup`: pytest 9 keeps a node's id in `_id`, and
pytest-xdist 3.8 still appends the group to `_nodeid`, so `loadgroup` silently degrades to `load`
and a module-scoped fixture such as the graded gallery is built once per worker (twice, ~47 s
each). Under `loadfile` a test file is the unit a worker takes, so tests that share an expensive
module fixture must live in one file; the `xdist_group` marks now only name the tiers below.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

# Before any test imports TensorFlow: its oneDNN kernels clash with PyTorch's in one process
# (wrong numbers, then a crash; see test_frameworks_together.py). The Makefile sets it too.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
# The course secret graded inputs are drawn from (autograder/secret.py): the suite's own, so that no
# test writes one under the home folder and every run (subprocesses too) draws the same inputs.
os.environ.setdefault("AUTOGRADER_SECRET", "the test suite's course secret")

TIERS = {"browser": "browser", "gallery": "gallery"}   # xdist group -> marker


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("xdist_group"):
            name = mark.args[0] if mark.args else mark.kwargs.get("name")
            if name in TIERS:
                item.add_marker(getattr(pytest.mark, TIERS[name]))


@pytest.fixture(scope="session")
def python_reachable():
    """Let the uid-drop layer's unprivileged uid reach the interpreter, as an instructor must.

    Here Python lives under /root (mode 0700). The fixture adds the traverse bit for others (o+x:
    no listing, no reading) to each folder above the interpreter that lacks it, and does not take
    it back: two xdist workers share the machine, and one restoring the mode while the other
    grades would break the other's run. The grader itself never changes these modes; it refuses
    the layer and names this fix (isolation.uid_drop_problem).
    """
    from autograder import isolation

    for folder in isolation._ancestors(Path(sys.base_prefix)):
        mode = folder.stat().st_mode
        if folder.is_dir() and not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    isolation.uid_drop_problem.cache_clear()
    return isolation.uid_drop_problem()
