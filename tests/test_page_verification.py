"""Verification cells are executed but collapsed (STYLE.md, "Pages that teach").

A page proves its claims with code a reader may open but need not read: any code cell that asserts
something carries `hide-input` (or is removed from view altogether). A cell that shows a result and
checks it is split in two: the visible computation, then a collapsed check.
"""
import ast

import pytest

from test_book_sources import TAUGHT_PAGES, parse_cells, rel

COLLAPSED = {"hide-input", "hide-cell", "remove-input", "remove-cell"}


def uncollapsed_checks(text: str) -> list[int]:
    """Line numbers of the code cells that assert something and are shown expanded."""
    lines = []
    for cell in parse_cells(text):
        tags = cell["options"].get("tags") or []
        tags = set(tags if isinstance(tags, list) else [tags])
        try:
            tree = ast.parse(cell["source"])
        except SyntaxError:   # IPython magics: not Python, and no page of ours asserts in one
            continue
        if not tags & COLLAPSED and any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
            lines.append(cell["line"])
    return lines


@pytest.mark.parametrize("page", TAUGHT_PAGES, ids=rel)
def test_verification_cells_are_collapsed(page):
    shown = uncollapsed_checks(page.read_text())
    assert not shown, (f"{rel(page)}: the code cells at lines {shown} assert in plain view; "
                       "move the assertions into a following cell tagged hide-input")


def test_checker_finds_an_expanded_assertion_and_accepts_a_collapsed_one():
    page = ("# Page\n\n```{code-cell} ipython3\nx = 1\nprint(x)\n```\n\n"
            "```{code-cell} ipython3\nfor i in range(2):\n    assert i < 2\n```\n\n"
            "```{code-cell} ipython3\n:tags: [hide-input]\nassert x == 1\n```\n\n"
            "```{code-cell} ipython3\n---\ntags: [pytorch, hide-input]\n---\nassert x\n```\n")
    assert uncollapsed_checks(page) == [8]   # the second cell opens on line 8
