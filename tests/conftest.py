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

import pytest

# Before any test imports TensorFlow: its oneDNN kernels clash with PyTorch's in one process
# (wrong numbers, then a crash; see test_frameworks_together.py). The Makefile sets it too.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

TIERS = {"browser": "browser", "gallery": "gallery"}   # xdist group -> marker


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("xdist_group"):
            name = mark.args[0] if mark.args else mark.kwargs.get("name")
            if name in TIERS:
                item.add_marker(getattr(pytest.mark, TIERS[name]))
