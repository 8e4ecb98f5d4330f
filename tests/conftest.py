"""Suite-wide markers for `make test-fast`: the edit-test loop skips the browser and the gallery.

A test belongs to the browser or the gallery when its xdist group says so, so a new test joins the
slow tiers by joining the group it shares fixtures with; nothing else needs a second marker.
"""
from __future__ import annotations

import pytest

TIERS = {"browser": "browser", "gallery": "gallery"}   # xdist group -> marker


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("xdist_group"):
            name = mark.args[0] if mark.args else mark.kwargs.get("name")
            if name in TIERS:
                item.add_marker(getattr(pytest.mark, TIERS[name]))
